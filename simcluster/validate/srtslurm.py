"""What the recipe files of InferenceX's multi-node (disaggregated) deployments set.

InferenceX's disaggregated entries do not launch their servers from launch scripts: they name a
recipe file of srt-slurm (github.com/NVIDIA/srt-slurm, Apache-2.0; InferenceX pins a branch of it)
with ``CONFIG_FILE=recipes/...yaml`` — a YAML file whose ``backend.trtllm_config`` or
``backend.sglang_config`` holds the server options of the prefill and of the decode workers. Some
files hold several deployments: ``CONFIG_FILE=recipes/b200-fp8/1k1k.yaml:zip_override_stp_lowlat[1]``
is the file's ``base`` section with the second element of every list in its ``zip_override_stp_lowlat``
section merged in.

:func:`pool_settings` condenses what changes the simulation into a flat dict, per side (``prefill_`` /
``decode_`` prefix), in the units of the framework's own flag:

* ``max_seqs``: TRT-LLM ``max_batch_size`` (per attention-DP rank), SGLang ``max-running-requests``
  (per server: its DP ranks share it);
* ``budget``: TRT-LLM ``max_num_tokens`` (per rank), SGLang ``chunked-prefill-size``;
* ``mem_fraction``: TRT-LLM ``kv_cache_config.free_gpu_memory_fraction``, SGLang ``mem-fraction-static``;
* ``max_tokens``: SGLang ``max-total-tokens`` (a cap on the KV pool, in tokens);
* ``kv``: the KV-cache dtype when it is FP8 (either side);
* ``moe_a2a``: ``"deepep"`` where SGLang's ``moe-a2a-backend`` is DeepEP (the experts then run as
  DeepGEMM grouped GEMMs; scenario ``pools.*.moe_a2a``).

The recipe index (:mod:`simcluster.validate.recipes`) stores the result per entry; nothing here
looks at measured times.
"""

from __future__ import annotations

import re
import subprocess

_REF = re.compile(r"CONFIG_FILE=(\S+?\.ya?ml)(?::(\w+)\[(\d+)\])?(?=\s|$)")

# framework section -> (flag name in the file, our key)
_KEYS = {
    "trtllm_config": (("max_batch_size", "max_seqs"), ("max_num_tokens", "budget")),
    "sglang_config": (("max-running-requests", "max_seqs"), ("chunked-prefill-size", "budget"),
                      ("mem-fraction-static", "mem_fraction"), ("max-total-tokens", "max_tokens")),
}


def config_ref(settings: str) -> tuple[str, str, int] | None:
    """(path, zip-override section or "", index) of the recipe file an entry's settings name."""
    m = _REF.search(settings or "")
    if not m:
        return None
    return m.group(1), m.group(2) or "", int(m.group(3) or 0)


def _merge(base, over, i: int):
    """``base`` with ``over`` merged in, every list of ``over`` read at index ``i`` (zip overrides)."""
    if isinstance(over, list):
        return _merge(base, over[i], i) if i < len(over) else base
    if isinstance(over, dict):
        out = dict(base) if isinstance(base, dict) else {}
        for k, v in over.items():
            out[k] = _merge(out.get(k), v, i)
        return out
    return over if over is not None else base


def resolve(doc: dict, section: str = "", index: int = 0) -> dict:
    """The deployment a recipe file describes (its ``base`` with a zip override applied, if named)."""
    if not section:
        return doc if "backend" in doc or "base" not in doc else doc["base"]
    return _merge(doc.get("base") or {}, doc.get(section) or {}, index)


def pool_settings(cfg: dict) -> dict:
    """The flat settings of a resolved recipe (see the module docstring); {} when it names neither
    framework's server options."""
    backend = cfg.get("backend") or {}
    out: dict = {}
    for section, keys in _KEYS.items():
        sides = backend.get(section)
        if not isinstance(sides, dict):
            continue
        for side in ("prefill", "decode"):
            opts = sides.get(side) or {}
            if not isinstance(opts, dict):
                continue
            for flag, key in keys:
                v = opts.get(flag)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                    out[f"{side}_{key}"] = float(v) if key == "mem_fraction" else int(v)
            kvc = opts.get("kv_cache_config") if section == "trtllm_config" else None
            if isinstance(kvc, dict):
                f = kvc.get("free_gpu_memory_fraction")
                if isinstance(f, (int, float)) and 0 < f <= 1:
                    out[f"{side}_mem_fraction"] = float(f)
                if str(kvc.get("dtype", "")).lower().startswith("fp8"):
                    out["kv"] = "fp8"
            if str(opts.get("kv-cache-dtype", "")).lower().startswith("fp8"):
                out["kv"] = "fp8"
            if section == "sglang_config" and str(opts.get("moe-a2a-backend", "")).lower() == "deepep":
                out[f"{side}_moe_a2a"] = "deepep"
    return out


# ``..._SETTING=N`` additional settings of older multi-node entries (their launch scripts pass them on)
_ENV = {"PREFILL_MAX_BATCH_SIZE": "prefill_max_seqs", "PREFILL_MAX_NUM_TOKENS": "prefill_budget",
        "DECODE_MAX_BATCH_SIZE": "decode_max_seqs", "DECODE_MAX_NUM_TOKENS": "decode_budget",
        "PREFILL_GPU_MEM_FRACTION": "prefill_mem_fraction", "DECODE_GPU_MEM_FRACTION": "decode_mem_fraction"}


def env_settings(settings: str) -> dict:
    out: dict = {}
    for name, key in _ENV.items():
        m = re.search(rf"\b{name}=([\d.]+)", settings or "")
        if m:
            out[key] = float(m.group(1)) if key.endswith("mem_fraction") else int(float(m.group(1)))
    return out


class RecipeFiles:
    """The recipe files of a clone of srt-slurm, each at the version in force on a given day: the
    last commit of the default branch's history that touched it on or before that day, else (a file
    added later than the day, as the InferenceX branch had it first) its first version there; files
    never on the default branch are looked up on every branch the same way."""

    def __init__(self, repo: str) -> None:
        self.repo = str(repo)
        self._log: dict[str, list[tuple[str, str]]] = {}
        self._text: dict[tuple[str, str], str | None] = {}
        self._parsed: dict[tuple, dict] = {}

    def _git(self, *args: str) -> str:
        return subprocess.check_output(["git", "-C", self.repo, *args], stderr=subprocess.DEVNULL).decode(
            errors="replace")

    def _versions(self, path: str) -> list[tuple[str, str]]:
        if path not in self._log:
            out = []
            for scope in (["HEAD"], ["--all"]):
                log = self._git("log", *scope, "--format=%H %ad", "--date=short", "--", path)
                out = [tuple(line.split()[:2]) for line in log.splitlines() if line.strip()]
                if out:
                    break
            self._log[path] = sorted(out, key=lambda v: v[1])  # (sha, date), oldest first
        return self._log[path]

    def _show(self, sha: str, path: str) -> str | None:
        key = (sha, path)
        if key not in self._text:
            try:
                self._text[key] = self._git("show", f"{sha}:{path}")
            except subprocess.CalledProcessError:  # the commit deleted it
                self._text[key] = None
        return self._text[key]

    def version(self, path: str, day: str) -> str | None:
        """The commit of the file as of ``day``: its last version on or before it (a commit that
        deleted it does not count), else its first version after it; None if it never existed."""
        versions = self._versions(path)
        before = [v for v in versions if v[1] <= day]
        after = [v for v in versions if v[1] > day]
        for sha, _ in [*reversed(before), *after]:
            if self._show(sha, path) is not None:
                return sha
        return None

    def settings(self, settings: str, day: str) -> dict:
        """What the entry's ``CONFIG_FILE`` (as of ``day``) and ``..._SETTING=N`` settings set."""
        out = env_settings(settings)
        ref = config_ref(settings)
        if ref is None:
            return out
        path, section, index = ref
        path = path.replace("recipies/", "recipes/")
        sha = self.version(path, day)
        if sha is None:
            return out
        key = (sha, path, section, index)
        if key not in self._parsed:  # one file version is named by many entries of many master commits
            self._parsed[key] = self._file_settings(self._show(sha, path), section, index)
        return {**self._parsed[key], **out}

    @staticmethod
    def _file_settings(text: str, section: str, index: int) -> dict:
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            return {}
        return pool_settings(resolve(doc, section, index)) if isinstance(doc, dict) else {}

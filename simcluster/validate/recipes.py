"""What the benchmark harness behind a measured row ran, from its published recipes.

Most rows of the ``silicon_sample`` export come from SemiAnalysis InferenceX (formerly InferenceMAX;
Apache-2.0): nightly ``benchmark_serving.py`` runs of the deployments listed in its
``.github/configs/nvidia-master.yaml``. The export keeps the layout columns but drops what else the
recipe says — whether speculative decoding (MTP) ran, how many prefill and decode workers a
disaggregated deployment had and their layouts, and the flags its launch script gave the server
(token budget, sequence cap, KV-cache dtype, SGLang's scheduler receive interval). The recipe index
(``simcluster/data/validation/inferencex_recipes.json``) is those recipe entries over the history of
the master config, each with the dates it was in force, condensed by :func:`build_index` from a
clone of the repository; :func:`match` finds the entry a row was measured with. None of it looks at
measured times.

A row is an InferenceX row when its ``silicon_data_source`` is an InferenceX results file
(``source_file=YYYY-MM-DD.csv; ...``) or a dump of its results database (``db-dump/...``);
:data:`HARNESS` names the harness and its benchmark settings.

Rebuild (needs git and a clone of github.com/SemiAnalysisAI/InferenceX)::

    python -m simcluster.validate.recipes build /path/to/InferenceX --until 2026-05-15

(the shipped index: the master config's history from 2025-09-01 to 2026-05-15, which covers the
measurement dates of the dev file).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from simcluster.validate.silicon import ep_squared_encoding
from simcluster.validate.srtslurm import RecipeFiles, env_settings

INDEX_PATH = Path(__file__).resolve().parent.parent / "data" / "validation" / "inferencex_recipes.json"
MASTER_PATHS = (".github/configs/nvidia-master.yaml", "configs/nvidia-master.yaml")

# The harness of InferenceX (``benchmarks/benchmark_lib.sh`` and ``.github/workflows/benchmark-tmpl.yml``):
# ``benchmark_serving.py --dataset-name random --random-range-ratio 0.8 --num-prompts 10*conc
# --max-concurrency conc --request-rate inf --ignore-eos --num-warmups 2*conc``: input and output
# lengths uniform in [0.8 L, L], ten requests per client after a warm-up of two per client.
HARNESS = {
    "inferencex": {"random_range_ratio": 0.8, "prompts_per_client": 10},
}
_INFERENCEX_SOURCE = re.compile(r"^(source_file=\d{4}-\d\d-\d\d\.csv;|db-dump/)")
_MEASURED = re.compile(r"measured=(\d{4}-\d\d-\d\d)")
_IMAGE = re.compile(r"(?:image=|workflow_run_id=\d+;\s*)([^;\s]+)")

# simcluster names -> InferenceX's (the export maps InferenceX's "dsr1" to both DeepSeek-R1 and -V3)
_PREFIX = {"deepseek-r1": "dsr1", "deepseek-v3": "dsr1", "kimi-k2.5": "kimik2.5", "minimax-m2.5": "minimaxm2.5",
           "qwen3.5-397b-a17b": "qwen3.5", "gpt-oss-120b": "gptoss", "glm-5": "glm5",
           "llama-3.1-70b": "llama70b"}
_HW = {"b200_sxm": "b200", "gb200": "gb200", "h100_sxm": "h100", "h200_sxm": "h200", "b300_sxm": "b300",
       "gb300": "gb300"}
_FRAMEWORKS = {"trtllm": ("trt", "dynamo-trt", "dynamo-trtllm"), "sglang": ("sglang", "dynamo-sglang"),
               "vllm": ("vllm", "dynamo-vllm")}


def harness_of(source: str) -> str:
    """``inferencex`` for rows of InferenceX results, else ``""`` (unknown harness)."""
    return "inferencex" if _INFERENCEX_SOURCE.match(source or "") else ""


def measured_date(source: str) -> str:
    m = _MEASURED.search(source or "")
    return m.group(1) if m else ""


def image_of(source: str) -> str:
    m = _IMAGE.search(source or "")
    return _norm_image(m.group(1)) if m else ""


def _norm_image(image: str) -> str:
    return str(image or "").strip().strip('"').replace("nvcr.io#", "nvcr.io/")


# ----------------------------------------------------------------------------- building the index
def _pool(d) -> dict | None:
    if not isinstance(d, dict):
        return None
    return {"workers": int(d.get("num-worker") or 1), "tp": int(d.get("tp") or 1), "ep": int(d.get("ep") or 1),
            "dp": bool(d.get("dp-attn", False))}


def _settings(e: dict) -> str:
    return " ".join(str(s) for side in ("prefill", "decode") if isinstance(e.get(side), dict)
                    for s in (e[side].get("additional-settings") or []))


def _mtp_tokens(settings: str) -> int:
    """Draft tokens of an MTP entry, when the recipe names them (recipe files ``..._mtpN.yaml`` or
    ``DECODE_MTP_SIZE=N``); 0 when it does not."""
    m = re.search(r"DECODE_MTP_SIZE=(\d+)", settings) or re.search(r"mtp(\d+)\b", settings)
    return int(m.group(1)) if m else 0


def _concs(e: dict) -> list[int]:
    if e.get("conc-list"):
        return sorted(int(c) for c in e["conc-list"])
    lo, hi = e.get("conc-start"), e.get("conc-end")
    if lo is None or hi is None:
        return []
    out, c = [], int(lo)
    while c <= int(hi):  # InferenceX's generate_sweep_configs.py: doubling from conc-start to conc-end
        out.append(c)
        if c == int(hi):
            break
        c = min(c * 2, int(hi))
    return out


def _entries_of(config: dict) -> list[dict]:
    out = []
    for key, v in (config or {}).items():
        if not isinstance(v, dict):
            continue
        seq_cfgs = list(v.get("seq-len-configs") or [])
        scen = v.get("scenarios")
        if isinstance(scen, dict):
            for lst in scen.values():
                seq_cfgs += list(lst or [])
        parts = key.split("-")
        hw = parts[2] if len(parts) > 2 else ""
        for sc in seq_cfgs:
            for e in sc.get("search-space") or []:
                spec = str(e.get("spec-decoding", "none")).lower()
                rec = {
                    "key": key, "image": _norm_image(v.get("image")), "model": str(v.get("model") or ""),
                    "prefix": str(v.get("model-prefix", parts[0])), "precision": str(v.get("precision", "")),
                    "framework": str(v.get("framework", "")), "hw": hw, "disagg": bool(v.get("disagg", False)),
                    "isl": int(sc.get("isl", 0)), "osl": int(sc.get("osl", 0)),
                    "spec": spec, "mtp": _mtp_tokens(_settings(e)) if spec == "mtp" else 0, "conc": _concs(e),
                    "tp": int(e.get("tp") or 0), "ep": int(e.get("ep") or 1), "dp": bool(e.get("dp-attn", False)),
                    "prefill": _pool(e.get("prefill")), "decode": _pool(e.get("decode")),
                    "_raw": _settings(e) if v.get("disagg") else "",
                }
                if rec["conc"] and rec["prefix"] in _PREFIX.values() and hw in _HW.values():
                    out.append(rec)
    return out


def _script_paths(rec: dict) -> list[str]:
    name = (f"{rec['prefix']}_{rec['precision']}_{rec['hw']}{'_trt' if rec['framework'] == 'trt' else ''}"
            f"{'_mtp' if rec['spec'] == 'mtp' else ''}.sh")
    stem = name[:-3]
    return [f"benchmarks/single_node/{name}", f"benchmarks/{name}", f"benchmarks/{stem}_slurm.sh",
            f"benchmarks/{stem}_docker.sh"]


def _entry_settings(repo: str, sha: str, rec: dict, blobs: dict, evaluated: dict) -> list:
    """The launch-script settings of a single-node entry at commit ``sha``, one per concurrency."""
    import subprocess

    text = None
    for path in _script_paths(rec):
        key = (sha, path)
        if key not in blobs:
            try:
                blob = subprocess.check_output(["git", "-C", repo, "rev-parse", f"{sha}:{path}"],
                                               stderr=subprocess.DEVNULL).decode().strip()
            except Exception:  # noqa: BLE001 - no such file at that commit
                blob = None
            blobs[key] = blob
        if blobs[key]:
            text = blobs[key]
            break
    if text is None:
        return []
    out = []
    for conc in rec["conc"]:
        env = {"TP": rec["tp"], "EP_SIZE": rec["ep"], "DP_ATTENTION": "true" if rec["dp"] else "false",
               "CONC": conc, "ISL": rec["isl"], "OSL": rec["osl"], "MAX_MODEL_LEN": rec["isl"] + rec["osl"] + 256,
               "SPEC_DECODING": rec["spec"], "PORT": 8888, "PRECISION": rec["precision"]}
        k = (text, tuple(sorted(env.items())))
        if k not in evaluated:
            body = subprocess.check_output(["git", "-C", repo, "cat-file", "blob", text]).decode(errors="replace")
            evaluated[k] = script_settings(body, env)
        out.append(evaluated[k])
    return out


def build_index(repo: str | Path, since: str = "2025-09-01", until: str = "2026-06-01",
                srt_repo: str | Path | None = None) -> dict:
    """Every search-space entry of the master config of a clone of InferenceX committed on a day
    in ``[since, until)``, with the first and last date it was in force. Single-node entries carry
    what their launch scripts set; disaggregated entries what their srt-slurm recipe file sets
    (:mod:`simcluster.validate.srtslurm`; read from the clone ``srt_repo``, at the version in force
    on the day of the master config's commit) and their ``..._SETTING=N`` settings. Days are the commits' own
    (author) dates in their own time zones, the dates the index records: git would read a bare
    ``--until`` date as that day at the current time of day, and the index would depend on when it
    was built."""
    import subprocess

    import yaml

    repo = str(repo)
    seen: dict[str, dict] = {}
    blobs: dict = {}
    evaluated: dict = {}
    head = subprocess.check_output(["git", "-C", repo, "rev-parse", "HEAD"]).decode().strip()
    files = RecipeFiles(str(srt_repo)) if srt_repo else None
    srt_head = (subprocess.check_output(["git", "-C", str(srt_repo), "rev-parse", "HEAD"]).decode().strip()
                if srt_repo else None)
    for path in MASTER_PATHS:
        lo = (_dt.date.fromisoformat(since) - _dt.timedelta(days=2)).isoformat()
        hi = (_dt.date.fromisoformat(until) + _dt.timedelta(days=2)).isoformat()
        log = subprocess.check_output(["git", "-C", repo, "log", "--format=%H %ad", "--date=short",
                                       f"--since={lo}", f"--until={hi}", "--", path]).decode()
        for line in log.splitlines():
            sha, date = line.split()
            if not since <= date < until:
                continue
            try:
                text = subprocess.check_output(["git", "-C", repo, "show", f"{sha}:{path}"],
                                               stderr=subprocess.DEVNULL).decode()
                config = yaml.safe_load(text)
            except Exception:  # noqa: BLE001 - a broken historical file is skipped
                continue
            for rec in _entries_of(config):
                raw = rec.pop("_raw")
                if not rec["disagg"]:
                    rec["settings"] = _entry_settings(repo, sha, rec, blobs, evaluated)
                else:
                    st = files.settings(raw, date) if files is not None else env_settings(raw)
                    rec["settings"] = [st] * len(rec["conc"]) if st else []
                k = json.dumps(rec, sort_keys=True)
                if k in seen:
                    seen[k]["first"] = min(seen[k]["first"], date)
                    seen[k]["last"] = max(seen[k]["last"], date)
                else:
                    seen[k] = {**rec, "first": date, "last": date}
    entries = sorted(seen.values(), key=lambda r: (r["key"], r["first"], r["isl"], r["osl"], r["conc"]))
    return {
        "source": {"repository": "https://github.com/SemiAnalysisAI/InferenceX", "license": "Apache-2.0",
                   "files": list(MASTER_PATHS), "head": head, "since": since, "until": until,
                   **({"recipe_files": {"repository": "https://github.com/NVIDIA/srt-slurm", "license": "Apache-2.0",
                                        "head": srt_head}} if srt_repo else {}),
                   "built_by": "python -m simcluster.validate.recipes build"},
        "entries": entries,
    }


_FLAT = ("key", "image", "prefix", "precision", "framework", "hw", "disagg", "isl", "osl", "spec", "mtp", "conc",
         "tp", "ep", "dp", "first", "last", "settings", "model")
_POOL = ("workers", "tp", "ep", "dp")


def _pack(index: dict) -> dict:
    """Columnar form of the index (what is shipped): one list per entry, pools flattened."""
    rows = []
    table: list[str] = []
    where: dict[str, int] = {}
    for e in index["entries"]:
        ids = []
        for st in e.get("settings") or []:
            k = json.dumps(st, sort_keys=True)
            if k not in where:
                where[k] = len(table)
                table.append(k)
            ids.append(where[k])
        e = {**e, "settings": ids}
        row = [e[k] for k in _FLAT]
        for side in ("prefill", "decode"):
            pool = e.get(side)
            row += [pool[k] for k in _POOL] if pool else [None] * len(_POOL)
        rows.append(row)
    cols = list(_FLAT) + [f"{side}_{k}" for side in ("prefill", "decode") for k in _POOL]
    return {"source": index["source"], "columns": cols, "rows": rows, "settings": [json.loads(t) for t in table]}


def _unpack(packed: dict) -> dict:
    cols = packed["columns"]
    table = packed.get("settings", [])
    entries = []
    for row in packed["rows"]:
        d = dict(zip(cols, row))
        e = {k: d.get(k) for k in _FLAT}
        e["settings"] = [table[i] for i in (d.get("settings") or [])]
        for side in ("prefill", "decode"):
            e[side] = ({k: d[f"{side}_{k}"] for k in _POOL} if d.get(f"{side}_workers") is not None else None)
        entries.append(e)
    return {"source": packed.get("source", {}), "entries": entries}


# ----------------------------------------------------------------------------- matching rows
@dataclass(frozen=True)
class Recipe:
    """What the recipe entry of a row says (the parts the export dropped)."""

    key: str
    spec: str  # none | mtp
    mtp_draft_tokens: int  # draft tokens per step (0 = none; for MTP entries where the recipe says)
    dp_attention: bool
    prefill_workers: int = 0  # disaggregated: workers of each pool (0 = not a disaggregated entry)
    decode_workers: int = 0
    decode_dp_attention: bool = False
    ambiguous: bool = False  # several entries matched and disagreed on speculative decoding
    nearest: bool = False  # no entry ran this concurrency: the entries of the nearest one were taken
    prefill: tuple = ()  # disaggregated: (tp, ep, attention DP) of a worker of each pool
    decode: tuple = ()
    # single-node: what the launch script sets at this point (SETTINGS: budget, max_seqs, kv, mem_fraction,
    # recv_interval), per attention-DP rank; empty when unknown
    settings: dict = field(default_factory=dict, compare=False, hash=False)
    checkpoint: str = ""  # the Hugging Face checkpoint the recipe serves (its ``model``), "" if unknown


@lru_cache(maxsize=1)
def load_index(path: str | None = None) -> dict:
    p = Path(path) if path else INDEX_PATH
    if not p.is_file():
        return {"entries": []}
    return _unpack(json.loads(p.read_text()))


def entry_gpus(e: dict) -> int:
    """GPUs of a disaggregated entry: prefill workers × GPUs per worker + decode workers × GPUs per
    worker (a worker's ``tp`` is its GPU count, with or without attention DP)."""
    pre, dec = e.get("prefill") or {}, e.get("decode") or {}
    return int(pre.get("workers", 0)) * int(pre.get("tp", 0)) + int(dec.get("workers", 0)) * int(dec.get("tp", 0))


def match(row, model: str) -> Recipe | None:
    """The recipe entry a measured InferenceX row was run with, or None.

    Keys: framework, model, precision, GPU, aggregated/disaggregated, ISL/OSL and the concurrency;
    among the master-config versions, the one in force on the measurement date (else any); when
    the row names its container image, entries with that image are preferred; then entries whose
    layout agrees with the row's columns. ``ambiguous`` is set when the survivors disagree on
    speculative decoding (MTP is returned then, see below)."""
    return _match(row, model, row.mode == "disagg", 0)


def match_disaggregated_run(row, model: str) -> Recipe | None:
    """The disaggregated recipe entry an ``agg`` row of InferenceX really is, or None.

    The export writes some multi-node disaggregated runs as aggregated rows whose ``tp_size`` (and
    ``moe_tp_size``) is the deployment's total GPU count: GB200 DeepSeek-R1 rows of "tp 12 … 72" with
    attention DP 1 at concurrencies that only disaggregated entries list (e.g. "tp 32" at 2,150 clients,
    8k/1k: 6 DEP4 prefill workers + one DEP8 decode worker = 32 GPUs). A row is read that way only when
    no aggregated entry matches it and a disaggregated entry of its framework, model, precision, GPU
    and lengths has exactly its GPU count; among those, the entries of its concurrency (else of the
    nearest one, as :func:`match` does)."""
    if row.mode != "agg" or row.agg is None:
        return None
    if row.agg.gpus < 2:
        return None
    return _match(row, model, True, row.agg.gpus)


def _match(row, model: str, disagg: bool, gpus: int) -> Recipe | None:
    if harness_of(row.source) != "inferencex":
        return None
    prefix = _PREFIX.get(model)
    hw = _HW.get(row.system)
    # an agg row read as a disaggregated run may name its clients only in its batch column
    conc = row.stated_concurrency if gpus else row.concurrency_hint
    if prefix is None or hw is None or conc < 1:
        return None
    fws = _FRAMEWORKS.get(row.backend, ())
    same = [e for e in load_index()["entries"]
            if e["prefix"] == prefix and e["hw"] == hw and e["framework"] in fws and e["disagg"] == disagg
            and e["precision"] == row.precision and e["isl"] == row.isl and e["osl"] == row.osl]
    if gpus:  # an agg row read as a disaggregated run: entries of exactly its GPU count
        same = [e for e in same if entry_gpus(e) == gpus]
    cands = [e for e in same if conc in e["conc"]]
    nearest = False
    if not cands and same:
        # the sweep ran a concurrency no entry lists (older recipes set it per worker count): the
        # entries of the nearest concurrency, on a log scale
        def dist(e):
            return min(abs(math.log(c / conc)) for c in e["conc"])
        best = min(dist(e) for e in same)
        cands = [e for e in same if dist(e) <= best + 1e-9]
        nearest = True
    if not cands:
        return None
    date = measured_date(row.source)
    if date:
        # the master config in force on that day: entries first seen on or before it and last seen
        # within a month before it or later (a run can follow the last edit by weeks)
        d = _dt.date.fromisoformat(date)
        live = [e for e in cands if _dt.date.fromisoformat(e["first"]) <= d + _dt.timedelta(days=1)
                and _dt.date.fromisoformat(e["last"]) >= d - _dt.timedelta(days=31)]
        cands = live or cands
    image = image_of(row.source)
    if image:
        same = [e for e in cands if e["image"] == image]
        cands = same or cands
    if not gpus:
        cands = _by_layout(cands, row) or cands
    specs = [e["spec"] for e in cands]
    # The harness runs a deployment with and without MTP under separate recipes, and the export keeps
    # both with the same columns. When the entries in force list the point both ways, the row is
    # taken as the MTP run: with two equally likely candidates, the faster one is the prediction
    # with the smaller expected absolute percentage error.
    spec = "mtp" if "mtp" in specs else (specs[-1] if specs else "none")
    pick = [e for e in cands if e["spec"] == spec]
    e = pick[-1]  # the latest version in force
    tokens = 0
    if spec == "mtp":
        tokens = int(e.get("mtp") or 0) or default_mtp_tokens(row.backend, e)
    pre, dec = e.get("prefill"), e.get("decode")
    settings: dict = {}
    if e.get("settings"):
        i = min(range(len(e["conc"])), key=lambda j: abs(math.log(e["conc"][j] / conc)))
        settings = dict(e["settings"][i]) if i < len(e["settings"]) else {}
    return Recipe(key=e["key"], spec=spec, mtp_draft_tokens=tokens, dp_attention=bool(e.get("dp")),
                  prefill_workers=int(pre["workers"]) if disagg and pre else 0,
                  decode_workers=int(dec["workers"]) if disagg and dec else 0,
                  decode_dp_attention=bool(dec["dp"]) if disagg and dec else False,
                  ambiguous=len(set(specs)) > 1, nearest=nearest,
                  prefill=(int(pre["tp"]), int(pre["ep"]), bool(pre["dp"])) if disagg and pre else (),
                  decode=(int(dec["tp"]), int(dec["ep"]), bool(dec["dp"])) if disagg and dec else (),
                  settings=settings, checkpoint=str(e.get("model") or ""))


def _by_layout(cands: list[dict], row) -> list[dict]:
    """Entries whose parallel layout agrees with the row's columns (the export's layout columns are
    not always the recipe's own numbers, so this only breaks ties)."""
    if row.mode == "agg" and row.agg is not None:
        k = ep_squared_encoding(row.agg)
        if k:  # k GPUs with EP k, attention TP or DP (silicon.ep_squared_encoding): the entry says which
            return [e for e in cands if e["tp"] == k and e["ep"] == k]
        tp = row.agg.tp * max(row.agg.attention_dp, 1)
        out = [e for e in cands if e["tp"] in (row.agg.tp, tp) and bool(e["dp"]) == (row.agg.attention_dp > 1)]
        return out
    if row.decode is not None and row.prefill is not None:
        def ok(e):
            p, d = e.get("prefill") or {}, e.get("decode") or {}
            return (p.get("tp") in (row.prefill.tp, row.prefill.tp * max(row.prefill.attention_dp, 1))
                    and d.get("tp") in (row.decode.tp, row.decode.tp * max(row.decode.attention_dp, 1)))
        return [e for e in cands if ok(e)]
    return []


def default_mtp_tokens(framework: str, entry: dict) -> int:
    """Draft tokens of an MTP recipe that does not name them, from InferenceX's launch scripts:
    TRT-LLM ``dsr1_*_trt_mtp.sh`` sets ``num_nextn_predict_layers`` 3, or 1 with attention DP;
    SGLang ``dsr1_fp8_b200_mtp.sh`` EAGLE ``--speculative-num-steps 2``, ``qwen3.5_*_mtp.sh`` 3."""
    if framework == "trtllm":
        dp = entry.get("dp") or bool((entry.get("decode") or {}).get("dp"))
        return 1 if dp else 3
    if framework == "sglang":
        return 3 if entry.get("prefix") == "qwen3.5" else 2
    return 1


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m simcluster.validate.recipes")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="rebuild the recipe index from a clone of InferenceX")
    b.add_argument("repo")
    b.add_argument("--since", default="2025-09-01")
    b.add_argument("--until", default="2026-06-01")
    b.add_argument("--srt-slurm", default=None, help="a clone of github.com/NVIDIA/srt-slurm: the recipe files "
                   "of the disaggregated entries")
    b.add_argument("-o", "--out", default=str(INDEX_PATH))
    args = ap.parse_args(argv)
    import subprocess

    for name, repo in (("repo", args.repo), ("--srt-slurm", args.srt_slurm)):
        if repo is not None and subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"],
                                               capture_output=True).returncode != 0:
            ap.exit(2, f"{ap.prog}: {name}: {repo} is not a git clone (git rev-parse HEAD failed)\n")
    idx = build_index(args.repo, args.since, args.until, args.srt_slurm)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    packed = _pack(idx)
    out.write_text("{" + f'"source":{json.dumps(packed["source"], sort_keys=True)},\n'
                   + f'"columns":{json.dumps(packed["columns"])},\n'
                   + f'"settings":{json.dumps(packed["settings"], separators=(",", ":"), sort_keys=True)},\n"rows":[\n'
                   + ",\n".join(json.dumps(r, separators=(",", ":")) for r in packed["rows"]) + "\n]}\n")
    print(f"{len(idx['entries'])} recipe entries -> {out}")
    return 0



# ----------------------------------------------------------------------------- launch scripts
# The single-node recipes launch the server from ``benchmarks/[single_node/]<model>_<precision>_<gpu>
# [_trt][_mtp].sh`` with flags that depend on TP, EP, attention DP, concurrency and lengths. The index
# stores, per entry and concurrency, what those scripts set, evaluated with a small interpreter of
# the shell they are written in (assignments, ``$(( ))`` arithmetic, ``if/elif/else/fi`` on
# ``[[ ]]`` tests, here-documents) — the flags that change the simulation:
SETTINGS = {
    "budget": ("--max-num-batched-tokens", "max-num-batched-tokens", "--chunked-prefill-size",
               "--max_num_tokens", "max_num_tokens"),
    "max_seqs": ("--max-num-seqs", "max-num-seqs", "--max-running-requests"),
    "kv": ("--kv-cache-dtype", "kv-cache-dtype", "dtype"),
    "recv_interval": ("--scheduler-recv-interval",),
    # TRT-LLM ``attention_dp_config`` (here-document of the extra LLM-API options): the context
    # balancing of attention-DP ranks (1 = on) and its two iteration counts
    "adp_balance": ("enable_balance",),
    "adp_timeout_iters": ("timeout_iters",),
    "adp_wait_iters": ("batching_wait_iters",),
    # ... and its delayed batching of prompts without attention DP
    "bw_timeout_iters": ("batch_wait_timeout_iters",),
    "bw_max_tokens_ratio": ("batch_wait_max_tokens_ratio",),
    # the memory the engine may use: vLLM's share of the whole GPU (weights, activations, KV),
    # SGLang's static share (weights and KV pool), TRT-LLM's share of what the weights leave for KV
    "mem_fraction": ("--gpu-memory-utilization", "gpu-memory-utilization", "--mem-fraction-static",
                     "free_gpu_memory_fraction"),
}
_ARITH = re.compile(r"\$\(\((.*?)\)\)")
_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


def _expand(text: str, env: dict) -> str:
    def arith(m):
        expr = _VAR.sub(lambda v: str(env.get(v.group(1) or v.group(3), v.group(2) or 0)), m.group(1))
        expr = re.sub(r"\b([A-Za-z_]\w*)\b", lambda v: str(env.get(v.group(1), 0)), expr)
        expr = expr.replace("/", "//").replace("////", "//")
        t = re.match(r"^(.*?)\?(.*?):(.*)$", expr)
        if t:  # c ? a : b
            expr = f"(({t.group(2)}) if ({t.group(1)}) else ({t.group(3)}))"
        try:
            return str(int(eval(expr, {"__builtins__": {}}, {})))  # noqa: S307 - digits and operators only
        except Exception:  # noqa: BLE001
            return "0"

    text = _ARITH.sub(arith, text)
    return _VAR.sub(lambda v: str(env.get(v.group(1) or v.group(3), v.group(2) if v.group(2) is not None else "")),
                    text)


def _test(cond: str, env: dict) -> bool:
    """A ``[[ ... ]]`` / ``[ ... ]`` test of the scripts (comparisons joined by && and ||)."""
    cond = _expand(cond, env)
    cond = cond.replace("[[", " ").replace("]]", " ").replace("[", " ").replace("]", " ")

    def one(c: str) -> bool:
        c = c.strip().strip("()")
        m = re.match(r'^\s*"?([^"\s]*)"?\s*(-eq|-ne|-ge|-gt|-le|-lt|==|=|!=)\s*"?([^"\s]*)"?\s*$', c)
        if not m:
            m2 = re.match(r"^\s*-n\s+\"?([^\"\s]*)\"?\s*$", c)
            return bool(m2 and m2.group(1))
        a, op, b = m.groups()
        if op in ("==", "=", "!="):
            return (a == b) if op != "!=" else (a != b)
        try:
            x, y = float(a), float(b)
        except ValueError:
            return False
        return {"-eq": x == y, "-ne": x != y, "-ge": x >= y, "-gt": x > y, "-le": x <= y, "-lt": x < y}[op]

    return any(all(one(p) for p in part.split("&&")) for part in cond.split("||"))


def script_settings(text: str, env: dict) -> dict:
    """Run the assignments and conditionals of a launch script with ``env`` (TP, EP_SIZE,
    DP_ATTENTION, CONC, ISL, OSL, ...) and return the :data:`SETTINGS` its server command lines and
    here-documents set (numbers as ints, the KV dtype as text)."""
    env = dict(env)
    lines = text.replace("\\\n", " ").splitlines()
    stack: list[list[bool]] = []  # per if-block: [this branch active, a branch was taken]
    out: dict = {}
    heredoc = None
    for raw in lines:
        line = raw.split(" #")[0].strip() if not raw.strip().startswith("#") else ""
        if heredoc is not None:
            if line == heredoc:
                heredoc = None
                continue
            if all(s[0] for s in stack):
                _flags(_expand(line, env), out)
            continue
        if not line:
            continue
        active = all(s[0] for s in stack)
        m = re.match(r"^(if|elif)\s+(.*?);\s*then$", line)
        if m:
            if m.group(1) == "if":
                ok = active and _test(m.group(2), env)
                stack.append([ok, ok])
            elif stack:
                outer = all(s[0] for s in stack[:-1])
                ok = outer and not stack[-1][1] and _test(m.group(2), env)
                stack[-1] = [ok, stack[-1][1] or ok]
            continue
        if line == "else" and stack:
            outer = all(s[0] for s in stack[:-1])
            stack[-1] = [outer and not stack[-1][1], True]
            continue
        if line == "fi" and stack:
            stack.pop()
            continue
        if not active:
            continue
        hd = re.search(r"<<\s*'?\"?(\w+)'?\"?", line)
        if hd and line.startswith("cat"):
            heredoc = hd.group(1)
            continue
        if re.search(r"(vllm serve|sglang\.launch_server|trtllm-serve)", line):
            out["_server"] = True
            _flags(_expand(line, env), out)
            continue
        m = re.match(r"^(?:export\s+)?([A-Za-z_]\w*)=(\$\(\(.*\)\)|\"[^\"]*\"|'[^']*'|\S*)$", line)
        if m:
            env[m.group(1)] = _expand(m.group(2).strip('"').strip("'"), env)
            continue
        if out.get("_server") and line.startswith("--"):
            out["_server"] = True
            _flags(_expand(line, env), out)
    out.pop("_server", None)
    return out


def _flags(line: str, out: dict) -> None:
    for name, keys in SETTINGS.items():
        for k in keys:
            m = re.search(rf"(?:^|\s){re.escape(k)}\s*[:=]?\s*\"?([\w.\-]+)", line)
            if m and not (name == "kv" and k == "dtype" and not re.match(r"^\s*dtype:", line)):
                v = m.group(1)
                if v.lower() in ("true", "false"):
                    out[name] = int(v.lower() == "true")
                    continue
                if name.endswith(("_ratio", "_fraction")):
                    out[name] = float(v) if re.match(r"^[\d.]+$", v) else out.get(name)
                    continue
                out[name] = v.lower() if name == "kv" else (int(float(v)) if re.match(r"^[\d.]+$", v) else out.get(name))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""Loading scenarios: YAML (parsed safely), ``--set`` overrides, validation errors that name the field."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Iterable

import yaml
from pydantic import ValidationError

from simcluster.config.paths import dotted_location
from simcluster.errors import UserError

DEFAULT_SCENARIO = "default.yaml"  # shipped in simcluster/data/


def _format_validation_error(exc: ValidationError, source: str, data: dict) -> str:
    lines = []
    for err in exc.errors()[:5]:
        where = dotted_location(tuple(err.get("loc", ())), data, missing=err.get("type") == "missing")
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        kind = err.get("type")
        if kind == "extra_forbidden":
            msg = "unknown key"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            ctx = err.get("ctx", {})
            tag = str(ctx.get("discriminator", "")).strip("'")
            where = f"{where}.{tag}" if tag else where
            msg = (f"{ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
                   if kind == "union_tag_invalid" else "required but missing")
            lines.append(f"{where}: {msg}")
            continue
        elif kind == "missing":
            msg = "required but missing"
        elif "input" in err and err.get("type") not in ("missing",):
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"{where or '<root>'}: {msg}")
    more = len(exc.errors()) - 5
    tail = f" (and {more} more)" if more > 0 else ""
    return f"{source}: " + "; ".join(lines) + tail


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError("scenario file not found", where=str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read scenario ({exc})", where=str(p)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"invalid YAML: {problem}", where=where) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError("a scenario must be a YAML mapping at the top level", where=str(p))
    return data


def default_scenario_dict() -> dict:
    text = resources.files("simcluster").joinpath("data", DEFAULT_SCENARIO).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """Apply ``dotted.key=value`` overrides; values are parsed as YAML scalars/lists (``8``, ``true``, ``[0, 60]``)."""
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set expects dotted.key=value, got {item!r}")
        key, _, raw = item.partition("=")
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise UserError(f"--set: malformed key {key!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise UserError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a section")
            node = nxt
        node[parts[-1]] = value
    return data


def load_scenario(
    path: str | Path | None = None, overrides: Iterable[str] = (), seed: int | None = None
):
    """Load, override and validate a scenario. Returns ``(Scenario, base_dir)``.

    ``base_dir`` is the folder relative paths in the scenario resolve against (the scenario file's
    folder; the current directory for the built-in default).
    """
    from simcluster.config.scenario import Scenario

    if path is None:
        data, source, base = default_scenario_dict(), "built-in default scenario", Path.cwd()
    else:
        data, source, base = read_yaml(path), str(path), Path(path).resolve().parent
    data = apply_overrides(data, overrides)
    if seed is not None:
        data["seed"] = seed
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise UserError(_format_validation_error(exc, source, data)) from None
    return scenario, base


def resolved_dict(scenario) -> dict:
    """The scenario with every default filled in, as plain JSON-able data."""
    return scenario.model_dump(mode="json")

"""Generate the scenario field reference (docs/scenarios.md) from the typed models themselves.

    python -m simcluster.config.reference > docs/scenario-reference.md

A test checks the committed file is current, so the reference cannot drift from the code.
"""

from __future__ import annotations

import typing

from pydantic import BaseModel


def _type_name(ann) -> str:
    origin = typing.get_origin(ann)
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        inner = " | ".join(_type_name(a) for a in args)
        return inner + (" or null" if len(args) < len(typing.get_args(ann)) else "")
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(ann))
    if origin is typing.Annotated:
        return _type_name(typing.get_args(ann)[0])
    if isinstance(ann, type):
        return ann.__name__
    return str(ann).replace("typing.", "")


def _rows(model: type[BaseModel], prefix: str, out: list[str], nested: list) -> None:
    for name, f in model.model_fields.items():
        ann = f.annotation
        sub = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if sub is None:
            for a in typing.get_args(ann):
                if isinstance(a, type) and issubclass(a, BaseModel):
                    sub = a
        path = f"{prefix}{name}"
        if sub is not None and name != "workload":
            nested.append((path, sub))
            continue
        default = "required" if f.is_required() else repr(f.default)
        if name == "workload":
            out.append(f"| `{path}` | mapping | `required` | {f.description} |")
            continue
        desc = (f.description or "").replace("\n", " ")
        out.append(f"| `{path}` | {_type_name(ann)} | `{default}` | {desc} |")


def reference() -> str:
    from simcluster.config.scenario import Scenario

    lines = ["# Scenario field reference", "",
             "Generated from `simcluster/config/scenario.py` by `python -m simcluster.config.reference`;",
             "do not edit by hand. The `workload:` section is documented in docs/workloads.md.", ""]
    queue: list = [("", Scenario)]
    seen = set()
    while queue:
        prefix, model = queue.pop(0)
        if (prefix, model) in seen:
            continue
        seen.add((prefix, model))
        rows: list[str] = []
        nested: list = []
        _rows(model, f"{prefix}." if prefix else "", rows, nested)
        title = prefix or "top level"
        lines += [f"## `{title}`", "", " ".join((model.__doc__ or "").strip().split("\n\n")[0].split()), ""]
        if rows:
            lines += ["| field | type | default | meaning |", "|---|---|---|---|", *rows, ""]
        queue.extend(nested)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(reference(), end="")

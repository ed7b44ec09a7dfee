"""Dotted field paths for validation errors (``pools.decode.layout``, ``workload.arrival.rate_per_s``)."""

from __future__ import annotations

from typing import Any


def dotted_location(loc: tuple, data: Any, prefix: str = "", missing: bool = False) -> str:
    """A pydantic error location as the dotted path the user wrote.

    Discriminated unions insert their tag (``'synthetic'``, ``'poisson'``) into ``loc``; those are
    dropped by walking the input alongside: an item that is not a key of the current mapping is a
    tag, unless it is the missing field a ``missing`` error names (the last item).
    """
    parts = [prefix] if prefix else []
    node = data
    for i, item in enumerate(loc):
        if isinstance(node, dict):
            if item in node:
                parts.append(str(item))
                node = node[item]
            elif missing and i == len(loc) - 1:
                parts.append(str(item))
        elif isinstance(node, (list, tuple)) and isinstance(item, int) and 0 <= item < len(node):
            parts.append(str(item))
            node = node[item]
    return ".".join(parts)


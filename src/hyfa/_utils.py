"""Small helpers shared across subpackages."""

from __future__ import annotations

from collections.abc import Iterable


def as_list(names: str | Iterable[str] | None) -> list[str] | None:
    """Return ``names`` as a list of strings; a single string is one name and ``None`` stays ``None``."""
    if names is None:
        return None
    if isinstance(names, str):
        return [names]
    return [str(n) for n in names]

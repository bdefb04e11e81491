"""Registries are plain dicts; this is the one strict lookup into them."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def lookup(table: dict[str, T], name: str, what: str) -> T:
    """``table[name]``, or KeyError naming ``what`` and listing the valid choices."""
    try:
        return table[name]
    except KeyError:
        raise KeyError(f"unknown {what} {name!r}; choose from: {', '.join(table)}") from None

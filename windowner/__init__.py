"""windowner: the classic window-based named-entity recognizer, with hand-written gradients.

``windowner.load`` (windowner.api) and ``windowner.train`` (windowner.train) are imported on
first use, so ``import windowner`` and ``windowner --help`` stay light. ``windowner.train`` is
also the submodule's name: the module is callable and calling it calls ``train()``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load", "train", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "load":
        from windowner.api import load

        return load
    if name == "train":  # the submodule, callable as train() (see the end of train.py)
        import importlib

        return importlib.import_module("windowner.train")
    raise AttributeError(f"module 'windowner' has no attribute {name!r}")

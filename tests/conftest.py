import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


@pytest.fixture
def data_dir() -> Path:
    return ROOT / "data"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def embedded_data(test: bool = True) -> list[str]:
    """``--set`` arguments pointing a config at the embedded corpus by absolute path."""
    splits = {
        "train": ROOT / "data/train.conll",
        "dev": ROOT / "data/dev.conll",
        "test": ROOT / "data/test.conll" if test else "null",
    }
    return [arg for split, path in splits.items() for arg in ("--set", f"data.{split}={path}")]

"""Model cards: MODEL.md in every run directory, and the same provenance in model.npz."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from windowner import __version__, checkpoint
from windowner.checkpoint import load_npz
from windowner.train import train

from .conftest import ROOT
from .helpers import tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("card") / "run"
    train(tiny_config(test=True, train={"epochs": 2}), out_dir=out)
    return out


def test_model_npz_records_data_hashes_date_and_version(run):
    _, meta = load_npz(run / "model.npz")
    prov = meta["provenance"]
    assert prov["windowner_version"] == __version__
    assert prov["created"].endswith("Z") and prov["created"][:4].isdigit()
    by_split = {f["split"]: f for f in prov["data"]}
    assert set(by_split) == {"train", "dev", "test"}
    for split, f in by_split.items():
        path = ROOT / f"data/{split}.conll"
        assert f["name"] == path.name and f["bytes"] == path.stat().st_size
        assert f["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_model_card_has_data_scores_config_and_command(run):
    text = (run / "MODEL.md").read_text(encoding="utf-8")
    summary = json.loads((run / "summary.json").read_text())
    _, meta = load_npz(run / "model.npz")
    for f in meta["provenance"]["data"]:
        assert f"| {f['split']} | `{f['path']}` | `{f['sha256']}` | {f['bytes']} |" in text
    for split in ("dev", "test"):
        s = summary[split]
        assert f"| **overall** | {s['precision']:.2f} | {s['recall']:.2f} | {s['f1']:.2f} |" in text
        for kind, t in s["per_type"].items():
            assert f"| {kind} | {t['precision']:.2f} | {t['recall']:.2f} | {t['f1']:.2f} |" in text
    assert (run / "config.yaml").read_text(encoding="utf-8") in text
    assert f"windowner train --config {run / 'config.yaml'}" in text
    assert meta["provenance"]["created"] in text and __version__ in text


def test_sha256_is_streamed_and_a_pipe_is_not_hashed(tmp_path, monkeypatch):
    big = tmp_path / "big.conll"
    big.write_bytes(os.urandom(10_000))
    updates: list[int] = []
    real_sha256 = hashlib.sha256

    class Recording:
        def __init__(self) -> None:
            self.inner = real_sha256()

        def update(self, data: bytes) -> None:
            updates.append(len(data))
            self.inner.update(data)

        def hexdigest(self) -> str:
            return self.inner.hexdigest()

    monkeypatch.setattr(checkpoint, "HASH_PIECE", 1024)
    monkeypatch.setattr(checkpoint.hashlib, "sha256", Recording)
    digest = checkpoint.file_sha256(big)
    monkeypatch.undo()
    assert digest == hashlib.sha256(big.read_bytes()).hexdigest()
    assert updates == [1024] * 9 + [10_000 - 9 * 1024]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert checkpoint.file_sha256(fifo) is None


def test_a_run_without_dev_and_test_says_so(tmp_path):
    train(tiny_config(), {"train.epochs": 1, "data.dev": None}, out_dir=tmp_path / "r")
    text = (tmp_path / "r" / "MODEL.md").read_text()
    assert "no scores" in text
    assert "| dev |" not in text

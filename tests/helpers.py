"""Helpers shared by several test modules (test modules never import each other).

Each section belongs to one area; add a new section rather than growing another's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from windowner.checkpoint import load_npz
from windowner.gradcheck import dense_grad
from windowner.nn.layers import SparseGrad
from windowner.nn.losses import SENTENCE_OBJECTIVES
from windowner.nn.model import Batch, ModelSpec, WindowScorer
from windowner.train import strip_timing

# ----------------------------------------------------------------------------- runs (arch-jobs)


def outcome(run: Path) -> dict:
    """Everything a finished run leaves, minus what depends on the machine's speed."""
    last, _ = load_npz(run / "last.npz")
    model, _ = load_npz(run / "model.npz")
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run / "summary.json").read_text())
    for key in ("run_dir", "seconds"):
        summary.pop(key)
    return {
        "last": last,
        "model": model,
        "metrics": [strip_timing(r) for r in metrics],
        "summary": summary,
    }


# ----------------------------------------------------------------------------- nn (arch-nn)
# Small models and batches for the fast-path and reference comparisons.


def make_model(dtype="float64", **kw):
    args = dict(vocab_size=40, n_out=5, window=5, word_dim=4, caps_dim=2, hidden=8, dtype=dtype)
    args.update(kw)
    if args.get("objective") == "ranking":
        args["n_out"] = 1
    spec = ModelSpec(**args)
    return WindowScorer.create(spec, np.random.default_rng(0))


def make_batch(spec, rng, n=13, k=0):
    """Windows drawn from a few ids so that rows repeat, as in text. For the sentence-level
    objectives the n windows form sentences of random lengths (one may be empty) and ``k``
    is ignored (they take no corrupted windows)."""
    w = rng.integers(0, 8, (n, spec.window)) * 5
    c = rng.integers(0, 6, (n, spec.window))
    t = rng.integers(0, spec.n_out, n)
    if spec.objective in SENTENCE_OBJECTIVES:
        return Batch(w, c, t, bounds=random_bounds(rng, n))
    if k == 0:
        return Batch(w, c, t)
    nw = rng.integers(0, spec.vocab_size, (k * n, spec.window))
    nc = rng.integers(0, 6, (k * n, spec.window))
    return Batch(words=w, caps=c, tags=t, neg_words=nw, neg_caps=nc)


def random_bounds(rng, n):
    """Sentence bounds (S + 1,) over n tokens: cuts at random places, a repeated cut (an
    empty sentence) included when n > 2."""
    cuts = np.sort(rng.integers(1, n, size=max(n // 4, 1))) if n > 1 else np.array([], int)
    if n > 2:
        cuts = np.sort(np.append(cuts, cuts[0]))
    return np.concatenate([[0], cuts, [n]]).astype(np.int64)


def assert_grads_close(ref, got, shapes, rtol, atol=0.0):
    assert set(ref) == set(got)
    for name in ref:
        if isinstance(ref[name], SparseGrad):
            assert isinstance(got[name], SparseGrad)
            np.testing.assert_array_equal(got[name].ids, ref[name].ids)
        np.testing.assert_allclose(
            dense_grad(got[name], shapes[name]),
            dense_grad(ref[name], shapes[name]),
            rtol=rtol,
            atol=atol,
            err_msg=name,
        )


# ------------------------------------------------------ formats, cards, spaCy (api-formats)

EMBEDDED = Path(__file__).resolve().parents[1] / "data"


def tiny_config(test: bool = False, **sections):
    """A Config that trains in about a second on the embedded train/dev data (and test when
    ``test``); ``sections`` replace whole sections, e.g. ``train={"epochs": 2}``."""
    from windowner import config as cfg

    raw = {
        "seed": 1,
        "features": {"window": 3, "caps_dim": 2},
        "embeddings": {"dim": 8},
        "model": {"hidden": 16},
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"epochs": 3},
        "data": {
            "train": str(EMBEDDED / "train.conll"),
            "dev": str(EMBEDDED / "dev.conll"),
            "test": str(EMBEDDED / "test.conll") if test else None,
        },
    }
    return cfg.from_dict({**raw, **sections})


# ----------------------------------------------------------------------------- features (acc-feat)
# Models with extra window-feature tables (prefixes, suffixes, shape) and batches for them.

FEATURE_TABLES = {"affix": (13, 3, 4), "shape": (6, 2, 1)}  # name: (rows, dim, slots)


def make_feature_model(dtype="float64", tables=FEATURE_TABLES, **kw):
    names = tuple(tables)
    extra = {
        "feature_names": names,
        "feature_rows": tuple(tables[n][0] for n in names),
        "feature_dims": tuple(tables[n][1] for n in names),
        "feature_slots": tuple(tables[n][2] for n in names),
    }
    return make_model(dtype, **extra, **kw)


def with_feats(batch, spec, rng):
    """``batch`` plus random ids of the spec's feature tables (corrupted windows get their own)."""
    n, w = batch.words.shape

    def draw(m):
        tables = zip(spec.feature_rows, spec.feature_slots, strict=True)
        return np.concatenate([rng.integers(0, r, (m, w, k)) for r, k in tables], axis=2)

    neg = None if batch.neg_words is None else draw(len(batch.neg_words))
    return dataclasses.replace(batch, feats=draw(n), neg_feats=neg)


def covering_pairs(first: tuple | list, second: tuple | list) -> list:
    """Every (a, b) of first × second as a pytest param, for a gradient check over activations
    × objectives: the pairs of one diagonal cover (every value of either list at least once)
    run in the fast tier, every other pair is marked slow (the full suite runs them all)."""
    n = max(len(first), len(second))
    cover = {(first[i % len(first)], second[i % len(second)]) for i in range(n)}
    return [
        pytest.param(a, b, marks=() if (a, b) in cover else pytest.mark.slow)
        for a in first
        for b in second
    ]

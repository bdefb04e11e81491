"""Turning per-token scores into tags: argmax, or Viterbi with hard IOB2 constraints.

Viterbi maximises the sum of per-token scores over tag sequences in which ``I-X`` only follows
``B-X`` or ``I-X`` and no sentence starts with ``I-``. Scores of a softmax model are first
turned into log-probabilities; max-margin scores are used as they are (as Collobert et al.).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DECODERS = ("viterbi", "argmax")


def allowed_transitions(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(C, C) bool ``allowed[prev, next]`` and (C,) bool ``allowed_start``."""
    n = len(tags)
    allowed = np.ones((n, n), dtype=bool)
    start = np.ones(n, dtype=bool)
    for j, nxt in enumerate(tags):
        if nxt.startswith("I-"):
            start[j] = False
            for i, prev in enumerate(tags):
                allowed[i, j] = prev[2:] == nxt[2:] and prev[:2] in ("B-", "I-")
    return allowed, start


def viterbi(scores: np.ndarray, allowed: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Best constrained path: scores (T, C) → tag ids (T,)."""
    T, C = scores.shape
    penalty = np.where(allowed, 0.0, -np.inf)
    best = np.where(start, scores[0].astype(np.float64), -np.inf)
    back = np.zeros((T, C), dtype=np.int64)
    for t in range(1, T):
        cand = best[:, None] + penalty
        back[t] = cand.argmax(axis=0)
        best = cand[back[t], np.arange(C)] + scores[t]
    path = np.empty(T, dtype=np.int64)
    path[-1] = int(best.argmax())
    for t in range(T - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def decode_sentences(
    scores: np.ndarray, bounds: np.ndarray, tags: Sequence[str], method: str = "viterbi"
) -> list[list[str]]:
    """Per-token scores (N, C) for sentences delimited by ``bounds`` (S + 1,) → tag strings."""
    if method == "argmax":
        ids = scores.argmax(axis=1)
        return [[tags[i] for i in ids[a:b]] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    allowed, start = allowed_transitions(tags)
    out = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        path = viterbi(scores[a:b], allowed, start) if b > a else []
        out.append([tags[i] for i in path])
    return out

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


def viterbi_batch(
    scores: np.ndarray, bounds: np.ndarray, allowed: np.ndarray, start: np.ndarray
) -> np.ndarray:
    """``viterbi`` for every sentence at once: scores (N, C) of sentences delimited by
    ``bounds`` (S + 1,) → tag ids (N,), equal to running ``viterbi`` on each sentence.

    The loop runs over positions t = 0 … T−1 (T the longest sentence), each step one set of
    array operations over all sentences still that long; sentences are ordered longest first so
    those are a prefix. Back-pointers are stored per token, (N, C).
    """
    N, C = scores.shape
    lengths = np.diff(bounds)
    by_length = np.argsort(-lengths, kind="stable")
    lengths = lengths[by_length]
    lengths = lengths[lengths > 0]
    path = np.zeros(N, dtype=np.int64)
    if len(lengths) == 0:
        return path
    first = bounds[:-1][by_length][: len(lengths)]
    # active[t]: how many sentences (a prefix, longest first) have a token at position t
    active = len(lengths) - np.searchsorted(lengths[::-1], np.arange(lengths[0]), side="right")
    penalty = np.where(allowed, 0.0, -np.inf)
    best = np.where(start, scores[first].astype(np.float64), -np.inf)  # (S, C)
    back = np.zeros((N, C), dtype=np.int64)
    cols = np.arange(C)
    for t in range(1, len(active)):
        k = int(active[t])
        rows = first[:k] + t
        cand = best[:k, :, None] + penalty  # (k, prev, next)
        prev = cand.argmax(axis=1)  # (k, C)
        back[rows] = prev
        best[:k] = cand[np.arange(k)[:, None], prev, cols] + scores[rows]
    last = first + lengths - 1
    path[last] = best.argmax(axis=1)
    for t in range(len(active) - 1, 0, -1):
        rows = first[: int(active[t])] + t
        path[rows - 1] = back[rows, path[rows]]
    return path


def decode_sentences(
    scores: np.ndarray, bounds: np.ndarray, tags: Sequence[str], method: str = "viterbi"
) -> list[list[str]]:
    """Per-token scores (N, C) for sentences delimited by ``bounds`` (S + 1,) → tag strings."""
    if method == "argmax":
        ids = scores.argmax(axis=1)
    else:
        allowed, start = allowed_transitions(tags)
        ids = viterbi_batch(scores, bounds, allowed, start)
    return split_tags(ids, bounds, tags)


def split_tags(ids: np.ndarray, bounds: np.ndarray, tags: Sequence[str]) -> list[list[str]]:
    """Tag ids (N,) of sentences delimited by ``bounds`` (S + 1,) → tag strings per sentence."""
    names = [tags[i] for i in ids.tolist()]
    return [names[a:b] for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]

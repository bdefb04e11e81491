"""Objectives: each returns the mean loss and the gradient with respect to the scores.

ranking     J = mean over (true, corrupted) pairs of max(0, Δ + s_c − s)       (the notes)
multiclass  J = mean over windows of Σ_{c≠y} max(0, Δ + s_c − s_y)     (Weston–Watkins)
softmax     J = mean over windows of −log softmax(s)_y                 (CS224n 2017)
crf         J = Σ over sentences of log Z − s(y), / tokens   (sentence-level log-likelihood)
structured  J = Σ over sentences of max_ŷ [Δ·Hamming(y, ŷ) + s(ŷ)] − s(y), / tokens

The two sentence-level objectives (Collobert et al. 2011 §3.3.2) live in ``nn/crf.py``; they
score whole tag paths with learned transitions and are applied by
``nn.model.sentence_objective`` (through ``WindowScorer.objective_grads``).
"""

from __future__ import annotations

import numpy as np

OBJECTIVES = ("ranking", "multiclass", "softmax", "crf", "structured")
SENTENCE_OBJECTIVES = ("crf", "structured")  # trained on whole sentences (nn/crf.py)


def ranking_margins(s_true: np.ndarray, s_corrupt: np.ndarray, margin: float) -> np.ndarray:
    """(P,) true and (k·P,) corrupted scores (row j·P + i pairs with i) → (k·P,) Δ + s_c − s."""
    return margin + s_corrupt - np.tile(s_true, len(s_corrupt) // len(s_true))


def ranking_hinge(
    s_true: np.ndarray, s_corrupt: np.ndarray, margin: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """Pairwise max-margin loss → (J, dJ/ds_true (P,), dJ/ds_corrupt (k·P,))."""
    m = ranking_margins(s_true, s_corrupt, margin)
    active = (m > 0).astype(s_true.dtype)
    n_pairs = len(m)
    loss = float(np.sum(m * active)) / n_pairs
    d_corrupt = active / n_pairs
    d_true = -d_corrupt.reshape(-1, len(s_true)).sum(axis=0)
    return loss, d_true, d_corrupt


def multiclass_margins(scores: np.ndarray, y: np.ndarray, margin: float) -> np.ndarray:
    """(B, C) scores and (B,) labels → (B, C) Δ + s_c − s_y, with the true class set to 0."""
    rows = np.arange(len(y))
    m = margin + scores - scores[rows, y][:, None]
    m[rows, y] = 0.0
    return m


def multiclass_hinge(scores: np.ndarray, y: np.ndarray, margin: float) -> tuple[float, np.ndarray]:
    """Weston–Watkins multi-class hinge → (J, dJ/dscores (B, C))."""
    m = multiclass_margins(scores, y, margin)
    active = (m > 0).astype(scores.dtype)
    n = len(y)
    loss = float(np.sum(m * active)) / n
    dscores = active
    dscores[np.arange(n), y] = -active.sum(axis=1)
    dscores /= n
    return loss, dscores


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise log softmax of (B, C) scores, stable."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Cross-entropy over tags → (J, dJ/dscores = (softmax − onehot) / B)."""
    logp = log_softmax(scores)
    n = len(y)
    rows = np.arange(n)
    loss = -float(np.sum(logp[rows, y])) / n
    dscores = np.exp(logp)
    dscores[rows, y] -= 1.0
    dscores /= n
    return loss, dscores

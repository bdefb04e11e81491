"""Scores in [0, 1] for every model: tag probabilities and the softmax temperature.

A softmax model's scores are log-probabilities up to a constant, so a token's score is the
softmax probability of its decoded tag. Hinge models (``multiclass``, ``ranking``) are trained
for margins, not probabilities: their scores go through a softmax with a temperature T,
``p = softmax(s / T)`` (ranking: ``p(entity) = sigmoid((s − θ) / T)`` with the model's
threshold θ). T is fitted once, at the end of training, to minimise the negative
log-likelihood of the dev set's gold tags (a golden-section search over log(1/T): the NLL is
convex in 1/T) and stored in the model file's metadata as ``temperature``; models without it
use T = 1.

Where to change what: the probabilities are ``tag_probabilities`` (``token_probabilities``:
crf models' marginals); the fit is
``fit_temperature``; writing T into an existing model file is ``store_temperature``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from windowner.checkpoint import load_npz, save_npz

if TYPE_CHECKING:
    from windowner.tagger import Tagger
    from windowner.windows import Encoded

PROBABILISTIC = ("softmax", "crf")  # objectives whose scores are probabilities: no temperature
_LOG_BETA_RANGE = (math.log(1e-2), math.log(1e2))  # 1/T from 0.01 to 100


def tag_probabilities(
    scores: np.ndarray, objective: str, threshold: float = 0.0, temperature: float = 1.0
) -> np.ndarray:
    """(N, C) model scores → (N, C') float64 probabilities over the output tags.

    C' = C, except for ranking (C = 1): columns ``O``, ``B-ENT``, ``I-ENT`` where both entity
    columns hold p(entity) (the chosen one of them is what a token's score reads)."""
    z = scores.astype(np.float64)
    if objective == "ranking":
        p_entity = _sigmoid((z[:, 0] - threshold) / temperature)
        return np.stack([1.0 - p_entity, p_entity, p_entity], axis=1)
    if objective != "softmax":
        z = z / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def token_probabilities(tagger: Any, scores: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """(N, C') probabilities of every output tag per token, as ``tagger`` (a Tagger or an
    Ensemble) decodes: a ``crf`` model's are its marginals p(y_t = j | sentence), by
    forward–backward with the learned transitions (and the IOB2 rules under Viterbi) — the
    posteriors of the model it was trained to be, so no temperature; any other model's are
    ``tag_probabilities``. ``bounds`` (S + 1,): the sentences of the N tokens."""
    if tagger.objective == "crf":
        from windowner.nn.crf import token_marginals

        return token_marginals(scores.astype(np.float64), bounds, tagger.path_transitions())
    return tag_probabilities(scores, tagger.objective, tagger.threshold, tagger.temperature)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for any x


def fit_temperature(tagger: Tagger, encoded: Encoded) -> float:
    """The T minimising the NLL of ``encoded``'s gold tags under the tagger's hinge scores;
    1.0 for a softmax model or when no token has a known gold tag."""
    if tagger.objective in PROBABILISTIC:  # crf: its marginals (token_probabilities)
        return 1.0
    known = encoded.tags >= 0
    if not known.any():
        return 1.0
    scores = tagger.scores(encoded).astype(np.float64)[known]  # (N, C)
    gold = encoded.tags[known]  # (N,)
    if tagger.objective == "ranking":
        is_entity = np.array([t != "O" for t in tagger.tags])[gold]
        sign = np.where(is_entity, 1.0, -1.0)
        margin = sign * (scores[:, 0] - tagger.threshold)  # (N,)
        nll = lambda beta: float(np.mean(np.logaddexp(0.0, -beta * margin)))  # noqa: E731
    else:
        gold_score = scores[np.arange(len(gold)), gold]  # (N,)
        top = scores.max(axis=1)

        def nll(beta: float) -> float:
            lse = beta * top + np.log(np.exp(beta * (scores - top[:, None])).sum(axis=1))
            return float(np.mean(lse - beta * gold_score))

    return 1.0 / math.exp(golden_section(lambda u: nll(math.exp(u)), *_LOG_BETA_RANGE))


def golden_section(f: Callable[[float], float], lo: float, hi: float, steps: int = 60) -> float:
    """The minimiser of a unimodal ``f`` on [lo, hi] (60 steps shrink the interval 0.618^60)."""
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo + (1 - ratio) * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = f(a), f(b)
    for _ in range(steps):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = lo + (1 - ratio) * (hi - lo)
            fa = f(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = f(b)
    return (lo + hi) / 2.0


def store_temperature(path: Path, temperature: float) -> None:
    """Rewrite a model file with ``temperature`` in its metadata; all else kept as it is."""
    arrays, meta = load_npz(path)
    meta["temperature"] = temperature
    save_npz(path, arrays, meta)

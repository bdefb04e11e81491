"""Central-difference gradient checks of the whole model, in float64.

The default check is the notes' own example: 5-word windows of 4-dim word vectors (x ∈ R^20),
8 hidden units, for every activation × objective, with L2 on (embeddings included) and dropout
on with a fixed mask. Inputs are redrawn until every pre-activation and every hinge margin is
at least ``KINK_GAP`` away from a kink, so the numeric derivative is well defined. The
sentence-level objectives (crf, structured) take the same windows as sentences of
``NOTES_SENTENCES`` tokens, with random tag transitions A/start/end (checked like every other
parameter); for the structured hinge the best loss-augmented path must beat the second best by
``KINK_GAP`` (``crf.hinge_kink_gap``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from windowner.errors import ConfigError
from windowner.nn.activations import ACTIVATIONS, KINKS
from windowner.nn.crf import hinge_kink_gap
from windowner.nn.layers import SparseGrad
from windowner.nn.losses import (
    OBJECTIVES,
    SENTENCE_OBJECTIVES,
    multiclass_margins,
    ranking_margins,
)
from windowner.nn.model import TRANSITIONS, Batch, ModelSpec, WindowScorer, transitions_of

EPS = 1e-5
TOLERANCE = 1e-6
KINK_GAP = 1e-3
NOTES_TAGS = 5  # O, B-LOC, I-LOC, B-PER, I-PER
NOTES_SENTENCES = (1, 3, 2)  # sentence lengths of the crf/structured example


@dataclass(frozen=True)
class CheckResult:
    activation: str
    objective: str
    param: str
    max_rel_error: float
    n_checked: int
    max_abs_diff: float = 0.0

    @property
    def ok(self) -> bool:
        return self.max_rel_error < TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        """The fields plus ``ok``, JSON-ready (``windowner gradcheck --json``)."""
        return {**asdict(self), "ok": self.ok}


def relative_error(analytic: np.ndarray, numeric: np.ndarray, noise: float = 0.0) -> np.ndarray:
    """Elementwise |a − n| / max(|a| + |n|, 1e-8), taken as 0 where |a − n| ≤ ``noise``.

    ``noise`` is the rounding error of the central difference itself, 4·u·max(1, |J|)/(2ε)
    (u = float64 unit roundoff): without it a gradient that is exactly 0 (a saturated unit)
    would show a "relative" error of ~1e-3 from rounding alone. The raw |a − n| is reported
    beside it (``max_abs_diff``).
    """
    diff = np.abs(analytic - numeric)
    rel = diff / np.maximum(np.abs(analytic) + np.abs(numeric), 1e-8)
    return np.where(diff <= noise, 0.0, rel)


def roundoff(loss: float, eps: float = EPS) -> float:
    """Bound on the rounding error of (J(θ+ε) − J(θ−ε)) / 2ε in float64."""
    return 4.0 * np.finfo(np.float64).eps * max(1.0, abs(loss)) / (2.0 * eps)


def dense_grad(grad: np.ndarray | SparseGrad, shape: tuple[int, ...]) -> np.ndarray:
    """A sparse embedding gradient as a dense array (for checking only)."""
    if not isinstance(grad, SparseGrad):
        return grad
    out = np.zeros(shape, dtype=grad.rows.dtype)
    out[grad.ids] = grad.rows
    return out


def entries_to_check(
    name: str,
    param: np.ndarray,
    grad: np.ndarray | SparseGrad | None,
    rng: np.random.Generator,
    limit: int | None,
) -> Iterator[tuple[int, ...]]:
    """Indices to perturb: all entries, or of an embedding only the rows the batch used;
    at most ``limit`` of them, drawn with ``rng``."""
    if isinstance(grad, SparseGrad):
        rows = grad.ids
        idx = [(int(r), j) for r in rows for j in range(param.shape[1])]
    else:
        idx = [tuple(int(i) for i in ix) for ix in np.ndindex(param.shape)]
    if limit is not None and len(idx) > limit:
        picks = rng.choice(len(idx), size=limit, replace=False)
        idx = [idx[i] for i in sorted(picks)]
    yield from idx


def check_gradients(
    model: WindowScorer,
    loss_fn: Callable[[], float],
    grads: dict,
    rng: np.random.Generator,
    limit: int | None = None,
    eps: float = EPS,
) -> dict[str, tuple[float, int, float]]:
    """Max relative error per parameter between ``grads`` and central differences of
    ``loss_fn`` (which reads model.params) → {name: (max_rel_error, n_checked, max_abs_diff)}."""
    out = {}
    noise = roundoff(loss_fn(), eps)
    for name, param in model.params.items():
        grad = grads.get(name)
        if grad is None:
            continue
        analytic = dense_grad(grad, param.shape)
        worst, count, worst_abs = 0.0, 0, 0.0
        for ix in entries_to_check(name, param, grad, rng, limit):
            old = param[ix]
            param[ix] = old + eps
            plus = loss_fn()
            param[ix] = old - eps
            minus = loss_fn()
            param[ix] = old
            numeric = (plus - minus) / (2 * eps)
            worst = max(worst, float(relative_error(np.float64(analytic[ix]), numeric, noise)))
            worst_abs = max(worst_abs, abs(float(analytic[ix]) - numeric))
            count += 1
        out[name] = (worst, count, worst_abs)
    return out


Masks = tuple  # (input mask (N, D) or None, hidden mask (N, H) or None)


def fixed_masks(rng: np.random.Generator, spec: ModelSpec, n: int) -> Masks:
    """Dropout masks drawn once and then held fixed, so the loss is a function of θ alone."""

    def draw(keep: float, width: int) -> np.ndarray | None:
        return None if keep >= 1.0 else (rng.random((n, width)) < keep) / keep

    return draw(spec.input_keep_prob, spec.input_dim), draw(spec.keep_prob, spec.hidden)


def kink_distance(model: WindowScorer, batch: Batch, masks: Masks) -> float:
    """Smallest distance of any pre-activation from an activation kink and of any hinge
    margin from 0 (inf when there is none)."""
    input_mask, mask = masks
    words, caps, labels = model._stack(batch)
    feats = model._stack_feats(batch)
    x, cache = model._embed(words, caps)
    x, _ = model._embed_features(x, cache, feats)
    if input_mask is not None:
        x = x * input_mask
    z = x @ model.params["W"].T + model.params["b"]
    gaps = [np.abs(z - k).min() for k in KINKS[model.spec.activation]]
    scores = model.forward(words, caps, mask, input_mask, feats)[0]
    n = len(batch.words)
    if model.spec.objective == "ranking":
        gaps.append(np.abs(ranking_margins(scores[:n, 0], scores[n:, 0], model.spec.margin)).min())
    elif model.spec.objective == "multiclass":
        m = multiclass_margins(scores, labels, model.spec.margin)
        m[np.arange(len(labels)), labels] = np.inf
        gaps.append(np.abs(m).min())
    elif model.spec.objective == "structured":
        trans = transitions_of(model.params, model.constraints)
        gaps.append(hinge_kink_gap(scores, labels, batch.bounds, trans, model.spec.margin))
    return float(min(gaps, default=np.inf))


def example_batch(
    spec: ModelSpec, rng: np.random.Generator, n_windows: int, n_caps: int = 6
) -> tuple[Batch, int]:
    """Random windows of ``spec`` → (batch, rows the forward pass sees): n_windows true
    windows each with one center-corrupted window, or for crf/structured the sentences of
    ``NOTES_SENTENCES`` (n_windows is then their total length) and no corrupted windows."""
    sentence = spec.objective in SENTENCE_OBJECTIVES
    if sentence:
        n_windows = sum(NOTES_SENTENCES)
    V, w = spec.vocab_size, spec.window
    words = rng.integers(0, V, size=(n_windows, w))
    caps = rng.integers(0, n_caps, size=(n_windows, w))
    if sentence:
        tags = rng.integers(0, spec.n_out, size=n_windows)
        bounds = np.concatenate([[0], np.cumsum(NOTES_SENTENCES)])
        return Batch(words, caps, tags, bounds=bounds), n_windows
    neg_words = words.copy()  # drawn before the tags, as always (the same examples as before)
    neg_words[:, w // 2] = (words[:, w // 2] + rng.integers(1, V, n_windows)) % V
    tags = rng.integers(0, spec.n_out, size=n_windows)
    return Batch(words, caps, tags, neg_words, caps.copy()), 2 * n_windows


def randomize_transitions(model: WindowScorer, rng: np.random.Generator) -> None:
    """Tag transitions of a sentence-level model drawn N(0, 1) (they start at 0)."""
    for name in TRANSITIONS:
        if name in model.params:
            model.params[name] = rng.normal(size=model.params[name].shape)


def notes_example(
    activation: str,
    objective: str,
    rng: np.random.Generator,
    l2: float = 1e-2,
    keep_prob: float = 0.8,
    caps_dim: int = 0,
    n_windows: int = 3,
    input_keep_prob: float = 0.9,
) -> tuple[WindowScorer, Batch, Masks]:
    """The notes' shapes: vocab of 12 words, 5-word windows, 4-dim vectors, 8 hidden units;
    ``n_windows`` true windows, each with one center-corrupted window."""
    spec = ModelSpec(
        vocab_size=12,
        n_out=1 if objective == "ranking" else NOTES_TAGS,
        window=5,
        word_dim=4,
        caps_dim=caps_dim,
        hidden=8,
        activation=activation,
        objective=objective,
        margin=1.0,
        keep_prob=keep_prob,
        input_keep_prob=input_keep_prob,
        l2=l2,
        l2_embeddings=l2 > 0,
        dtype="float64",
    )
    model = WindowScorer.create(spec, rng, "xavier_uniform", embed_scale=1.0)
    randomize_transitions(model, rng)
    batch, n_rows = example_batch(spec, rng, n_windows)
    return model, batch, fixed_masks(rng, spec, n_rows)


def check_example(
    model: WindowScorer,
    batch: Batch,
    masks: Masks,
    rng: np.random.Generator,
    limit: int | None = None,
    fast: bool = False,
) -> dict[str, tuple[float, int, float]]:
    """Gradient-check one model on one batch with fixed dropout masks: ``loss_and_grads``,
    or with ``fast`` the training fast path (``loss_and_grads_fast``: its buffers, row sums
    and, for ``crf``, the probability-space ``crf_loss_scaled``)."""
    input_mask, mask = masks
    loss_and_grads = model.loss_and_grads_fast if fast else model.loss_and_grads

    def loss() -> float:
        return loss_and_grads(batch, dropout_mask=mask, input_mask=input_mask)[0]

    _, grads = loss_and_grads(batch, dropout_mask=mask, input_mask=input_mask)
    grads = {  # copies: the fast path's gradients are its buffers, rewritten by the next call
        k: SparseGrad(g.ids.copy(), g.rows.copy()) if isinstance(g, SparseGrad) else g.copy()
        for k, g in grads.items()
    }
    return check_gradients(model, loss, grads, rng, limit)


def safe_example(
    activation: str, objective: str, seed: int = 0, tries: int = 200, **kwargs
) -> tuple[WindowScorer, Batch, Masks, np.random.Generator]:
    """``notes_example`` redrawn until it is at least KINK_GAP away from every kink."""
    rng = np.random.default_rng(seed)
    for _ in range(tries):
        model, batch, masks = notes_example(activation, objective, rng, **kwargs)
        if kink_distance(model, batch, masks) > KINK_GAP:
            return model, batch, masks, rng
    raise ConfigError(
        f"no example {KINK_GAP:g} away from every kink of {activation}/{objective} in {tries} "
        "draws; a numeric gradient check needs one (try another seed or a smaller model)",
        "gradcheck",
    )


def run_default(
    activations: tuple[str, ...] = tuple(ACTIVATIONS),
    objectives: tuple[str, ...] = OBJECTIVES,
    seed: int = 0,
    caps_dim: int = 0,
    features: bool = False,
) -> list[CheckResult]:
    """Every activation × objective on the notes' example, L2 and fixed-mask dropout (on the
    hidden layer and on the input) on (crf/structured: ``NOTES_SENTENCES``); every objective
    again through the training fast path (tanh; rows of objective "fast <objective>");
    then, with ``features``, each objective but ranking with every extra feature table
    (``feature_example``)."""
    results = []
    for activation in activations:
        for objective in objectives:
            model, batch, mask, rng = safe_example(activation, objective, seed, caps_dim=caps_dim)
            for param, (err, n, diff) in check_example(model, batch, mask, rng).items():
                results.append(CheckResult(activation, objective, param, err, n, diff))
    for objective in objectives:
        model, batch, mask, rng = safe_example("tanh", objective, seed, caps_dim=caps_dim)
        for param, (err, n, diff) in check_example(model, batch, mask, rng, fast=True).items():
            results.append(CheckResult("tanh", f"{FAST} {objective}", param, err, n, diff))
    for objective in objectives:
        if objective != "ranking" and features:  # ranking's corrupted windows take none
            results += run_for_spec(feature_example(objective), seed)
    return results


FAST = "fast"  # run_default's rows for the training fast path: objective "fast crf", …


# the extra window-feature tables of ``run_default``'s feature rows: name → (rows, dim, slots)
EXAMPLE_TABLES = {"affix": (9, 2, 4), "shape": (5, 2, 1), "doccase": (9, 2, 1), "docseq": (5, 2, 1)}


def feature_example(objective: str) -> ModelSpec:
    """A small tanh model with every kind of extra feature table (token and document level),
    L2 on all embeddings and dropout on both layers, for ``run_default``."""
    names = tuple(EXAMPLE_TABLES)
    return ModelSpec(
        vocab_size=20, n_out=5, window=3, word_dim=3, caps_dim=2, hidden=6,
        objective=objective, keep_prob=0.8, input_keep_prob=0.9, l2=0.01, l2_embeddings=True,
        dtype="float64", feature_names=names,
        feature_rows=tuple(EXAMPLE_TABLES[n][0] for n in names),
        feature_dims=tuple(EXAMPLE_TABLES[n][1] for n in names),
        feature_slots=tuple(EXAMPLE_TABLES[n][2] for n in names),
    )  # fmt: skip


def run_for_spec(
    spec: ModelSpec, seed: int = 0, limit: int = 40, n_windows: int = 4
) -> list[CheckResult]:
    """Check a configured architecture (in float64) on random windows, ``limit`` entries per
    parameter, redrawing until the example is kink-free."""
    spec = replace(spec, dtype="float64")
    rng = np.random.default_rng(seed)
    for _ in range(200):
        model = WindowScorer.create(spec, rng, "xavier_uniform", embed_scale=1.0)
        randomize_transitions(model, rng)
        batch, n_rows = example_batch(spec, rng, n_windows)
        batch = with_features(batch, spec, rng)
        masks = fixed_masks(rng, spec, n_rows)
        if kink_distance(model, batch, masks) > KINK_GAP:
            errors = check_example(model, batch, masks, rng, limit)
            return [
                CheckResult(spec.activation, spec.objective, p, e, n, d)
                for p, (e, n, d) in errors.items()
            ]
    raise ConfigError(
        f"no example {KINK_GAP:g} away from every kink of {spec.activation} in 200 draws of "
        f"{n_windows} windows (hidden {spec.hidden}, window {spec.window}); a numeric gradient "
        "check needs one: try a smaller model.hidden or another seed",
        "gradcheck",
    )


def with_features(batch: Batch, spec: ModelSpec, rng: np.random.Generator) -> Batch:
    """The batch with random extra feature ids (true and corrupted windows share them) when
    the spec has extra feature tables; the batch itself (no draws) otherwise."""
    if not spec.feature_names:
        return batch
    n, w = batch.words.shape
    tables = zip(spec.feature_rows, spec.feature_slots, strict=True)
    feats = np.concatenate([rng.integers(0, r, size=(n, w, k)) for r, k in tables], axis=2)
    neg_feats = None if batch.neg_words is None else feats.copy()
    return replace(batch, feats=feats, neg_feats=neg_feats)


FEATURE_ROWS = 7  # rows of each extra feature table in ``run_for_config`` (all get checked)


def run_for_config(path) -> list[CheckResult]:
    """Check the model a config file describes (its activation, objective, sizes, L2 and
    dropout), with a small vocabulary so every used row can be checked."""
    from windowner.config import load_config, model_spec

    conf = load_config(path)
    rows = dict.fromkeys(conf.features.table_names(), FEATURE_ROWS)
    return run_for_spec(
        model_spec(conf, vocab_size=50, n_tags=9, feature_rows=rows), seed=conf.seed
    )

"""The window scorer: embeddings → one hidden layer → scores, with a hand-written backward pass.

For a window of w word ids (and w capitalisation ids):

    x = [E_word[w_1], …, E_word[w_w], E_caps[c_1], …, E_caps[c_w],
         E_f[f_1,1], …, E_f[f_1,k_f], …, E_f[f_w,k_f] for each extra feature table f]
                                                        (D = w·(d + d_caps + Σ k_f·d_f))
    x ← x ∘ mask_in        (inverted input dropout, keep probability input_keep_prob)
    z = W x + b            W ∈ R^(H×D), b ∈ R^H
    a = f(z) ∘ mask        (inverted dropout, training only)
    s = Uᵀ a               U ∈ R^(H×C)   (C = 1 for the ranking objective, else the tag count)

Parameters live in one dict keyed by name: ``E_word`` (V, d), ``E_caps`` (caps_classes,
d_caps) when d_caps > 0, ``E_<name>`` (rows_f, d_f) for each extra window-feature table named in
``ModelSpec.feature_names`` (``affix``: one shared table of all prefixes and suffixes, k_f of
them per token; ``shape``: the word shape, k_f = 1; see windowner.features), ``W`` (H, D),
``b`` (H,), ``U`` (H, C); the sentence-level objectives (``crf``, ``structured``) add the tag
transitions ``A`` (C, C), ``start`` (C,) and ``end`` (C,) of ``nn/crf.py``, which score whole
tag paths on top of the window scores s.

This is the readable reference (with ``nn/layers.py``); training and scoring run the same math
in reused buffers in ``nn/fast.py``. Change the math here, mirror it there;
tests/test_fastpath.py proves they agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from windowner.nn import fast, layers
from windowner.nn.crf import (
    Constraints,
    Transitions,
    crf_loss,
    crf_loss_scaled,
    structured_hinge_loss,
)
from windowner.nn.initializers import init_weight
from windowner.nn.layers import SparseGrad
from windowner.nn.losses import (
    SENTENCE_OBJECTIVES,
    multiclass_hinge,
    ranking_hinge,
    softmax_cross_entropy,
)

EMBEDDINGS = ("E_word", "E_caps")
WEIGHTS = ("W", "U")
TRANSITIONS = ("A", "start", "end")  # the sentence-level objectives' own parameters


@dataclass(frozen=True)
class ModelSpec:
    """Everything that fixes the architecture and the objective (stored in model files)."""

    vocab_size: int
    n_out: int
    window: int = 5
    word_dim: int = 50
    caps_dim: int = 5
    hidden: int = 100
    activation: str = "tanh"
    leaky_slope: float = 0.01
    objective: str = "multiclass"
    margin: float = 1.0
    keep_prob: float = 1.0
    input_keep_prob: float = 1.0
    l2: float = 0.0
    l2_embeddings: bool = False
    train_embeddings: bool = True
    dtype: str = "float32"
    caps_classes: int = 6  # rows of E_caps: windowner.corpus.CAPS_CLASSES (6 in old model files)
    # extra window-feature tables (windowner.features): E_<name> is (rows, dim), and each
    # token looks up ``slots`` rows of it (e.g. 6 affixes in one shared affix table)
    feature_names: tuple[str, ...] = ()
    feature_dims: tuple[int, ...] = ()
    feature_rows: tuple[int, ...] = ()
    feature_slots: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        fields = ("feature_names", "feature_dims", "feature_rows", "feature_slots")
        for name in fields:  # JSON gives lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len({len(getattr(self, name)) for name in fields}) > 1:
            raise ValueError(f"{', '.join(fields)} differ in length")

    @property
    def input_dim(self) -> int:
        extra = sum(k * d for k, d in zip(self.feature_slots, self.feature_dims, strict=True))
        return self.window * (self.word_dim + self.caps_dim + extra)

    @property
    def feature_columns(self) -> tuple[slice, ...]:
        """Per feature table, its columns of the ids ``feats`` (N, w, F), F = Σ slots."""
        ends = np.cumsum((0, *self.feature_slots)).tolist()
        return tuple(slice(a, b) for a, b in zip(ends[:-1], ends[1:], strict=True))

    @property
    def feature_params(self) -> tuple[str, ...]:
        """Parameter names of the extra feature tables, in x's column order."""
        return tuple(f"E_{name}" for name in self.feature_names)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Batch:
    """One training batch.

    words, caps: (B, w) int windows; tags: (B,) int tag ids (ignored by ``ranking``, whose
    windows are all true ones); neg_words, neg_caps: (k·B, w) corrupted windows or None
    (row j·B + i corrupts window i); bounds: (S + 1,) int sentence bounds of the B windows
    (whole sentences in order, as ``Encoded.sent_bounds``), needed by ``crf``/``structured``.
    feats, neg_feats: (B, w, F) and (k·B, w, F) ids of the extra feature tables
    (``ModelSpec.feature_names``), or None when the model has none.
    """

    words: np.ndarray
    caps: np.ndarray
    tags: np.ndarray
    neg_words: np.ndarray | None = None
    neg_caps: np.ndarray | None = None
    bounds: np.ndarray | None = None
    feats: np.ndarray | None = None
    neg_feats: np.ndarray | None = None


class WindowScorer:
    """The model: a params dict plus ``loss_and_grads(batch)`` and ``scores(words, caps)``."""

    def __init__(self, spec: ModelSpec, params: dict[str, np.ndarray]) -> None:
        self.spec = spec
        self.params = params
        self.fast_buffers: dict[Any, Any] = {}  # nn/fast.py: workspaces by capacity and size
        self.constraints: Constraints | None = None  # crf/structured: see sentence_objective

    @classmethod
    def create(
        cls,
        spec: ModelSpec,
        rng: np.random.Generator,
        initializer: str = "xavier_uniform",
        init_scale: float = 0.1,
        word_table: np.ndarray | None = None,
        embed_scale: float = 0.1,
    ) -> WindowScorer:
        """Fresh parameters: embeddings U[±embed_scale] (or ``word_table``), W and U from the
        named initialiser, b = 0."""
        dtype = np.dtype(spec.dtype)
        params: dict[str, np.ndarray] = {}
        if word_table is None:
            word_table = rng.uniform(-embed_scale, embed_scale, (spec.vocab_size, spec.word_dim))
        params["E_word"] = np.ascontiguousarray(word_table, dtype=dtype)
        if spec.caps_dim > 0:
            caps = rng.uniform(-embed_scale, embed_scale, (spec.caps_classes, spec.caps_dim))
            params["E_caps"] = caps.astype(dtype)
        for name, rows, dim in zip(
            spec.feature_params, spec.feature_rows, spec.feature_dims, strict=True
        ):
            params[name] = rng.uniform(-embed_scale, embed_scale, (rows, dim)).astype(dtype)
        params["W"] = init_weight(initializer, rng, spec.hidden, spec.input_dim, init_scale, dtype)
        params["b"] = np.zeros(spec.hidden, dtype=dtype)
        params["U"] = init_weight(initializer, rng, spec.n_out, spec.hidden, init_scale, dtype).T
        params["U"] = np.ascontiguousarray(params["U"])
        if spec.objective in SENTENCE_OBJECTIVES:
            params.update(transition_params(spec.n_out, dtype))
        return cls(spec, params)

    # ------------------------------------------------------------------ forward / backward

    def forward(
        self,
        words: np.ndarray,
        caps: np.ndarray,
        mask: np.ndarray | None = None,
        input_mask: np.ndarray | None = None,
        feats: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple]:
        """Windows (N, w) → scores (N, C) and the cache for ``backward``; ``mask`` (N, H) and
        ``input_mask`` (N, D) are dropout masks (None: no dropout); ``feats`` (N, w, F) the
        extra feature ids (None when the model has no extra features)."""
        p = self.params
        x, emb_cache = self._embed(words, caps)
        x, emb_cache = self._embed_features(x, emb_cache, feats)
        x, input_mask = layers.dropout_forward(x, input_mask)
        z, affine_cache = layers.affine_forward(x, p["W"], p["b"])
        a, act_cache = layers.activation_forward(z, self.spec.activation, self.spec.leaky_slope)
        a, mask = layers.dropout_forward(a, mask)
        s, lin_cache = layers.linear_forward(a, p["U"])
        return s, (emb_cache, input_mask, affine_cache, act_cache, mask, lin_cache)

    def backward(self, dscores: np.ndarray, cache: tuple) -> dict[str, np.ndarray | SparseGrad]:
        """dJ/ds (N, C) → gradients keyed like ``params`` (embeddings as SparseGrad)."""
        emb_cache, input_mask, affine_cache, act_cache, mask, lin_cache = cache
        grads: dict[str, np.ndarray | SparseGrad] = {}
        da, grads["U"] = layers.linear_backward(dscores, lin_cache)
        da = layers.dropout_backward(da, mask)
        dz = layers.activation_backward(da, act_cache)
        dx, grads["W"], grads["b"] = layers.affine_backward(dz, affine_cache)
        if self.spec.train_embeddings or self.spec.caps_dim > 0 or self.spec.feature_names:
            dx = layers.dropout_backward(dx, input_mask)
            grads.update(self._embed_backward(dx, emb_cache))
            grads.update(self._features_backward(dx, emb_cache))
        return grads

    def _embed(self, words: np.ndarray, caps: np.ndarray) -> tuple[np.ndarray, tuple]:
        xw, word_cache = layers.embedding_forward(self.params["E_word"], words)
        if self.spec.caps_dim == 0:
            return xw, (word_cache, None, xw.shape[1])
        xc, caps_cache = layers.embedding_forward(self.params["E_caps"], caps)
        return np.concatenate([xw, xc], axis=1), (word_cache, caps_cache, xw.shape[1])

    def _embed_backward(self, dx: np.ndarray, cache: tuple) -> dict[str, SparseGrad]:
        word_cache, caps_cache, split = cache[:3]
        end = split + self.spec.window * self.spec.caps_dim  # the caps block is dx[:, split:end]
        grads = {}
        if self.spec.train_embeddings:
            grads["E_word"] = layers.embedding_backward(dx[:, :split], word_cache)
        if caps_cache is not None:
            grads["E_caps"] = layers.embedding_backward(dx[:, split:end], caps_cache)
        return grads

    def _embed_features(
        self, x: np.ndarray, cache: tuple, feats: np.ndarray | None
    ) -> tuple[np.ndarray, tuple]:
        """x (N, D0) of words and caps → x with one block (N, w·k_f·d_f) per extra feature
        table appended (its ids ``feats[:, :, columns_f]`` (N, w, k_f) read as (N, w·k_f)),
        and the cache extended by the tables' caches."""
        spec = self.spec
        if not spec.feature_names:
            return x, cache
        fast.check_feats(spec, feats)
        n = len(feats)
        pairs = [
            layers.embedding_forward(self.params[name], feats[:, :, cols].reshape(n, -1))
            for name, cols in zip(spec.feature_params, spec.feature_columns, strict=True)
        ]
        x = np.concatenate([x, *(out for out, _ in pairs)], axis=1)
        return x, (*cache, [c for _, c in pairs])

    def _features_backward(self, dx: np.ndarray, cache: tuple) -> dict[str, SparseGrad]:
        """Gradients of the extra feature tables from their blocks at the end of dx."""
        names, spec = self.spec.feature_params, self.spec
        if not names:
            return {}
        grads, start = {}, spec.window * (spec.word_dim + spec.caps_dim)
        tables = zip(names, spec.feature_dims, spec.feature_slots, cache[3], strict=True)
        for name, dim, slots, table_cache in tables:
            stop = start + spec.window * slots * dim
            grads[name] = layers.embedding_backward(dx[:, start:stop], table_cache)
            start = stop
        return grads

    # ------------------------------------------------------------------ objectives

    def loss_and_grads(
        self,
        batch: Batch,
        rng: np.random.Generator | None = None,
        dropout_mask: np.ndarray | None = None,
        input_mask: np.ndarray | None = None,
    ) -> tuple[float, dict[str, np.ndarray | SparseGrad]]:
        """Mean objective plus L2 over the batch → (J, grads).

        Dropout uses the fixed masks if given — ``input_mask`` (N_total, D) on x,
        ``dropout_mask`` (N_total, H) on a — else draws them (``dropout_masks``).
        """
        words, caps, labels = self._stack(batch)
        input_mask, mask = self.dropout_masks(len(words), rng, input_mask, dropout_mask)
        scores, cache = self.forward(words, caps, mask, input_mask, self._stack_feats(batch))
        loss, dscores, own_grads = self.objective_grads(scores, labels, batch)
        grads = self.backward(dscores, cache)
        grads.update(own_grads)
        return loss + self._l2(grads), grads

    def dropout_masks(
        self,
        n: int,
        rng: np.random.Generator | None,
        input_mask: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        buffers: tuple | None = None,
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The dropout masks of n windows for both paths: the given ones, else drawn from
        ``rng`` — the input mask (n, D) when input_keep_prob < 1 first, then the hidden mask
        (n, H) when keep_prob < 1 (resumed runs depend on this order); None when not used.
        ``buffers``: (input mask, hidden mask) arrays to write them into."""
        spec, dtype = self.spec, self.params["W"].dtype
        in_out, out = (None, None) if buffers is None else buffers
        if input_mask is None and spec.input_keep_prob < 1.0:
            shape = (n, spec.input_dim)
            keep = spec.input_keep_prob
            input_mask = layers.dropout_mask(_need(rng), shape, keep, dtype, in_out)
        if mask is None and spec.keep_prob < 1.0:
            shape = (n, spec.hidden)
            mask = layers.dropout_mask(_need(rng), shape, spec.keep_prob, dtype, out)
        return input_mask, mask

    def _stack(self, batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """True and corrupted windows in one array; corrupted ones are labelled O (id 0)."""
        if batch.neg_words is None:
            if self.spec.objective == "ranking":
                raise ValueError("the ranking objective needs corrupted windows in the batch")
            return batch.words, batch.caps, batch.tags
        words = np.concatenate([batch.words, batch.neg_words])
        caps = np.concatenate([batch.caps, batch.neg_caps])
        labels = np.concatenate([batch.tags, np.zeros(len(batch.neg_words), batch.tags.dtype)])
        return words, caps, labels

    def objective_grads(
        self, scores: np.ndarray, labels: np.ndarray, batch: Batch, fast: bool = False
    ) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
        """The objective on scores (N, C) → (J, dJ/ds (N, C), gradients of the objective's own
        parameters: A/start/end for ``crf``/``structured``, else none). ``fast``: the training
        fast path's form where there is one (``crf``: probability-space messages)."""
        if self.spec.objective not in SENTENCE_OBJECTIVES:
            return (*self._objective(scores, labels, len(batch.words)), {})
        return sentence_objective(self, scores, labels, batch.bounds, fast)

    def _stack_feats(self, batch: Batch) -> np.ndarray | None:
        """The extra feature ids (N, w, F) of the true then the corrupted windows (see
        ``_stack``), or None when the model has no extra features."""
        if not self.spec.feature_names:
            return None
        if batch.feats is None or (batch.neg_words is not None and batch.neg_feats is None):
            raise ValueError(f"the model's features {self.spec.feature_names} need batch feats")
        if batch.neg_words is None:
            return batch.feats
        return np.concatenate([batch.feats, batch.neg_feats])

    def _objective(
        self, scores: np.ndarray, labels: np.ndarray, n_true: int
    ) -> tuple[float, np.ndarray]:
        objective, margin = self.spec.objective, self.spec.margin
        if objective == "multiclass":
            return multiclass_hinge(scores, labels, margin)
        if objective == "softmax":
            return softmax_cross_entropy(scores, labels)
        loss, d_true, d_corrupt = ranking_hinge(scores[:n_true, 0], scores[n_true:, 0], margin)
        return loss, np.concatenate([d_true, d_corrupt])[:, None].astype(scores.dtype)

    def _l2(self, grads: dict[str, np.ndarray | SparseGrad]) -> float:
        """λ Σ ||W||_F² over W, U (and the embedding rows used, if asked); adds 2λW to grads."""
        lam = self.spec.l2
        if lam == 0.0:
            return 0.0
        penalty = 0.0
        for name in WEIGHTS:
            w = self.params[name]
            penalty += float(np.sum(w * w))
            grads[name] = grads[name] + (2.0 * lam) * w
        if self.spec.l2_embeddings:
            for name in (*EMBEDDINGS, *self.spec.feature_params):
                g = grads.get(name)
                if isinstance(g, SparseGrad):
                    rows = self.params[name][g.ids]
                    penalty += float(np.sum(rows * rows))
                    grads[name] = SparseGrad(g.ids, g.rows + (2.0 * lam) * rows)
        return lam * penalty

    # ------------------------------------------------------------------ fast path

    def loss_and_grads_fast(
        self, batch: Batch, rng: np.random.Generator | None = None, **options: Any
    ) -> tuple[float, dict[str, np.ndarray | SparseGrad]]:
        """``loss_and_grads`` in reused buffers: ``nn/fast.py``'s ``loss_and_grads_fast``
        (``options``: its ``dropout_mask``/``input_mask``, ``optimizer``/``lr``). The
        method the trainer's step calls, so a test can wrap it."""
        return fast.loss_and_grads_fast(self, batch, rng, **options)

    # ------------------------------------------------------------------ inference

    def scores(
        self,
        words: np.ndarray,
        caps: np.ndarray,
        batch_size: int = 4096,
        feats: np.ndarray | None = None,
    ) -> np.ndarray:
        """Evaluation scores (N, C) for windows (N, w) (and extra feature ids ``feats``
        (N, w, F) when the model has extra features), without dropout, in chunks.

        The fast path's forward (``fast.embed_into``, ``fast.hidden_into``: the operations of
        ``forward``, so the same values) with one pair of chunk buffers for every chunk.
        """
        spec, p = self.spec, self.params
        n, dtype = len(words), p["W"].dtype
        out = np.empty((n, spec.n_out), dtype=dtype)
        if spec.feature_names:
            fast.check_feats(spec, feats)
        chunk = max(1, min(batch_size, n))
        x_buf = np.empty((chunk, spec.input_dim), dtype=dtype)
        z_buf = np.empty((chunk, spec.hidden), dtype=dtype)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            x, z = x_buf[: stop - start], z_buf[: stop - start]
            fast.embed_into(self, words[start:stop], caps[start:stop], *fast.input_blocks(x, spec))
            if spec.feature_names:
                fast.embed_features_into(self, feats[start:stop], fast.feature_blocks(x, spec))
            fast.hidden_into(self, x, z, z)
            np.matmul(z, p["U"], out=out[start:stop])
        return out


def transition_params(n_tags: int, dtype: np.dtype) -> dict[str, np.ndarray]:
    """Fresh A (C, C), start (C,), end (C,): zeros (the window scores' random init breaks
    the symmetry)."""
    return {
        "A": np.zeros((n_tags, n_tags), dtype=dtype),
        "start": np.zeros(n_tags, dtype=dtype),
        "end": np.zeros(n_tags, dtype=dtype),
    }


def transitions_of(params: dict[str, np.ndarray], constraints: Constraints | None) -> Transitions:
    """The CRF layer of a sentence-level model: its A/start/end plus optional hard rules."""
    return Transitions(params["A"], params["start"], params["end"], constraints)


def sentence_objective(
    model: WindowScorer,
    scores: np.ndarray,
    tags: np.ndarray,
    bounds: np.ndarray | None,
    fast: bool = False,
) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
    """``sentence_loss`` with the model's transitions and ``model.constraints``: the hard
    IOB2 rules (``decode.allowed_transitions``) to train with, or None; the trainer sets them
    (it knows the tag names) when the model decodes with them (``model.decode: viterbi``)."""
    if bounds is None:
        raise ValueError(f"the {model.spec.objective} objective needs sentence bounds")
    trans = transitions_of(model.params, model.constraints)
    return sentence_loss(model.spec, trans, scores, tags, bounds, fast)


def sentence_loss(
    spec: ModelSpec,
    trans: Transitions,
    scores: np.ndarray,
    tags: np.ndarray,
    bounds: np.ndarray,
    fast: bool = False,
) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
    """``crf`` or ``structured`` on window scores (N, C) of whole sentences (``bounds``
    (S + 1,)) → (J, dJ/ds (N, C), {"A", "start", "end": gradients}). ``fast`` (the training
    fast path): ``crf`` by ``crf_loss_scaled`` (equal to rounding; ``crf_loss`` when a
    message underflows).

    nn/crf.py averages over the S' non-empty sentences; here J is rescaled to the sum over
    sentences divided by the N tokens, so a token's gradient has the size it has under the
    window objectives (a per-sentence mean makes it ~14× larger on CoNLL-2003)."""
    if spec.objective == "crf":
        scaled = crf_loss_scaled(scores, tags, bounds, trans) if fast else None
        loss, g = scaled if scaled is not None else crf_loss(scores, tags, bounds, trans)
    else:
        loss, g = structured_hinge_loss(scores, tags, bounds, trans, spec.margin)
    n_sentences = int(np.count_nonzero(np.diff(bounds)))
    scale = n_sentences / max(len(tags), 1)
    own = {"A": g.dA * scale, "start": g.dstart * scale, "end": g.dend * scale}
    return loss * scale, g.dscores * scale, own


def _need(rng: np.random.Generator | None) -> np.random.Generator:
    if rng is None:
        raise ValueError("dropout needs a Generator or a fixed mask")
    return rng

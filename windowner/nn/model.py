"""The window scorer: embeddings → one hidden layer → scores, with a hand-written backward pass.

For a window of w word ids (and w capitalisation ids):

    x = [E_word[w_1], …, E_word[w_w], E_caps[c_1], …, E_caps[c_w]]    (D = w·d + w·d_caps)
    x ← x ∘ mask_in        (inverted input dropout, keep probability input_keep_prob)
    z = W x + b            W ∈ R^(H×D), b ∈ R^H
    a = f(z) ∘ mask        (inverted dropout, training only)
    s = Uᵀ a               U ∈ R^(H×C)   (C = 1 for the ranking objective, else the tag count)

Parameters live in one dict keyed by name: ``E_word`` (V, d), ``E_caps`` (6, d_caps) when
d_caps > 0, ``W`` (H, D), ``b`` (H,), ``U`` (H, C).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from windowner.corpus import CAPS_CLASSES
from windowner.nn import layers
from windowner.nn.initializers import init_weight
from windowner.nn.layers import SparseGrad
from windowner.nn.losses import multiclass_hinge, ranking_hinge, softmax_cross_entropy

if TYPE_CHECKING:
    from windowner.optim.optimizers import Optimizer

EMBEDDINGS = ("E_word", "E_caps")
WEIGHTS = ("W", "U")


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

    @property
    def input_dim(self) -> int:
        return self.window * (self.word_dim + self.caps_dim)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Batch:
    """One training batch.

    words, caps: (B, w) int windows; tags: (B,) int tag ids (ignored by ``ranking``, whose
    windows are all true ones); neg_words, neg_caps: (k·B, w) corrupted windows or None
    (row j·B + i corrupts window i).
    """

    words: np.ndarray
    caps: np.ndarray
    tags: np.ndarray
    neg_words: np.ndarray | None = None
    neg_caps: np.ndarray | None = None


class WindowScorer:
    """The model: a params dict plus ``loss_and_grads(batch)`` and ``scores(words, caps)``."""

    def __init__(self, spec: ModelSpec, params: dict[str, np.ndarray]) -> None:
        self.spec = spec
        self.params = params
        self._workspaces: dict[int, _Workspace] = {}

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
            caps = rng.uniform(-embed_scale, embed_scale, (len(CAPS_CLASSES), spec.caps_dim))
            params["E_caps"] = caps.astype(dtype)
        params["W"] = init_weight(initializer, rng, spec.hidden, spec.input_dim, init_scale, dtype)
        params["b"] = np.zeros(spec.hidden, dtype=dtype)
        params["U"] = init_weight(initializer, rng, spec.n_out, spec.hidden, init_scale, dtype).T
        params["U"] = np.ascontiguousarray(params["U"])
        return cls(spec, params)

    # ------------------------------------------------------------------ forward / backward

    def forward(
        self,
        words: np.ndarray,
        caps: np.ndarray,
        mask: np.ndarray | None = None,
        input_mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple]:
        """Windows (N, w) → scores (N, C) and the cache for ``backward``; ``mask`` (N, H) and
        ``input_mask`` (N, D) are dropout masks (None: no dropout)."""
        p = self.params
        x, emb_cache = self._embed(words, caps)
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
        if self.spec.train_embeddings or self.spec.caps_dim > 0:
            dx = layers.dropout_backward(dx, input_mask)
            grads.update(self._embed_backward(dx, emb_cache))
        return grads

    def _embed(self, words: np.ndarray, caps: np.ndarray) -> tuple[np.ndarray, tuple]:
        xw, word_cache = layers.embedding_forward(self.params["E_word"], words)
        if self.spec.caps_dim == 0:
            return xw, (word_cache, None, xw.shape[1])
        xc, caps_cache = layers.embedding_forward(self.params["E_caps"], caps)
        return np.concatenate([xw, xc], axis=1), (word_cache, caps_cache, xw.shape[1])

    def _embed_backward(self, dx: np.ndarray, cache: tuple) -> dict[str, SparseGrad]:
        word_cache, caps_cache, split = cache
        grads = {}
        if self.spec.train_embeddings:
            grads["E_word"] = layers.embedding_backward(dx[:, :split], word_cache)
        if caps_cache is not None:
            grads["E_caps"] = layers.embedding_backward(dx[:, split:], caps_cache)
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

        Dropout uses the fixed masks if given — ``input_mask`` (N_total, D) on x when
        input_keep_prob < 1, ``dropout_mask`` (N_total, H) on a when keep_prob < 1 — else
        draws them from ``rng``, input mask first.
        """
        words, caps, labels = self._stack(batch)
        dtype, spec = self.params["W"].dtype, self.spec
        if input_mask is None and spec.input_keep_prob < 1.0:
            shape = (len(words), spec.input_dim)
            input_mask = layers.dropout_mask(_need(rng), shape, spec.input_keep_prob, dtype)
        mask = dropout_mask
        if mask is None and spec.keep_prob < 1.0:
            mask = layers.dropout_mask(_need(rng), (len(words), spec.hidden), spec.keep_prob, dtype)
        scores, cache = self.forward(words, caps, mask, input_mask)
        loss, dscores = self._objective(scores, labels, len(batch.words))
        grads = self.backward(dscores, cache)
        return loss + self._l2(grads), grads

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
            for name in EMBEDDINGS:
                g = grads.get(name)
                if isinstance(g, SparseGrad):
                    rows = self.params[name][g.ids]
                    penalty += float(np.sum(rows * rows))
                    grads[name] = SparseGrad(g.ids, g.rows + (2.0 * lam) * rows)
        return lam * penalty

    # ------------------------------------------------------------------ fast path

    def loss_and_grads_fast(
        self,
        batch: Batch,
        rng: np.random.Generator | None = None,
        dropout_mask: np.ndarray | None = None,
        input_mask: np.ndarray | None = None,
    ) -> tuple[float, dict[str, np.ndarray | SparseGrad]]:
        """``loss_and_grads`` for training: the same math and the same draws from ``rng``,
        equal to it up to float rounding, computed in buffers reused from step to step.

        The returned gradients are views of those buffers: the next call overwrites them, so
        use them (``Optimizer.step``) before calling again. The embedding lookups write into
        the two column blocks of one x buffer, and their gradients are read from the same
        blocks of dx, so nothing is concatenated or copied. Every operation is the reference's,
        in its order, except the sums of repeated embedding rows, which add in another order
        (``layers.sum_window_rows``: one int64 key sort, then by run length; the caps table by
        ``layers.sum_window_rows_small``: one small one-hot product).
        """
        spec = self.spec
        words, caps, labels = self._stack(batch)
        n = len(words)
        ws = self._workspace(n)
        p = self.params
        W, U = p["W"], p["U"]
        has_caps = spec.caps_dim > 0

        # forward: z = W x + b; a = f(z) ∘ mask; s = Uᵀ a
        x = ws.x
        ws.x_words[...] = np.take(p["E_word"], words, axis=0)
        if has_caps:
            ws.x_caps[...] = np.take(p["E_caps"], caps, axis=0)
        if input_mask is None and spec.input_keep_prob < 1.0:
            input_mask = layers.dropout_mask_into(
                _need(rng), spec.input_keep_prob, ws.in_draws, ws.in_mask
            )
        if input_mask is not None:
            x *= input_mask
        z = np.matmul(x, W.T, out=ws.z)
        z += p["b"]
        a = ws.a
        layers.activation_forward_into(z, spec.activation, spec.leaky_slope, a)
        mask = dropout_mask
        if mask is None and spec.keep_prob < 1.0:
            mask = layers.dropout_mask_into(_need(rng), spec.keep_prob, ws.draws, ws.mask)
        a_out = a if mask is None else np.multiply(a, mask, out=ws.a_drop)
        scores = np.matmul(a_out, U, out=ws.s)
        if spec.objective == "multiclass":
            loss, dscores = _multiclass_hinge_into(scores, labels, spec.margin, ws)
        else:
            loss, dscores = self._objective(scores, labels, len(batch.words))

        # backward
        grads: dict[str, np.ndarray | SparseGrad] = {}
        grads["U"] = np.matmul(a_out.T, dscores, out=ws.dU)
        dz = np.matmul(dscores, U.T, out=ws.da)
        if mask is not None:
            dz *= mask
        layers.activation_backward_into(dz, a, spec.activation, spec.leaky_slope, ws.scratch)
        grads["W"] = np.matmul(dz.T, x, out=ws.dW)
        grads["b"] = np.sum(dz, axis=0, out=ws.db)
        if spec.train_embeddings or has_caps:
            np.matmul(dz, W, out=ws.dx)
            if input_mask is not None:
                ws.dx *= input_mask
        if spec.train_embeddings:
            grads["E_word"] = layers.sum_window_rows(words, ws.dx_words, ws.dx_word_rows)
        if has_caps:
            grads["E_caps"] = layers.sum_window_rows_small(caps, ws.dx_caps, len(p["E_caps"]))
        return loss + self._l2(grads), grads

    def train_step(
        self,
        batch: Batch,
        optimizer: Optimizer,
        lr: float,
        rng: np.random.Generator | None = None,
    ) -> float:
        """One training step on the fast path: loss, gradients and the optimizer update.
        Returns the loss; a non-finite loss leaves the parameters untouched."""
        loss, grads = self.loss_and_grads_fast(batch, rng)
        if np.isfinite(loss):
            optimizer.step(self.params, grads, lr)
        return loss

    def _workspace(self, n: int) -> _Workspace:
        """Buffers for n windows, kept for the batch sizes seen last (usually two: the batch
        size and the epoch's last, smaller batch)."""
        cache = self._workspaces
        ws = cache.get(n)
        if ws is None or ws.dtype != self.params["W"].dtype:
            if len(cache) >= 4:
                cache.clear()
            ws = cache[n] = _Workspace(self.spec, n, self.params["W"].dtype)
        return ws

    # ------------------------------------------------------------------ inference

    def scores(self, words: np.ndarray, caps: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Evaluation scores (N, C) for windows (N, w), without dropout, in chunks.

        The same operations as ``forward`` (so the same values), with x, z and the output
        written in place: one pair of chunk buffers serves every chunk.
        """
        spec, p = self.spec, self.params
        n, dtype = len(words), p["W"].dtype
        out = np.empty((n, spec.n_out), dtype=dtype)
        chunk = max(1, min(batch_size, n))
        split = spec.window * spec.word_dim
        x_buf = np.empty((chunk, spec.input_dim), dtype=dtype)
        z_buf = np.empty((chunk, spec.hidden), dtype=dtype)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            m = stop - start
            x, z = x_buf[:m], z_buf[:m]
            word_part = x[:, :split].reshape(m, spec.window, spec.word_dim)
            word_part[...] = np.take(p["E_word"], words[start:stop], axis=0)
            if spec.caps_dim > 0:
                caps_part = x[:, split:].reshape(m, spec.window, spec.caps_dim)
                caps_part[...] = np.take(p["E_caps"], caps[start:stop], axis=0)
            np.matmul(x, p["W"].T, out=z)
            z += p["b"]
            layers.activation_forward_into(z, spec.activation, spec.leaky_slope, z)
            np.matmul(z, p["U"], out=out[start:stop])
        return out


class _Workspace:
    """Preallocated arrays for one batch of n windows (see ``loss_and_grads_fast``)."""

    def __init__(self, spec: ModelSpec, n: int, dtype: np.dtype) -> None:
        H, C = spec.hidden, spec.n_out
        split, caps = spec.window * spec.word_dim, spec.window * spec.caps_dim
        self.dtype = dtype

        def buf(*shape: int) -> np.ndarray:
            return np.empty(shape, dtype=dtype)

        self.x, self.dx = buf(n, split + caps), buf(n, split + caps)
        # (n, w, d) and (n, w, d_caps) views of the word and caps column blocks (splitting the
        # last axis of a column slice never copies)
        self.x_words, self.dx_words = (
            v[:, :split].reshape(n, spec.window, spec.word_dim) for v in (self.x, self.dx)
        )
        self.x_caps, self.dx_caps = (
            v[:, split:].reshape(n, spec.window, spec.caps_dim) for v in (self.x, self.dx)
        )
        self.dx_word_rows = layers.RowSource(self.dx_words)
        self.z, self.a, self.a_drop, self.scratch = (buf(n, H) for _ in range(4))
        self.mask, self.draws = buf(n, H), np.empty((n, H), dtype=np.float32)
        D = split + caps
        if spec.input_keep_prob < 1.0:
            self.in_mask, self.in_draws = buf(n, D), np.empty((n, D), dtype=np.float32)
        self.s, self.margins, self.active = buf(n, C), buf(n, C), buf(n, C)
        self.flat = np.arange(n, dtype=np.int64) * C
        self.flat_y = np.empty(n, dtype=np.int64)
        self.da, self.dW, self.db, self.dU = buf(n, H), buf(H, split + caps), buf(H), buf(H, C)


def _need(rng: np.random.Generator | None) -> np.random.Generator:
    if rng is None:
        raise ValueError("dropout needs a Generator or a fixed mask")
    return rng


def _multiclass_hinge_into(
    scores: np.ndarray, y: np.ndarray, margin: float, ws: _Workspace
) -> tuple[float, np.ndarray]:
    """``losses.multiclass_hinge`` in workspace buffers, with the same operations in the same
    order (so the same values): margins, hinge, loss, dJ/ds."""
    n = len(y)
    flat = np.add(ws.flat, y, out=ws.flat_y)  # row i, column y_i of a (n, C) array
    m = np.add(scores, margin, out=ws.margins)
    m -= np.take(scores, flat)[:, None]
    np.put(m, flat, 0.0)
    active = np.greater(m, 0, out=ws.active)
    loss = float(np.sum(np.multiply(m, active, out=m))) / n
    np.put(active, flat, -active.sum(axis=1))
    active /= n
    return loss, active

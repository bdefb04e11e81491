"""The training fast path: the reference model's math in buffers reused from step to step.

The readable reference is ``nn/layers.py`` (forward/backward pairs) and ``nn/model.py``
(``WindowScorer.forward``/``backward``/``loss_and_grads``). This module computes the same
thing for training and scoring: the same operations in the same order, written into
preallocated arrays with ``out=``, and the same random draws (``WindowScorer.dropout_masks``
is the one function that draws the masks, for both paths). Change the math in
layers.py/model.py, mirror it here; tests/test_fastpath.py proves they agree.

The one exception to "the same order": repeated embedding rows are summed in another order
(``sum_window_rows``: one int64 key sort, then by run length; the caps table and other
small ones by ``sum_window_rows_small``: one small one-hot product; with numba installed
(windowner.accel) every table by nn/fused.py's walk over the windows), so results agree up
to rounding. With numba, the tanh backward pass (dz ∘ mask ∘ (1 − a²) and db in one loop,
nn/fused_passes.py) gives numpy's values bit for bit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from windowner.nn.activations import ACTIVATIONS, DERIVATIVES
from windowner.nn.fused import RowSummer, row_summer
from windowner.nn.fused_passes import compiled_tanh_backward
from windowner.nn.layers import SparseGrad
from windowner.nn.rowitems import RowSource
from windowner.registry import lookup

if TYPE_CHECKING:
    from windowner.nn.model import Batch, ModelSpec, WindowScorer
    from windowner.optim.optimizers import Optimizer

Grads = dict[str, np.ndarray | SparseGrad]
SMALL_TABLE = 64  # rows: a one-hot product sums such a table's rows faster than a sort


# ----------------------------------------------------------------------------- one training step


def train_step(
    model: WindowScorer,
    batch: Batch,
    optimizer: Optimizer,
    lr: float,
    rng: np.random.Generator | None = None,
) -> float:
    """The one training step (trainer, tests, benchmarks): loss and gradients on the fast
    path (``model.loss_and_grads_fast``), then the optimizer update if the loss is finite.
    Returns the loss; a non-finite loss leaves the parameters and the optimizer untouched."""
    if optimizer.worker is None:
        loss, grads = model.loss_and_grads_fast(batch, rng)
    else:  # W's, b's and U's update overlaps the rest of the step (optim/worker.py)
        loss, grads = model.loss_and_grads_fast(batch, rng, optimizer=optimizer, lr=lr)
    if np.isfinite(loss):
        optimizer.step(model.params, grads, lr)
    return loss


# ----------------------------------------------------------------------------- loss and gradients


class _Pass(NamedTuple):
    """What the backward pass needs from the forward pass of one batch."""

    words: np.ndarray  # (N, w) word ids, true windows then corrupted ones
    caps: np.ndarray  # (N, w) caps ids
    feats: np.ndarray | None  # (N, w, F) extra feature ids (None: the model has none)
    input_mask: np.ndarray | None  # (N, D) input dropout mask
    mask: np.ndarray | None  # (N, H) hidden dropout mask
    a_out: np.ndarray  # (N, H) hidden activations after dropout


def loss_and_grads_fast(
    model: WindowScorer,
    batch: Batch,
    rng: np.random.Generator | None = None,
    dropout_mask: np.ndarray | None = None,
    input_mask: np.ndarray | None = None,
    optimizer: Optimizer | None = None,
    lr: float = 0.0,
) -> tuple[float, Grads]:
    """``model.loss_and_grads`` for training: the same math and the same draws from ``rng``,
    equal to it up to float rounding, computed in buffers reused from step to step.

    The returned gradients are views of those buffers: the next call overwrites them, so
    use them (``Optimizer.step``) before calling again. The embedding lookups write into
    the two column blocks of one x buffer, and their gradients are read from the same
    blocks of dx, so nothing is concatenated or copied.

    ``optimizer`` (``train_step``, when the optimizer has an update worker: optim/worker.py)
    settles the previous step's update before the forward product reads W, and begins
    this step's update of W, b and U (``Optimizer.start_early``, rate ``lr``) once their
    gradients are final (written straight into the worker's shared buffers) and they have
    been read for the last time: while the embedding rows are summed and updated.
    """
    spec = model.spec
    words, caps, labels = model._stack(batch)
    ws = workspace(model, len(words))
    input_mask, mask = model.dropout_masks(len(words), rng, input_mask, dropout_mask, ws.masks)
    feats = model._stack_feats(batch)
    fwd = _forward(model, ws, words, caps, input_mask, mask, feats, optimizer)
    own_grads = {}
    if spec.objective == "multiclass":
        loss, dscores = multiclass_hinge_into(ws.s, labels, spec.margin, ws)
    else:
        loss, dscores, own_grads = model.objective_grads(ws.s, labels, batch, fast=True)
    early = None  # the gradients are final after _backward only without L2 (model._l2)
    if optimizer is not None and spec.l2 == 0.0 and np.isfinite(loss):
        early = (optimizer, lr)
    grads = _backward(model, ws, fwd, dscores, early)
    grads.update(own_grads)
    return loss + model._l2(grads), grads


def _forward(
    model: WindowScorer,
    ws: Workspace,
    words: np.ndarray,
    caps: np.ndarray,
    input_mask: np.ndarray | None,
    mask: np.ndarray | None,
    feats: np.ndarray | None = None,
    optimizer: Optimizer | None = None,
) -> _Pass:
    """x = embed ∘ mask_in; z = W x + b; a = f(z) ∘ mask; s = Uᵀ a, into ``ws`` (s in ws.s).
    ``optimizer``: settled before W is read (its worker may be updating W)."""
    embed_into(model, words, caps, ws.x_words, ws.x_caps)
    if model.spec.feature_names:
        embed_features_into(model, feats, ws.x_feats)
    if input_mask is not None:
        ws.x *= input_mask
    if optimizer is not None:
        optimizer.settle()
    hidden_into(model, ws.x, ws.z, ws.a)
    a_out = ws.a if mask is None else np.multiply(ws.a, mask, out=ws.a_drop)
    np.matmul(a_out, model.params["U"], out=ws.s)
    return _Pass(words=words, caps=caps, feats=feats, input_mask=input_mask, mask=mask, a_out=a_out)


def _backward(
    model: WindowScorer,
    ws: Workspace,
    fwd: _Pass,
    dscores: np.ndarray,
    early: tuple[Optimizer, float] | None = None,
) -> Grads:
    """dJ/ds (N, C) → gradients keyed like ``model.params`` (views of ``ws``), in the order
    of ``WindowScorer.backward``. ``early`` (optimizer, rate): the update of W, b and U
    begins in the optimizer's worker right after the last product that reads W."""
    spec, p = model.spec, model.params
    has_caps = spec.caps_dim > 0
    out = _gradient_buffers(ws, None if early is None else early[0])
    grads: Grads = {}
    grads["U"] = np.matmul(fwd.a_out.T, dscores, out=out["U"])
    dz = np.matmul(dscores, p["U"].T, out=ws.da)  # the step's last read of U
    if ws.tanh_backward is not None:  # numba, tanh: db in the same pass
        db = ws.tanh_backward(dz, ws.a, fwd.mask, out["b"])
    else:
        if fwd.mask is not None:
            dz *= fwd.mask
        activation_backward_into(dz, ws.a, spec.activation, spec.leaky_slope, ws.scratch)
        db = np.sum(dz, axis=0, out=out["b"])
    grads["W"] = np.matmul(dz.T, ws.x, out=out["W"])
    grads["b"] = db
    if spec.train_embeddings or has_caps or spec.feature_names:
        np.matmul(dz, p["W"], out=ws.dx)  # the step's last read of W
        if fwd.input_mask is not None:
            ws.dx *= fwd.input_mask
    if early is not None:
        early[0].start_early(p, grads, early[1])
    if spec.train_embeddings and ws.row_summer is not None:  # numba (windowner.accel)
        grads["E_word"] = ws.row_summer(fwd.words, ws.dx_words, ws.dx_word_rows)
    elif spec.train_embeddings:
        grads["E_word"] = sum_window_rows(fwd.words, ws.dx_words, ws.dx_word_rows)
    if has_caps and ws.caps_summer is not None:
        grads["E_caps"] = ws.caps_summer(fwd.caps, ws.dx_caps, ws.dx_caps_rows)
    elif has_caps:
        grads["E_caps"] = sum_window_rows_small(fwd.caps, ws.dx_caps, len(p["E_caps"]))
    if spec.feature_names:
        grads.update(
            feature_grads(spec, fwd.feats, ws.dx_feats, ws.dx_feat_rows, ws.feature_summers)
        )
    return grads


def _gradient_buffers(ws: Workspace, optimizer: Optimizer | None) -> dict[str, np.ndarray]:
    """Where the backward pass writes the gradients of U (H, C), b (H,) and W (H, D): the
    workspace's buffers, or the optimizer's update worker's shared ones when it takes them."""
    own = {"U": ws.dU, "b": ws.db, "W": ws.dW}
    if optimizer is None:
        return own
    return {name: optimizer.gradient_out(name, buffer) for name, buffer in own.items()}


def feature_grads(
    spec: ModelSpec,
    feats: np.ndarray,
    blocks: list[np.ndarray],
    sources: list[RowSource],
    summers: list[RowSummer | None],
) -> Grads:
    """The extra feature tables' gradients (``WindowScorer._features_backward``): table f sums
    the rows of its dx block (N, w·k_f, d_f) by its ids ``feats[:, :, columns_f]`` (N, w·k_f),
    with its numba RowSummer when there is one, else ``sum_window_rows`` (a table of at most
    SMALL_TABLE rows: ``sum_window_rows_small``)."""
    n, grads = len(feats), {}
    tables = zip(
        spec.feature_params, spec.feature_rows, spec.feature_columns, blocks, sources, summers,
        strict=True,
    )  # fmt: skip
    for name, n_rows, cols, block, source, summer in tables:
        ids = feats[:, :, cols].reshape(n, -1)
        if summer is not None:
            grads[name] = summer(ids, block, source)
        elif n_rows <= SMALL_TABLE:
            grads[name] = sum_window_rows_small(ids, block, n_rows)
        else:
            grads[name] = sum_window_rows(ids, block, source)
    return grads


def multiclass_hinge_into(
    scores: np.ndarray, y: np.ndarray, margin: float, ws: Workspace
) -> tuple[float, np.ndarray]:
    """``losses.multiclass_hinge`` in workspace buffers, with the same operations in the same
    order (so the same values): margins, hinge, loss, dJ/ds (N, C)."""
    n = len(y)
    flat = np.add(ws.flat, y, out=ws.flat_y)  # row i, column y_i of a (n, C) array
    m = np.add(scores, margin, out=ws.margins)
    m -= np.take(scores, flat)[:, None]
    np.put(m, flat, 0.0)
    active = np.greater(m, 0, out=ws.active)
    loss = float(np.sum(np.multiply(m, active, out=m))) / n
    # the active count of each row (a sum of 0s and 1s: exact in any order) by one
    # matrix-vector product: cheaper than numpy's row sums of C values (73 → 54 µs at 1024)
    counts = np.matmul(active, ws.ones_c, out=ws.counts)
    np.put(active, flat, np.negative(counts, out=counts))
    active /= n
    return loss, active


# ----------------------------------------------------------------------------- forward pieces
# (shared by training and ``WindowScorer.scores``: the one buffered forward pass)


def input_blocks(x: np.ndarray, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """(N, w, d) and (N, w, d_caps) views of the word and caps column blocks of x (N, D)
    (splitting the last axis of a column slice never copies)."""
    n, split = len(x), spec.window * spec.word_dim
    end = split + spec.window * spec.caps_dim  # extra feature blocks follow: feature_blocks
    words = x[:, :split].reshape(n, spec.window, spec.word_dim)
    return words, x[:, split:end].reshape(n, spec.window, spec.caps_dim)


def embed_into(
    model: WindowScorer,
    words: np.ndarray,
    caps: np.ndarray,
    x_words: np.ndarray,
    x_caps: np.ndarray,
) -> None:
    """The embedding lookups of ``WindowScorer._embed``, written into the blocks of x
    (each window's block as one run of w·d values where it is one: fewer, longer copies)."""
    lookups = np.take(model.params["E_word"], words, axis=0)
    target = window_runs(x_words)
    target[...] = lookups.reshape(target.shape)
    if model.spec.caps_dim > 0:
        x_caps[...] = np.take(model.params["E_caps"], caps, axis=0)


def window_runs(block: np.ndarray) -> np.ndarray:
    """A (N, w, d) block of x as an (N, w·d) view when each window's w·d values are one
    contiguous run (the column blocks of x are), else the block itself."""
    n, w, d = block.shape
    _, s1, s2 = block.strides
    if (s2 == block.itemsize or d == 1) and (s1 == d * block.itemsize or w == 1):
        return block.reshape(n, w * d)  # a view: the last two axes are one run
    return block


def feature_blocks(x: np.ndarray, spec: ModelSpec) -> list[np.ndarray]:
    """(N, w·k_f, d_f) views of the column blocks of x (N, D) that hold the extra feature
    tables (k_f rows per window position), after the word and caps blocks, in
    ``spec.feature_names`` order."""
    n, start, blocks = len(x), spec.window * (spec.word_dim + spec.caps_dim), []
    for dim, slots in zip(spec.feature_dims, spec.feature_slots, strict=True):
        stop = start + spec.window * slots * dim
        blocks.append(x[:, start:stop].reshape(n, spec.window * slots, dim))
        start = stop
    return blocks


def embed_features_into(model: WindowScorer, feats: np.ndarray, blocks: list[np.ndarray]) -> None:
    """The lookups of ``WindowScorer._embed_features``: ids ``feats`` (N, w, F) into the
    blocks (N, w·k_f, d_f) of x (``feature_blocks``)."""
    spec, n = model.spec, len(blocks[0]) if blocks else 0
    check_feats(spec, feats)
    for name, cols, block in zip(spec.feature_params, spec.feature_columns, blocks, strict=True):
        block[...] = np.take(model.params[name], feats[:, :, cols].reshape(n, -1), axis=0)


def check_feats(spec: ModelSpec, feats: np.ndarray | None) -> None:
    """ValueError unless ``feats`` (N, w, F) has the F = Σ slots id columns the spec needs."""
    width = sum(spec.feature_slots)
    if feats is None or feats.ndim != 3 or feats.shape[2] != width:
        got = None if feats is None else feats.shape
        raise ValueError(
            f"the model's features {spec.feature_names} need feats (N, w, {width}), got {got}"
        )


SMALL_FORWARD = 48  # windows: the W xᵀ form is faster up to here (64: level; 96: slower)


def hidden_into(model: WindowScorer, x: np.ndarray, z: np.ndarray, a: np.ndarray) -> None:
    """z = W x + b, a = f(z) for x (N, D), into z and a (N, H) (a may be z).

    Up to SMALL_FORWARD windows the product is taken as W xᵀ (H, N) and added to b
    transposed: OpenBLAS's small-matrix kernels compute it faster than x Wᵀ (49 against
    70 µs at 32 windows, hidden 300, bias included; 20 against 27 at hidden 100), and the
    values came out the same in every shape measured (8–192 windows, hidden 100 and 300)."""
    p, spec = model.params, model.spec
    if len(x) <= SMALL_FORWARD:
        np.add(np.matmul(p["W"], x.T).T, p["b"], out=z)
    else:
        np.matmul(x, p["W"].T, out=z)
        z += p["b"]
    activation_forward_into(z, spec.activation, spec.leaky_slope, a)


def activation_forward_into(z: np.ndarray, name: str, slope: float, out: np.ndarray) -> None:
    """``a = f(z)`` written into ``out`` (may be z itself); same values as activation_forward."""
    if name == "tanh":
        np.tanh(z, out=out)
    elif name == "relu":
        np.maximum(z, 0.0, out=out)
    elif name == "hardtanh":
        np.clip(z, -1.0, 1.0, out=out)
    else:
        out[...] = lookup(ACTIVATIONS, name, "activation")(z, slope)


def activation_backward_into(
    da: np.ndarray, a: np.ndarray, name: str, slope: float, scratch: np.ndarray
) -> np.ndarray:
    """dz = f′(a) ∘ da, in place in ``da``; ``scratch`` is a buffer shaped like ``a``."""
    if name == "tanh":
        np.multiply(a, a, out=scratch)
        np.subtract(1.0, scratch, out=scratch)
        np.multiply(da, scratch, out=da)
    elif name == "relu":
        np.greater(a, 0, out=scratch)
        np.multiply(da, scratch, out=da)
    else:
        np.multiply(da, DERIVATIVES[name](a, slope), out=da)
    return da


# ----------------------------------------------------------------------------- workspace


def workspace(model: WindowScorer, n: int) -> Workspace:
    """The model's buffers for n windows: the first n rows of one set of buffers per capacity
    (the next power of two ≥ n, at least MIN_CAPACITY), so that sentence batches, whose number
    of windows changes at every step, reuse memory instead of allocating it. The views of
    each size are kept (up to MAX_VIEWS sizes)."""
    cache = model.fast_buffers
    dtype = model.params["W"].dtype
    ws = cache.get(n)
    if ws is not None and ws.dtype == dtype:
        return ws
    capacity = max(MIN_CAPACITY, 1 << max(n - 1, 0).bit_length())
    base = cache.get(("capacity", capacity))
    if base is None or base.dtype != dtype:
        base = cache[("capacity", capacity)] = Workspace(model.spec, capacity, dtype)
    if len(cache) > MAX_VIEWS:
        for key in [key for key in cache if not isinstance(key, tuple)]:
            del cache[key]
    ws = cache[n] = base if n == capacity else Workspace(model.spec, n, dtype, base)
    return ws


MIN_CAPACITY = 64
MAX_VIEWS = 512  # sizes whose views are kept (views only: the memory is the capacity's)


class Workspace:
    """Preallocated arrays for one batch of n windows (see ``loss_and_grads_fast``), or, with
    ``base`` (a Workspace of at least n windows), views of the first n rows of its arrays
    (sharing its numba row summers and the row layouts of its dx blocks)."""

    def __init__(
        self, spec: ModelSpec, n: int, dtype: np.dtype, base: Workspace | None = None
    ) -> None:
        H, C, D = spec.hidden, spec.n_out, spec.input_dim
        self.dtype = dtype

        def buf(name: str, *shape: int, kind: np.dtype = dtype) -> np.ndarray:
            """A new (n, …) array, or the first n rows of base's array ``name``."""
            return np.empty(shape, dtype=kind) if base is None else getattr(base, name)[:n]

        self.x, self.dx = buf("x", n, D), buf("dx", n, D)
        self.x_words, self.x_caps = input_blocks(self.x, spec)
        self.dx_words, self.dx_caps = input_blocks(self.dx, spec)
        self.x_feats, self.dx_feats = feature_blocks(self.x, spec), feature_blocks(self.dx, spec)
        if base is None:
            # numba row sums (windowner.accel) for every table, or None: numpy's
            self.row_summer = row_summer(spec.vocab_size) if spec.train_embeddings else None
            # numba's one pass for tanh′ and db, or None: numpy's passes
            self.tanh_backward = compiled_tanh_backward() if spec.activation == "tanh" else None
            self.caps_summer = row_summer(spec.caps_classes) if spec.caps_dim > 0 else None
            self.feature_summers = [row_summer(rows) for rows in spec.feature_rows]
            self.dx_word_rows, self.dx_caps_rows = RowSource(self.dx_words), RowSource(self.dx_caps)
            self.dx_feat_rows = [RowSource(block) for block in self.dx_feats]
        else:  # a prefix of base's rows: the same row layout, fewer windows
            self.row_summer, self.caps_summer = base.row_summer, base.caps_summer
            self.tanh_backward = base.tanh_backward
            self.feature_summers = base.feature_summers
            self.dx_word_rows = base.dx_word_rows.prefix(n)
            self.dx_caps_rows = base.dx_caps_rows.prefix(n)
            self.dx_feat_rows = [source.prefix(n) for source in base.dx_feat_rows]
        self.z, self.a, self.a_drop, self.scratch = (
            buf(k, n, H) for k in ("z", "a", "a_drop", "scratch")
        )
        dropout = spec.input_keep_prob < 1.0
        self.input_mask = buf("input_mask", n, D) if dropout else None
        self.hidden_mask = buf("hidden_mask", n, H)
        self.masks = (self.input_mask, self.hidden_mask)  # ``WindowScorer.dropout_masks``
        self.s, self.margins, self.active = (buf(k, n, C) for k in ("s", "margins", "active"))
        self.flat = np.arange(n, dtype=np.int64) * C if base is None else base.flat[:n]
        self.flat_y = buf("flat_y", n, kind=np.int64)
        self.counts = buf("counts", n)
        self.ones_c = np.ones(C, dtype) if base is None else base.ones_c
        self.da = buf("da", n, H)
        if base is None:
            self.dW, self.db, self.dU = (
                np.empty((H, D), dtype),
                np.empty(H, dtype),
                np.empty((H, C), dtype),
            )
        else:
            self.dW, self.db, self.dU = base.dW, base.db, base.dU


# ----------------------------------------------------------------------------- row sums


def sort_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable sort of (n,) non-negative ids → (sorted ids, order), both int64.

    One sort of int64 keys ``id << b | position`` (b bits hold any position), which is faster
    than a stable argsort and gives the same order: ties keep their original order.
    """
    n = len(ids)
    shift = max(int(n - 1).bit_length(), 1)
    key = ids.astype(np.int64)
    key <<= shift
    key |= np.arange(n, dtype=np.int64)
    key.sort()
    order = key & ((1 << shift) - 1)
    key >>= shift
    return key, order


def sum_window_rows(
    ids: np.ndarray, rows: np.ndarray, source: RowSource | None = None, short: int = 8
) -> SparseGrad:
    """``embedding_backward`` for window-shaped gradients: ids (B, w) and rows (B, w, d), any
    strides (e.g. a column block of dx) → SparseGrad with unique sorted ids.

    The ids are sorted once (``sort_ids``); then each run of equal ids is summed by its length:
    an id seen once (most of them) takes its row as it is; short runs (≤ ``short`` rows, when
    there are many of them) add their k-th rows in one vectorised pass per k; the long runs of
    the few frequent ids go through ``np.add.reduceat``, whose cost grows with the number of
    runs it sums. ``source``: a ``RowSource`` of ``rows``, to reuse when the same buffer serves
    every step.
    """
    source = RowSource(rows) if source is None else source
    sorted_ids, order = sort_ids(ids.reshape(-1))
    n = len(sorted_ids)
    src = np.take(source.offsets, order)  # view row of each sorted position
    first = np.empty(n, dtype=bool)
    first[:1] = True
    np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=first[1:])
    if n and sorted_ids[0] < 0:
        raise IndexError("negative embedding id")
    starts = np.flatnonzero(first)
    out = source.take(src[starts])
    if len(starts) == n:
        return SparseGrad(sorted_ids[starts], out)
    lengths = run_lengths(starts, n)
    multi = np.flatnonzero(lengths > 1)
    if len(multi) < 128:  # few runs: one reduceat is cheaper than the passes
        short = 1
    multi_lengths = lengths[multi]
    short_runs = multi[multi_lengths <= short]
    if len(short_runs):
        _sum_short_runs(source, src, starts, lengths, short_runs, out)
    long_runs = multi[multi_lengths > short]
    if len(long_runs):
        long_lengths = lengths[long_runs]
        run_starts = np.cumsum(long_lengths) - long_lengths  # in the gathered rows
        positions = np.repeat(starts[long_runs] - run_starts, long_lengths)
        positions += np.arange(len(positions))
        sums = np.add.reduceat(_pairs(source.take(src[positions])), run_starts, axis=0)
        out[long_runs] = sums.view(source.dtype)
    return SparseGrad(sorted_ids[starts], out)


def run_lengths(starts: np.ndarray, n: int) -> np.ndarray:
    """The lengths of the runs that begin at ``starts`` (increasing, starts[0] = 0) in n
    positions: ``np.diff(starts, append=n)`` without its concatenation (5 of its 7 µs)."""
    lengths = np.empty_like(starts)
    np.subtract(starts[1:], starts[:-1], out=lengths[:-1])
    lengths[-1] = n - starts[-1]
    return lengths


def _sum_short_runs(
    source: RowSource,
    src: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    short_runs: np.ndarray,
    out: np.ndarray,
) -> None:
    """Adds the other rows of the runs ``short_runs`` to their first rows, which are in
    ``out``: pass k adds the k-th row of every run longer than k at once."""
    runs = short_runs[np.argsort(-lengths[short_runs], kind="stable")]  # longest first
    run_lengths, first_pos = lengths[runs], starts[runs]
    acc = out[runs]
    # pass k adds the k-th row of the runs longer than k: a prefix of ``runs``
    longer = np.searchsorted(-run_lengths, -np.arange(1, run_lengths[0]), side="left")
    for k, count in enumerate(longer.tolist(), start=1):
        acc[:count] += source.take(src[first_pos[:count] + k])
    out[runs] = acc


def sum_window_rows_small(ids: np.ndarray, rows: np.ndarray, n_rows: int) -> SparseGrad:
    """``sum_window_rows`` for a small table (e.g. the 6 caps classes): one one-hot product.

    With O (B·w, n_rows) the one-hot code of every (window, position)'s id and R (B·w, d) the
    rows, Oᵀ R (n_rows, d) holds the sum of the rows of each id: one small matrix product
    instead of a sort, a gather and a ``reduceat`` over B·w rows.
    """
    B, w = ids.shape
    d = rows.shape[2]
    flat_ids = ids.reshape(-1)
    out_of_range = IndexError(f"id out of range for a table of {n_rows} rows")
    try:
        counts = np.bincount(flat_ids, minlength=n_rows)
    except ValueError:  # a negative id
        raise out_of_range from None
    if len(counts) > n_rows:
        raise out_of_range
    onehot = np.zeros((B * w, n_rows), dtype=rows.dtype)
    np.put(onehot, flat_ids + np.arange(0, B * w * n_rows, n_rows), 1.0)  # row k, column id_k
    table = onehot.T @ np.ascontiguousarray(rows).reshape(B * w, d)
    used = np.flatnonzero(counts)
    return SparseGrad(used, table[used])


def _pairs(rows: np.ndarray) -> np.ndarray:
    """Rows of even width viewed as complex numbers (two floats per element), which halves the
    inner-loop calls of ``reduceat``; complex addition adds each float on its own."""
    if rows.dtype == np.float32 and rows.shape[1] % 2 == 0:
        return rows.view(np.complex64)
    if rows.dtype == np.float64 and rows.shape[1] % 2 == 0:
        return rows.view(np.complex128)
    return rows

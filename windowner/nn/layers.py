"""Layers as forward/backward function pairs, in the style of CS231n.

``*_forward`` returns ``(out, cache)``; ``*_backward(dout, cache)`` returns the gradients.
Caches are plain local values handed from one call to the other, never stored on objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from windowner.nn.activations import ACTIVATIONS, DERIVATIVES
from windowner.registry import lookup


@dataclass(frozen=True)
class SparseGrad:
    """Gradient of an embedding table restricted to the rows a batch used.

    ids: (M,) int, unique and sorted; rows: (M, d), the summed gradient of each of those rows.
    """

    ids: np.ndarray
    rows: np.ndarray


def sum_rows(ids: np.ndarray, rows: np.ndarray) -> SparseGrad:
    """Sum gradient rows that share an id: (n,) ids and (n, d) rows → SparseGrad.

    Sorts the ids once and adds runs with ``np.add.reduceat`` (no ``np.add.at``, no dense table).
    """
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    return SparseGrad(sorted_ids[starts], np.add.reduceat(rows[order], starts, axis=0))


def embedding_forward(table: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Look up and concatenate: table (V, d), ids (B, w) → out (B, w·d)."""
    out = np.take(table, ids, axis=0).reshape(ids.shape[0], -1)
    return out, (ids, table.shape[1])


def embedding_backward(dout: np.ndarray, cache: tuple) -> SparseGrad:
    """dout (B, w·d) → SparseGrad over the rows that were looked up."""
    ids, dim = cache
    return sum_rows(ids.reshape(-1), dout.reshape(-1, dim))


def affine_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """z = W x + b for a batch: x (B, D), W (H, D), b (H,) → z (B, H)."""
    return x @ W.T + b, (x, W)


def affine_backward(dz: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dz (B, H) → dx (B, D), dW = Σ_batch δ xᵀ (H, D), db = Σ_batch δ (H,)."""
    x, W = cache
    return dz @ W, dz.T @ x, dz.sum(axis=0)


def linear_forward(a: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Scores s = Uᵀ a for a batch: a (B, H), U (H, C) → s (B, C)."""
    return a @ U, (a, U)


def linear_backward(ds: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray]:
    """ds (B, C) → da = U δ (B, H), dU = Σ_batch a δᵀ (H, C)."""
    a, U = cache
    return ds @ U.T, a.T @ ds


def activation_forward(z: np.ndarray, name: str, slope: float = 0.01) -> tuple[np.ndarray, tuple]:
    """a = f(z), elementwise; the cache keeps the output a (derivatives are written from it)."""
    a = lookup(ACTIVATIONS, name, "activation")(z, slope)
    return a, (a, name, slope)


def activation_backward(da: np.ndarray, cache: tuple) -> np.ndarray:
    """dz = f′(z) ∘ da, with f′ computed from the cached output."""
    a, name, slope = cache
    return da * DERIVATIVES[name](a, slope)


def dropout_mask(
    rng: np.random.Generator, shape: tuple[int, ...], keep: float, dtype: type = np.float32
) -> np.ndarray:
    """Inverted-dropout mask: 1/keep with probability keep, else 0; drawn from ``rng``."""
    scale = np.asarray(1.0 / keep, dtype=dtype)
    return (rng.random(shape, dtype=np.float32) < keep).astype(dtype) * scale


def dropout_forward(x: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """x ∘ mask during training; ``mask=None`` (evaluation, or keep = 1) passes x through."""
    return (x if mask is None else x * mask), mask


def dropout_backward(dout: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Gradient flows only through the units that were kept, scaled as in the forward pass."""
    return dout if mask is None else dout * mask


# ----------------------------------------------------------------------------- fast kernels
#
# The training fast path (WindowScorer.loss_and_grads_fast) uses these instead of the pairs
# above: same math, written into preallocated buffers with ``out=``. Tests check them against
# the reference functions.


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


class RowSource:
    """The rows of a (B, w, d) array with any strides, e.g. the word block of dx, as one
    (R, d) read-only view plus the view row of each (window i, position p): row i·w + p of the
    flattened windows is ``view[offsets[i·w + p]]``. Fancy indexing of that view gathers rows
    with one index array and no copy of the source."""

    def __init__(self, rows: np.ndarray) -> None:
        B, w, d = rows.shape
        s0, s1, s2 = (s // rows.itemsize for s in rows.strides)
        extent = (B - 1) * s0 + (w - 1) * s1 + 1 if B and w else 0
        self.view = np.lib.stride_tricks.as_strided(
            rows, shape=(extent, d), strides=(rows.itemsize, rows.strides[2]), writeable=False
        )
        self.offsets = (np.arange(B)[:, None] * s0 + np.arange(w) * s1).reshape(-1)
        self.dtype = rows.dtype


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
    view = source.view
    sorted_ids, order = sort_ids(ids.reshape(-1))
    n = len(sorted_ids)
    src = np.take(source.offsets, order)  # view row of each sorted position
    first = np.empty(n, dtype=bool)
    first[:1] = True
    np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=first[1:])
    if n and sorted_ids[0] < 0:
        raise IndexError("negative embedding id")
    starts = np.flatnonzero(first)
    out = view[src[starts]]
    if len(starts) == n:
        return SparseGrad(sorted_ids[starts], out)
    lengths = np.diff(starts, append=n)
    multi = np.flatnonzero(lengths > 1)
    if len(multi) < 128:  # few runs: one reduceat is cheaper than the passes
        short = 1
    multi_lengths = lengths[multi]
    short_runs = multi[multi_lengths <= short]
    if len(short_runs):
        runs = short_runs[np.argsort(-lengths[short_runs], kind="stable")]  # longest first
        run_lengths, first_pos = lengths[runs], starts[runs]
        acc = out[runs]
        # pass k adds the k-th row of the runs longer than k: a prefix of ``runs``
        longer = np.searchsorted(-run_lengths, -np.arange(1, run_lengths[0]), side="left")
        for k, count in enumerate(longer.tolist(), start=1):
            acc[:count] += view[src[first_pos[:count] + k]]
        out[runs] = acc
    long_runs = multi[multi_lengths > short]
    if len(long_runs):
        long_lengths = lengths[long_runs]
        run_starts = np.cumsum(long_lengths) - long_lengths  # in the gathered rows
        positions = np.repeat(starts[long_runs] - run_starts, long_lengths)
        positions += np.arange(len(positions))
        sums = np.add.reduceat(_pairs(view[src[positions]]), run_starts, axis=0)
        out[long_runs] = sums.view(source.dtype)
    return SparseGrad(sorted_ids[starts], out)


def sum_window_rows_small(ids: np.ndarray, rows: np.ndarray, n_rows: int) -> SparseGrad:
    """``sum_window_rows`` for a small table (e.g. the 6 caps classes): one-hot products.

    With O (B, w·n_rows) the one-hot code of (position, id) and R (B, w·d) the rows, Oᵀ R holds
    for every position p the (n_rows, d) sums of that position's rows per id in its diagonal
    block (p, p); the gradient is the sum of those blocks. One small matrix product instead of
    a sort, a gather and a ``reduceat`` over B·w rows.
    """
    B, w = ids.shape
    d = rows.shape[2]
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= n_rows):
        raise IndexError(f"id out of range for a table of {n_rows} rows")
    onehot = np.zeros((B, w * n_rows), dtype=rows.dtype)
    # flat index of (window i, position p, id) in onehot: i·w·n_rows + p·n_rows + id
    np.put(onehot, ids + np.arange(0, B * w * n_rows, n_rows).reshape(B, w), 1.0)
    blocks = (onehot.T @ rows.reshape(B, w * d)).reshape(w, n_rows, w, d)
    table = np.einsum("pipd->id", blocks)
    used = np.flatnonzero(np.bincount(ids.reshape(-1), minlength=n_rows))
    return SparseGrad(used, table[used])


def _pairs(rows: np.ndarray) -> np.ndarray:
    """Rows of even width viewed as complex numbers (two floats per element), which halves the
    inner-loop calls of ``reduceat``; complex addition adds each float on its own."""
    if rows.dtype == np.float32 and rows.shape[1] % 2 == 0:
        return rows.view(np.complex64)
    if rows.dtype == np.float64 and rows.shape[1] % 2 == 0:
        return rows.view(np.complex128)
    return rows


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


def dropout_mask_into(
    rng: np.random.Generator, keep: float, draws: np.ndarray, out: np.ndarray
) -> np.ndarray:
    """``dropout_mask`` drawn into preallocated float32 ``draws`` and ``out`` (same draws from
    ``rng``, same values)."""
    rng.random(dtype=np.float32, out=draws)
    np.less(draws, keep, out=out)
    out *= np.asarray(1.0 / keep, dtype=out.dtype)
    return out

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


def sum_window_rows(ids: np.ndarray, rows: np.ndarray) -> SparseGrad:
    """``embedding_backward`` for window-shaped gradients: ids (B, w) and rows (B, w, d), any
    strides (e.g. a column block of dx) → SparseGrad with unique sorted ids.

    The ids are sorted once (``sort_ids``). An id seen once (most of them) takes its row as it
    is; only the ids seen more than once go through ``np.add.reduceat``, whose cost grows with
    the number of runs it sums.
    """
    B, w = ids.shape
    sorted_ids, order = sort_ids(ids.reshape(-1))
    window, slot = np.divmod(order, w)  # sorted position k is rows[window[k], slot[k]]
    n = len(sorted_ids)
    first = np.empty(n, dtype=bool)
    first[0] = True
    np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    out = rows[window[starts], slot[starts]]
    if len(starts) == n:
        return SparseGrad(sorted_ids[starts], out)
    last = np.empty(n, dtype=bool)
    last[-1] = True
    last[:-1] = first[1:]
    repeated = np.flatnonzero(~(first & last))  # positions in runs of length ≥ 2
    run_starts = np.flatnonzero(first[repeated])
    summed = rows[window[repeated], slot[repeated]]
    sums = np.add.reduceat(_pairs(summed), run_starts, axis=0)
    multi_runs = np.flatnonzero(~last[starts])  # a run of length ≥ 2 does not end at its start
    out[multi_runs] = sums.view(rows.dtype)
    return SparseGrad(sorted_ids[starts], out)


def _pairs(rows: np.ndarray) -> np.ndarray:
    """Float32 rows of even width viewed as complex64 (two floats per element), which halves
    the inner-loop calls of ``reduceat``; complex addition adds each float on its own."""
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

"""Layers as forward/backward function pairs, in the style of CS231n.

``*_forward`` returns ``(out, cache)``; ``*_backward(dout, cache)`` returns the gradients.
Caches are plain local values handed from one call to the other, never stored on objects.
"""

from __future__ import annotations

import math
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
    rng: np.random.Generator,
    shape: tuple[int, ...],
    keep: float,
    dtype: type | np.dtype = np.float32,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Inverted-dropout mask of ``shape``: 1/keep with probability keep, else 0.

    Each element takes 32 random bits of ``rng`` (half a raw 64-bit draw) and is kept when
    they, read as an unsigned integer, are below keep·2³²: P(kept) is keep to within 2⁻³²,
    and the bits cost half as much as drawing float32 uniforms (27 against 53 µs for a batch
    of 32 windows, 0.78 against 1.53 ms for 1024). ``out`` (dtype, of that shape) is an
    optional buffer to write the mask into (the fast path's)."""
    count = math.prod(shape)
    bits = rng.bit_generator.random_raw((count + 1) // 2).view(np.uint32)[:count]
    out = np.empty(shape, dtype=dtype) if out is None else out
    np.less(bits.reshape(shape), np.uint32(keep_threshold(keep)), out=out)
    out *= np.asarray(1.0 / keep, dtype=out.dtype)
    return out


def keep_threshold(keep: float) -> int:
    """The 32-bit threshold of ``dropout_mask``: round(keep·2³²), within [1, 2³² − 1]."""
    return min(max(round(keep * 2**32), 1), 2**32 - 1)


def dropout_forward(x: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """x ∘ mask during training; ``mask=None`` (evaluation, or keep = 1) passes x through."""
    return (x if mask is None else x * mask), mask


def dropout_backward(dout: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Gradient flows only through the units that were kept, scaled as in the forward pass."""
    return dout if mask is None else dout * mask

"""The tanh backward pass of the training fast path compiled by numba: an optional accelerator
(``pip install windowner[accel]``) beside ``nn.fast``, used only in training (prediction never
imports numba).

numpy multiplies dJ/da by the hidden dropout mask, forms 1 − a² in two passes, multiplies,
and sums the result over the batch for db: five passes over (N, H). ``tanh_backward`` does
it in one, with the same float operations in the same order (the scalar 1 arrives in the
array's dtype; without fastmath LLVM neither reorders nor contracts them), so dz and db
equal numpy's bit for bit (numpy sums over axis 0 row after row, as the loop does;
tests/test_fused.py). ``nn.fast`` uses it when ``windowner.accel`` is on and the activation
is tanh, through ``Workspace.tanh_backward``.

(A compiled gather of the embedding rows straight into x was tried too: no faster than
numpy's gather and copy, which are bound by memory, so the lookups stay numpy's.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np


@functools.cache
def _kernel() -> Callable:
    """The compiled loop (compiled on first use, cached on disk)."""
    from numba import njit

    @njit(cache=True, error_model="numpy", fastmath=False, nogil=True)
    def tanh_backward_bias(dz, a, mask, has_mask, one, db):  # pragma: no cover - compiled
        """dz ← (dz ∘ mask) ∘ (1 − a ∘ a) in place, db = Σ_i dz[i] (rows added in order)."""
        n, h = dz.shape
        if n == 0:
            db[:] = 0  # numpy's sum of no rows
        for i in range(n):
            for j in range(h):
                g = dz[i, j]
                if has_mask:
                    g = g * mask[i, j]
                square = a[i, j] * a[i, j]
                g = g * (one - square)
                dz[i, j] = g
                if i == 0:
                    db[j] = g  # as numpy's sum: the first row, then the others added
                else:
                    db[j] += g

    return tanh_backward_bias


def tanh_backward(
    dz: np.ndarray, a: np.ndarray, mask: np.ndarray | None, db: np.ndarray
) -> np.ndarray:
    """dz (N, H) ← (dz ∘ mask) ∘ (1 − a²) in place, a (N, H) the tanh outputs, mask (N, H) or
    None; returns db (H,) = Σ rows of dz, written into ``db``."""
    one = dz.dtype.type(1.0)
    _kernel()(dz, a, a if mask is None else mask, mask is not None, one, db)
    return db


def compiled_tanh_backward() -> Callable | None:
    """``tanh_backward`` when the numba kernels are in use (``windowner.accel``), else None."""
    from windowner import accel

    return tanh_backward if accel.available() else None

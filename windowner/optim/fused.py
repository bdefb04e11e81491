"""One-pass optimizer updates compiled by numba: an optional accelerator (``pip install
windowner[accel]``), never imported by ``windowner --help`` or by prediction.

numpy evaluates an update rule as a chain of in-place ufuncs, one pass over the parameter
per operation (13 for Adam); these kernels do the same operations, in the same order and in
the parameter's dtype, one element at a time in one pass. Without fastmath LLVM neither
reorders nor contracts them (no FMA), and sqrt and division are correctly rounded in both,
so the results equal the numpy rules bit for bit (tests/test_fused.py checks every rule,
dense and row-wise). The numpy rules stay the reference and the default when numba is absent.

Every kernel updates rows ``ids`` of a 2-D table θ (V, d) and of its state from gradient rows
g (M, d): the lazy row update of an embedding table, and a dense parameter as its own rows
(ids = 0..V−1; a vector is one row). The scalars arrive already cast to θ's dtype, computed
as the numpy rules compute them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from windowner.optim.optimizers import adam_scalars


def _compile() -> dict[str, Callable]:
    """The kernels, compiled lazily by numba on first call for each dtype (cached on disk).

    Longer than 50 lines on purpose: one short hot kernel per update rule, closed over one jit."""
    from numba import njit

    jit = njit(cache=True, error_model="numpy", fastmath=False, nogil=True)

    @jit
    def sgd(theta, ids, g, neg_lr):  # θ += −α g
        for r in range(ids.shape[0]):
            i = ids[r]
            for j in range(g.shape[1]):
                theta[i, j] += g[r, j] * neg_lr

    @jit
    def momentum(theta, v, ids, g, mu, lr):  # v ← μ v − α g;  θ += v
        for r in range(ids.shape[0]):
            i = ids[r]
            for j in range(g.shape[1]):
                vi = v[i, j] * mu - g[r, j] * lr
                v[i, j] = vi
                theta[i, j] += vi

    @jit
    def nesterov(theta, v, ids, g, neg_mu, mu, lr, one_plus_mu):
        for r in range(ids.shape[0]):
            i = ids[r]
            for j in range(g.shape[1]):
                old = v[i, j] * neg_mu  # −μ v
                vi = v[i, j] * mu - g[r, j] * lr  # v' = μ v − α g
                v[i, j] = vi
                theta[i, j] += old + vi * one_plus_mu

    @jit
    def adagrad(theta, cache, ids, g, eps, neg_lr):  # G += g²;  θ += −α g / (√G + ε)
        for r in range(ids.shape[0]):
            i = ids[r]
            for j in range(g.shape[1]):
                gj = g[r, j]
                c = cache[i, j] + gj * gj
                cache[i, j] = c
                theta[i, j] += (gj * neg_lr) / (np.sqrt(c) + eps)

    @jit
    def rmsprop(theta, cache, ids, g, one_minus_rho, rho, eps, neg_lr):
        for r in range(ids.shape[0]):
            i = ids[r]
            for j in range(g.shape[1]):
                gj = g[r, j]
                c = cache[i, j] * rho + (gj * one_minus_rho) * gj  # G ← ρ G + (1 − ρ) g²
                cache[i, j] = c
                theta[i, j] += (gj * neg_lr) / (np.sqrt(c) + eps)

    @jit
    def adam(theta, m, v, ids, g, b1, one_minus_b1, b2, one_minus_b2, eps, scale):
        for r in range(ids.shape[0]):
            i = ids[r]
            for j in range(g.shape[1]):
                gj = g[r, j]
                mi = m[i, j] * b1 + gj * one_minus_b1  # m ← β₁ m + (1 − β₁) g
                vi = v[i, j] * b2 + (gj * one_minus_b2) * gj  # v ← β₂ v + (1 − β₂) g²
                m[i, j] = mi
                v[i, j] = vi
                theta[i, j] += (mi / (np.sqrt(vi) + eps)) * scale  # optimizers._adam

    return {
        "sgd": sgd,
        "momentum": momentum,
        "nesterov": nesterov,
        "adagrad": adagrad,
        "rmsprop": rmsprop,
        "adam": adam,
    }


_KERNELS: dict[str, Callable] = {}


def kernels() -> dict[str, Callable]:
    """The compiled kernels by rule name (numba must be importable)."""
    if not _KERNELS:
        _KERNELS.update(_compile())
    return _KERNELS


def as_rows(a: np.ndarray) -> np.ndarray:
    """A parameter or state array as a 2-D (rows, d) view: a vector becomes one row."""
    return a.reshape(1, -1) if a.ndim == 1 else a.reshape(a.shape[0], -1)


class FusedRules:
    """The update rules of ``Optimizer`` as one-pass kernels.

    ``update(kind, settings, t, theta, slots, ids, g, lr)``: θ (V, …) and its state slots in
    place at rows ``ids`` (None: every row) from gradient rows ``g``."""

    def __init__(self) -> None:
        self.kernels = kernels()
        self._all_rows: dict[int, np.ndarray] = {}

    def _every_row(self, n: int) -> np.ndarray:
        ids = self._all_rows.get(n)
        if ids is None:
            ids = self._all_rows[n] = np.arange(n, dtype=np.int64)
        return ids

    def update(
        self,
        kind: str,
        settings: object,
        t: int,
        theta: np.ndarray,
        slots: list[np.ndarray],
        ids: np.ndarray | None,
        g: np.ndarray,
        lr: float,
    ) -> None:
        theta2, g2 = as_rows(theta), as_rows(g)
        slots2 = [as_rows(s) for s in slots]
        if ids is None:
            ids = self._every_row(theta2.shape[0])
        args = scalars(kind, settings, t, lr, theta.dtype.type)
        self.kernels[kind](theta2, *slots2, ids, g2, *args)


def scalars(kind: str, s: object, t: int, lr: float, f: type) -> tuple:
    """A rule's constants, cast to the parameter's dtype ``f`` exactly as the numpy rule
    casts them (so each product rounds the same way)."""
    if kind == "sgd":
        return (-f(lr),)
    if kind == "momentum":
        return f(s.momentum), f(lr)
    if kind == "nesterov":
        return -f(s.momentum), f(s.momentum), f(lr), f(1.0 + s.momentum)
    if kind == "adagrad":
        return f(s.eps), -f(lr)
    if kind == "rmsprop":
        return f(1 - s.decay), f(s.decay), f(s.eps), -f(lr)
    return adam_scalars(s, t, lr, f)

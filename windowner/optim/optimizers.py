"""Parameter updates, with state keyed by parameter name as plain arrays (saved and resumed).

    sgd       θ ← θ − α g
    momentum  v ← μ v − α g;  θ ← θ + v                                  (the notes)
    nesterov  v' ← μ v − α g;  θ ← θ − μ v + (1 + μ) v';  v ← v'          (CS231n form)
    adagrad   G ← G + g²;  θ ← θ − α g / (√G + ε)
    rmsprop   G ← ρ G + (1 − ρ) g²;  θ ← θ − α g / (√G + ε)
    adam      m ← β₁ m + (1 − β₁) g;  v ← β₂ v + (1 − β₂) g²;
              θ ← θ − α m̂ / (√v̂ + ε),  m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)

An embedding gradient (SparseGrad) updates only the rows it names, and only those rows'
state ("lazy" state, as TensorFlow's LazyAdam): a step costs the same for any vocabulary size.
Adam's bias correction uses the global step t. With ``fan_in_scaling`` (Collobert et al.),
each weight matrix's learning rate is divided by √fan_in (W: D, U: H).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from windowner.nn.layers import SparseGrad

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
FAN_IN_AXIS = {"W": 1, "U": 0}  # W (H, D): fan-in D; U (H, C): fan-in H
SLOTS = {
    "sgd": (),
    "momentum": ("v",),
    "nesterov": ("v",),
    "adagrad": ("cache",),
    "rmsprop": ("cache",),
    "adam": ("m", "v"),
}


@dataclass(frozen=True)
class OptimizerSettings:
    name: str = "adam"
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    decay: float = 0.9
    eps: float = 1e-8
    fan_in_scaling: bool = False


class Optimizer:
    """``step(params, grads, lr)`` updates params in place; ``state`` is {"name.slot": array}
    plus the step counter ``t``."""

    def __init__(self, settings: OptimizerSettings, fused: bool | None = None) -> None:
        """``fused``: update with the one-pass numba kernels of optim/fused.py (equal bit for
        bit); None uses them when numba is installed (``pip install windowner[accel]``)."""
        if settings.name not in OPTIMIZERS:
            raise KeyError(
                f"unknown optimizer {settings.name!r}; choose from: {', '.join(OPTIMIZERS)}"
            )
        self.settings = settings
        self.state: dict[str, np.ndarray] = {}
        self.t = 0
        self._buffers: dict[tuple[int, np.dtype], np.ndarray] = {}
        self._fused = _fused_rules(fused)

    @property
    def kernels(self) -> str:
        """ "numba" (one-pass kernels) or "numpy" (the reference ufunc chains)."""
        return "numpy" if self._fused is None else "numba"

    def _slot(self, key: str, like: np.ndarray) -> np.ndarray:
        if key not in self.state:
            # np.zeros (calloc), not zeros_like: the pages of rows never updated (most of a
            # large embedding table) are never touched, so they cost no memory
            self.state[key] = np.zeros(like.shape, dtype=like.dtype)
        return self.state[key]

    def _scratch(self, i: int, like: np.ndarray) -> np.ndarray:
        """Scratch buffer number ``i`` shaped like ``like`` (kept between steps, never saved)."""
        buf = self._buffers.get((i, like.dtype))
        if buf is None or buf.size < like.size:
            buf = self._buffers[(i, like.dtype)] = np.empty(like.size, dtype=like.dtype)
        return buf[: like.size].reshape(like.shape)

    def step(self, params: dict[str, np.ndarray], grads: dict, lr: float) -> None:
        """One update of every parameter that has a gradient."""
        self.t += 1
        for name, grad in grads.items():
            param = params[name]
            rate = lr
            if self.settings.fan_in_scaling and name in FAN_IN_AXIS:
                rate = lr / np.sqrt(param.shape[FAN_IN_AXIS[name]])
            if self._fused is not None:
                self._update_fused(name, param, grad, rate)
            elif isinstance(grad, SparseGrad):
                self._update_rows(name, param, grad.ids, grad.rows, rate)
            else:
                self._update_dense(name, param, grad, rate)

    def _update_fused(self, name: str, param: np.ndarray, grad, lr: float) -> None:
        """The rule in one pass over θ (or over the rows a SparseGrad names) and its state."""
        slots = [self._slot(f"{name}.{suffix}", param) for suffix in SLOTS[self.settings.name]]
        ids, g = (grad.ids, grad.rows) if isinstance(grad, SparseGrad) else (None, grad)
        self._fused.update(self.settings.name, self.settings, self.t, param, slots, ids, g, lr)

    def _update_dense(self, name: str, param: np.ndarray, g: np.ndarray, lr: float) -> None:
        slots = [self._slot(f"{name}.{suffix}", param) for suffix in SLOTS[self.settings.name]]
        self._apply(param, g, slots, lr)

    def _update_rows(
        self, name: str, param: np.ndarray, ids: np.ndarray, g: np.ndarray, lr: float
    ) -> None:
        """The dense rule on rows ``ids`` of θ and of its state: gather, update, scatter."""
        theta = np.take(param, ids, axis=0)
        full = [self._slot(f"{name}.{suffix}", param) for suffix in SLOTS[self.settings.name]]
        rows = [np.take(f, ids, axis=0) for f in full]
        self._apply(theta, g, rows, lr)
        param[ids] = theta
        for f, r in zip(full, rows, strict=True):
            f[ids] = r

    def _apply(self, theta: np.ndarray, g: np.ndarray, slots: list[np.ndarray], lr: float) -> None:
        """θ and its state updated in place by the rule in the module docstring.

        Each line is the formula's arithmetic in the formula's order, so the result is the
        same to the last bit as evaluating the formula with temporaries.
        """
        s = self.settings
        kind = s.name
        f = theta.dtype.type
        tmp = self._scratch(0, g)
        if kind == "sgd":
            theta += np.multiply(g, -f(lr), out=tmp)  # θ += −α g
            return
        if kind in ("momentum", "nesterov"):
            (v,) = slots
            if kind == "nesterov":
                old = np.multiply(v, -f(s.momentum), out=self._scratch(1, g))  # −μ v
            v *= f(s.momentum)
            v -= np.multiply(g, f(lr), out=tmp)  # v ← μ v − α g
            if kind == "momentum":
                theta += v
            else:
                old += np.multiply(v, f(1.0 + s.momentum), out=tmp)  # −μ v + (1 + μ) v'
                theta += old
            return
        if kind in ("adagrad", "rmsprop"):
            (cache,) = slots
            if kind == "adagrad":
                cache += np.multiply(g, g, out=tmp)  # G ← G + g²
            else:
                np.multiply(g, f(1 - s.decay), out=tmp)
                tmp *= g
                cache *= f(s.decay)
                cache += tmp  # G ← ρ G + (1 − ρ) g²
            denom = np.sqrt(cache, out=tmp)
            denom += f(s.eps)
            step = np.multiply(g, -f(lr), out=self._scratch(1, g))
            step /= denom
            theta += step
            return
        m, v = slots
        m *= f(s.beta1)
        m += np.multiply(g, f(1 - s.beta1), out=tmp)  # m ← β₁ m + (1 − β₁) g
        np.multiply(g, f(1 - s.beta2), out=tmp)
        tmp *= g
        v *= f(s.beta2)
        v += tmp  # v ← β₂ v + (1 − β₂) g²
        m_hat_scale = 1.0 / (1.0 - s.beta1**self.t)
        v_hat_scale = 1.0 / (1.0 - s.beta2**self.t)
        denom = np.multiply(v, f(v_hat_scale), out=tmp)
        np.sqrt(denom, out=denom)
        denom += f(s.eps)  # √v̂ + ε
        step = np.multiply(m, -f(lr * m_hat_scale), out=self._scratch(1, g))
        step /= denom
        theta += step  # θ ← θ − α m̂ / (√v̂ + ε)

    # ----------------------------------------------------------------- saving and resuming

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to resume exactly: the state slots and the step counter."""
        out = {f"opt/{k}": v for k, v in self.state.items()}
        out["opt_t"] = np.asarray(self.t, dtype=np.int64)
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.state = {k[4:]: np.array(v) for k, v in arrays.items() if k.startswith("opt/")}
        self.t = int(arrays["opt_t"])


def _fused_rules(wanted: bool | None):
    """optim/fused.py's kernels when ``wanted`` (None: when numba is installed), else None."""
    from windowner.optim import fused

    if wanted is False or (wanted is None and not fused.available()):
        return None
    return fused.FusedRules()

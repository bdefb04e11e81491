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

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from windowner.nn.layers import SparseGrad
from windowner.nn.rowitems import scatter_rows

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
        self._constants: tuple[tuple, tuple] = ((), ())  # (t, lr, dtype) → adam_scalars
        self._fused = _fused_rules(fused)
        self.worker: Any = None  # an optim.worker.UpdateWorker: W's, b's and U's update
        self._started = 0  # the step whose update of worker.names start_early began

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
        """One update of every parameter that has a gradient (the worker's parameter: begun
        by ``start_early``, or updated here once the worker is idle)."""
        self.t += 1
        for name, grad in grads.items():
            if self.worker is not None and name in self.worker.names:
                if self._started == self.t:
                    continue  # running in the worker since start_early
                self.worker.wait()
            param = params[name]
            rate = self._rate(name, param, lr)
            if self._fused is not None:
                self._update_fused(name, param, grad, rate)
            elif isinstance(grad, SparseGrad):
                self._update_rows(name, param, grad.ids, grad.rows, rate)
            else:
                self._update_dense(name, param, grad, rate)

    def _rate(self, name: str, param: np.ndarray, lr: float) -> float:
        """The rate of parameter ``name``: lr, or lr/√fan-in with ``fan_in_scaling``."""
        if self.settings.fan_in_scaling and name in FAN_IN_AXIS:
            return lr / np.sqrt(param.shape[FAN_IN_AXIS[name]])
        return lr

    def start_early(self, params: dict[str, np.ndarray], grads: dict, lr: float) -> None:
        """Begins the coming step's update of the worker's parameters, when there is a worker
        (the fast path calls this once their gradients in ``grads`` are final and they are
        not read again in the step); ``step`` then leaves them out. Call ``settle`` before
        they or their state are read again."""
        if self.worker is None:
            return
        rates = [self._rate(name, params[name], lr) for name in self.worker.names]
        self.worker.start(self.t + 1, rates, grads)
        self._started = self.t + 1

    def gradient_out(self, name: str, default: np.ndarray) -> np.ndarray:
        """Where to write ``name``'s gradient: the worker's shared buffer when the worker
        updates ``name`` and is idle (``start_early`` then copies nothing), else ``default``."""
        worker = self.worker
        if worker is None or worker.pending:
            return default
        return worker.grads.get(name, default)

    def settle(self) -> None:
        """Returns once no update is running in the worker (at once without one)."""
        if self.worker is not None:
            self.worker.wait()

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
        full = [self._slot(f"{name}.{suffix}", param) for suffix in SLOTS[self.settings.name]]
        tables = (param, *full)
        theta, *rows = (np.take(t, ids, axis=0) for t in tables)
        self._apply(theta, g, rows, lr)
        for table, updated in zip(tables, (theta, *rows), strict=True):
            scatter_rows(table, ids, updated)  # one memcpy per row when many

    def adam_constants(self, f: type, lr: float) -> tuple:
        """``adam_scalars`` of this step, for θ's dtype ``f`` and rate ``lr``, computed once
        per step and kept for the other parameters."""
        key = (self.t, lr, f)
        if self._constants[0] != key:
            self._constants = (key, adam_scalars(self.settings, self.t, lr, f))
        return self._constants[1]

    def _apply(self, theta: np.ndarray, g: np.ndarray, slots: list[np.ndarray], lr: float) -> None:
        """θ and its state updated in place by the settings' rule (``RULES``)."""
        RULES[self.settings.name](self, theta, g, slots, lr)

    # ----------------------------------------------------------------- saving and resuming

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to resume exactly: the state slots and the step counter."""
        out = {f"opt/{k}": v for k, v in self.state.items()}
        out["opt_t"] = np.asarray(self.t, dtype=np.int64)
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.state = {k[4:]: np.array(v) for k, v in arrays.items() if k.startswith("opt/")}
        self.t = int(arrays["opt_t"])


# ----------------------------------------------------------------------------- update rules
#
# One function per rule in the module docstring: (optimizer, θ, g, state slots, α) → None,
# updating θ and the slots in place. Each line is the formula's arithmetic in the formula's
# order, so the result is the same to the last bit as evaluating the formula with temporaries
# (tests/test_fastpath.py checks it). Scratch buffer 0 and 1 are the optimizer's.


def _sgd(opt: Optimizer, theta: np.ndarray, g: np.ndarray, slots: list, lr: float) -> None:
    f = theta.dtype.type
    theta += np.multiply(g, -f(lr), out=opt._scratch(0, g))  # θ += −α g


def _momentum(opt: Optimizer, theta: np.ndarray, g: np.ndarray, slots: list, lr: float) -> None:
    (v,) = slots
    f = theta.dtype.type
    v *= f(opt.settings.momentum)
    v -= np.multiply(g, f(lr), out=opt._scratch(0, g))  # v ← μ v − α g
    theta += v


def _nesterov(opt: Optimizer, theta: np.ndarray, g: np.ndarray, slots: list, lr: float) -> None:
    (v,) = slots
    f, mu = theta.dtype.type, opt.settings.momentum
    tmp = opt._scratch(0, g)
    old = np.multiply(v, -f(mu), out=opt._scratch(1, g))  # −μ v
    v *= f(mu)
    v -= np.multiply(g, f(lr), out=tmp)  # v ← μ v − α g
    old += np.multiply(v, f(1.0 + mu), out=tmp)  # −μ v + (1 + μ) v'
    theta += old


def _adagrad(opt: Optimizer, theta: np.ndarray, g: np.ndarray, slots: list, lr: float) -> None:
    (cache,) = slots
    cache += np.multiply(g, g, out=opt._scratch(0, g))  # G ← G + g²
    _scaled_step(opt, theta, g, cache, lr)


def _rmsprop(opt: Optimizer, theta: np.ndarray, g: np.ndarray, slots: list, lr: float) -> None:
    (cache,) = slots
    f, rho = theta.dtype.type, opt.settings.decay
    tmp = opt._scratch(0, g)
    np.multiply(g, f(1 - rho), out=tmp)
    tmp *= g
    cache *= f(rho)
    cache += tmp  # G ← ρ G + (1 − ρ) g²
    _scaled_step(opt, theta, g, cache, lr)


def _scaled_step(
    opt: Optimizer, theta: np.ndarray, g: np.ndarray, cache: np.ndarray, lr: float
) -> None:
    """θ ← θ − α g / (√G + ε), the step of adagrad and rmsprop."""
    f = theta.dtype.type
    denom = np.sqrt(cache, out=opt._scratch(0, g))
    denom += f(opt.settings.eps)
    step = np.multiply(g, -f(lr), out=opt._scratch(1, g))
    step /= denom
    theta += step


def _adam(opt: Optimizer, theta: np.ndarray, g: np.ndarray, slots: list, lr: float) -> None:
    """Adam in 12 passes and one scratch buffer. √v̂ + ε = √s₂ (√v + ε/√s₂) with s₂ the
    bias correction of v, so θ ← θ − (α s₁/√s₂) · m / (√v + ε/√s₂): the same update without
    the pass that scales v and the second buffer (a smaller working set: 56 µs of a 819 µs
    step at batch 32, hidden 300)."""
    m, v = slots
    beta1, one_minus_beta1, beta2, one_minus_beta2, eps, scale = opt.adam_constants(
        theta.dtype.type, lr
    )
    tmp = opt._scratch(0, g)
    m *= beta1
    m += np.multiply(g, one_minus_beta1, out=tmp)  # m ← β₁ m + (1 − β₁) g
    np.multiply(g, one_minus_beta2, out=tmp)
    tmp *= g
    v *= beta2
    v += tmp  # v ← β₂ v + (1 − β₂) g²
    denom = np.sqrt(v, out=tmp)
    denom += eps  # √v + ε/√s₂
    step = np.divide(m, denom, out=tmp)
    step *= scale
    theta += step  # θ ← θ − α m̂ / (√v̂ + ε)


def adam_scalars(s: OptimizerSettings, t: int, lr: float, f: type) -> tuple:
    """Adam's step-t constants cast to θ's dtype ``f``: β₁, 1 − β₁, β₂, 1 − β₂, ε/√s₂ and
    −α s₁/√s₂, with s₁ = 1/(1 − β₁ᵗ) and s₂ = 1/(1 − β₂ᵗ) its bias corrections (float64
    until the cast; the numba kernel takes the same values)."""
    m_hat_scale = 1.0 / (1.0 - s.beta1**t)
    root_v_hat_scale = math.sqrt(1.0 / (1.0 - s.beta2**t))
    eps, scale = s.eps / root_v_hat_scale, -lr * m_hat_scale / root_v_hat_scale
    return f(s.beta1), f(1 - s.beta1), f(s.beta2), f(1 - s.beta2), f(eps), f(scale)


Rule = Callable[[Optimizer, np.ndarray, np.ndarray, list, float], None]
RULES: dict[str, Rule] = {
    "sgd": _sgd,
    "momentum": _momentum,
    "nesterov": _nesterov,
    "adagrad": _adagrad,
    "rmsprop": _rmsprop,
    "adam": _adam,
}


def _fused_rules(wanted: bool | None):
    """optim/fused.py's kernels when ``wanted`` (None: when numba is installed), else None."""
    from windowner import accel

    if wanted is False or (wanted is None and not accel.available()):
        return None
    from windowner.optim.fused import FusedRules

    return FusedRules()

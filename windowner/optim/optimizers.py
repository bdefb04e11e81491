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

    def __init__(self, settings: OptimizerSettings) -> None:
        if settings.name not in OPTIMIZERS:
            raise KeyError(
                f"unknown optimizer {settings.name!r}; choose from: {', '.join(OPTIMIZERS)}"
            )
        self.settings = settings
        self.state: dict[str, np.ndarray] = {}
        self.t = 0

    def _slot(self, key: str, like: np.ndarray) -> np.ndarray:
        if key not in self.state:
            self.state[key] = np.zeros_like(like)
        return self.state[key]

    def step(self, params: dict[str, np.ndarray], grads: dict, lr: float) -> None:
        """One update of every parameter that has a gradient."""
        self.t += 1
        for name, grad in grads.items():
            param = params[name]
            rate = lr
            if self.settings.fan_in_scaling and name in FAN_IN_AXIS:
                rate = lr / np.sqrt(param.shape[FAN_IN_AXIS[name]])
            if isinstance(grad, SparseGrad):
                self._update_rows(name, param, grad.ids, grad.rows, rate)
            else:
                self._update_dense(name, param, grad, rate)

    def _update_dense(self, name: str, param: np.ndarray, g: np.ndarray, lr: float) -> None:
        param += self._delta(name, param, None, g, lr)

    def _update_rows(
        self, name: str, param: np.ndarray, ids: np.ndarray, g: np.ndarray, lr: float
    ) -> None:
        param[ids] += self._delta(name, param, ids, g, lr)

    def _delta(
        self, name: str, param: np.ndarray, ids: np.ndarray | None, g: np.ndarray, lr: float
    ) -> np.ndarray:
        """The change to θ (or to rows ``ids`` of θ); reads and writes the matching state rows."""
        s = self.settings
        kind = s.name
        dtype = param.dtype.type
        if kind == "sgd":
            return -dtype(lr) * g

        def slot(suffix: str) -> tuple[np.ndarray, np.ndarray]:
            full = self._slot(f"{name}.{suffix}", param)
            return full, (full if ids is None else full[ids])

        def store(full: np.ndarray, value: np.ndarray) -> None:
            if ids is None:
                full[...] = value
            else:
                full[ids] = value

        if kind in ("momentum", "nesterov"):
            v_full, v = slot("v")
            v_new = dtype(s.momentum) * v - dtype(lr) * g
            delta = (
                v_new
                if kind == "momentum"
                else (-dtype(s.momentum) * v + dtype(1.0 + s.momentum) * v_new)
            )
            store(v_full, v_new)  # after delta: for dense params v is a view of the state
            return delta
        if kind in ("adagrad", "rmsprop"):
            c_full, c = slot("cache")
            c_new = (
                c + g * g if kind == "adagrad" else dtype(s.decay) * c + dtype(1 - s.decay) * g * g
            )
            store(c_full, c_new)
            return -dtype(lr) * g / (np.sqrt(c_new) + dtype(s.eps))
        m_full, m = slot("m")
        v_full, v = slot("v")
        m_new = dtype(s.beta1) * m + dtype(1 - s.beta1) * g
        v_new = dtype(s.beta2) * v + dtype(1 - s.beta2) * g * g
        store(m_full, m_new)
        store(v_full, v_new)
        m_hat_scale = 1.0 / (1.0 - s.beta1**self.t)
        v_hat_scale = 1.0 / (1.0 - s.beta2**self.t)
        return (
            -dtype(lr * m_hat_scale) * m_new / (np.sqrt(v_new * dtype(v_hat_scale)) + dtype(s.eps))
        )

    # ----------------------------------------------------------------- saving and resuming

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to resume exactly: the state slots and the step counter."""
        out = {f"opt/{k}": v for k, v in self.state.items()}
        out["opt_t"] = np.asarray(self.t, dtype=np.int64)
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.state = {k[4:]: np.array(v) for k, v in arrays.items() if k.startswith("opt/")}
        self.t = int(arrays["opt_t"])

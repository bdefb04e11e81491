"""Learning-rate schedules: ``lr = schedule(t)``, with t counted in steps or (fractional) epochs.

constant     α₀
step         α₀ · factor^⌊t / every⌋                    (the notes' annealing)
exponential  α₀ e^(−k t)
inverse      α₀ τ / max(t, τ)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

SCHEDULES = ("constant", "step", "exponential", "inverse")
UNITS = ("epochs", "steps")


@dataclass(frozen=True)
class ScheduleSettings:
    """A schedule's name and shape (``config.ScheduleConfig`` is this, read from YAML)."""

    name: str = "constant"
    factor: float = 0.5
    every: float = 1.0
    k: float = 0.1
    tau: float = 1.0
    unit: str = "epochs"


@dataclass(frozen=True, kw_only=True)
class Schedule(ScheduleSettings):
    """lr(step) for a named schedule from base rate ``lr``; ``steps_per_epoch`` converts
    steps to epochs."""

    lr: float
    steps_per_epoch: int = 1

    @classmethod
    def from_config(
        cls, settings: ScheduleSettings, *, lr: float, steps_per_epoch: int
    ) -> Schedule:
        """The schedule a config's settings describe, from base rate ``lr``."""
        shared = {f.name: getattr(settings, f.name) for f in fields(ScheduleSettings)}
        return cls(lr=lr, steps_per_epoch=steps_per_epoch, **shared)

    def time(self, step: int) -> float:
        """t in the schedule's unit: the step count, or completed (fractional) epochs."""
        return float(step) if self.unit == "steps" else step / self.steps_per_epoch

    def __call__(self, step: int) -> float:
        return RULES[self.name](self, self.time(step))


def _constant(s: Schedule, t: float) -> float:
    return s.lr


def _step(s: Schedule, t: float) -> float:
    return s.lr * s.factor ** math.floor(t / s.every + 1e-9)


def _exponential(s: Schedule, t: float) -> float:
    return s.lr * math.exp(-s.k * t)


def _inverse(s: Schedule, t: float) -> float:
    return s.lr * s.tau / max(t, s.tau)


RULES: dict[str, Callable[[Schedule, float], float]] = {
    "constant": _constant,
    "step": _step,
    "exponential": _exponential,
    "inverse": _inverse,
}

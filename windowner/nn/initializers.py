"""Weight initialisers. A weight matrix W ∈ R^(fan_out × fan_in), as in the notes.

    xavier_uniform  U[−√(6/(fan_in+fan_out)), +√(6/(fan_in+fan_out))]   (the notes' formula)
    xavier_normal   N(0, 2/(fan_in+fan_out))
    he_uniform      U[−√(6/fan_in), +√(6/fan_in)]
    he_normal       N(0, 2/fan_in)
    uniform         U[−a, a]
    normal          N(0, σ²)

Biases start at 0. Every draw comes from the Generator passed in.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from windowner.registry import lookup


def xavier_uniform(rng: np.random.Generator, fan_out: int, fan_in: int, scale: float) -> np.ndarray:
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=(fan_out, fan_in))


def xavier_normal(rng: np.random.Generator, fan_out: int, fan_in: int, scale: float) -> np.ndarray:
    return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=(fan_out, fan_in))


def he_uniform(rng: np.random.Generator, fan_out: int, fan_in: int, scale: float) -> np.ndarray:
    bound = np.sqrt(6.0 / fan_in)
    return rng.uniform(-bound, bound, size=(fan_out, fan_in))


def he_normal(rng: np.random.Generator, fan_out: int, fan_in: int, scale: float) -> np.ndarray:
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_out, fan_in))


def uniform(rng: np.random.Generator, fan_out: int, fan_in: int, scale: float) -> np.ndarray:
    return rng.uniform(-scale, scale, size=(fan_out, fan_in))


def normal(rng: np.random.Generator, fan_out: int, fan_in: int, scale: float) -> np.ndarray:
    return rng.normal(0.0, scale, size=(fan_out, fan_in))


INITIALIZERS: dict[str, Callable[[np.random.Generator, int, int, float], np.ndarray]] = {
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "uniform": uniform,
    "normal": normal,
}


def init_weight(
    name: str,
    rng: np.random.Generator,
    fan_out: int,
    fan_in: int,
    scale: float = 0.1,
    dtype: type = np.float32,
) -> np.ndarray:
    """(fan_out, fan_in) matrix drawn by the named initialiser (``scale`` is a or σ)."""
    return lookup(INITIALIZERS, name, "initializer")(rng, fan_out, fan_in, scale).astype(dtype)

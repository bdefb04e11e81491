"""Activation functions and their derivatives.

As in scikit-learn's ACTIVATIONS/DERIVATIVES tables, each derivative is written from the
activation's *output* a = f(z), so the backward pass needs only the cached output:

    sigmoid    a = 1 / (1 + e^(−z))                    f′ = a (1 − a)
    tanh       a = tanh z                              f′ = 1 − a²
    hardtanh   a = −1 if z < −1, z if −1 ≤ z ≤ 1, 1 if z > 1    f′ = 1 where |a| < 1, else 0
    softsign   a = z / (1 + |z|)                        f′ = 1 / (1 + |z|)² = (1 − |a|)²
    relu       a = max(z, 0)                           f′ = 1 where a > 0, else 0
    leaky_relu a = z if z > 0 else slope·z (slope > 0) f′ = 1 where a > 0, else slope

(The notes print hardtanh's first case as z < 1 and softsign′ as sgn(z)/(1+z)²; the forms
above are the correct ones, and the gradient checks confirm them.)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Array = np.ndarray


def sigmoid(z: Array, slope: float = 0.0) -> Array:
    # Numerically stable: exp of a non-positive number only.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def tanh(z: Array, slope: float = 0.0) -> Array:
    return np.tanh(z)


def hardtanh(z: Array, slope: float = 0.0) -> Array:
    return np.clip(z, -1.0, 1.0)


def softsign(z: Array, slope: float = 0.0) -> Array:
    return z / (1.0 + np.abs(z))


def relu(z: Array, slope: float = 0.0) -> Array:
    return np.maximum(z, 0.0)


def leaky_relu(z: Array, slope: float = 0.01) -> Array:
    return np.where(z > 0, z, slope * z)


def d_sigmoid(a: Array, slope: float = 0.0) -> Array:
    return a * (1.0 - a)


def d_tanh(a: Array, slope: float = 0.0) -> Array:
    return 1.0 - a * a


def d_hardtanh(a: Array, slope: float = 0.0) -> Array:
    return (np.abs(a) < 1.0).astype(a.dtype)


def d_softsign(a: Array, slope: float = 0.0) -> Array:
    r = 1.0 - np.abs(a)
    return r * r


def d_relu(a: Array, slope: float = 0.0) -> Array:
    return (a > 0).astype(a.dtype)


def d_leaky_relu(a: Array, slope: float = 0.01) -> Array:
    return np.where(a > 0, 1.0, slope).astype(a.dtype)


ACTIVATIONS: dict[str, Callable[..., Array]] = {
    "sigmoid": sigmoid,
    "tanh": tanh,
    "hardtanh": hardtanh,
    "softsign": softsign,
    "relu": relu,
    "leaky_relu": leaky_relu,
}

DERIVATIVES: dict[str, Callable[..., Array]] = {
    "sigmoid": d_sigmoid,
    "tanh": d_tanh,
    "hardtanh": d_hardtanh,
    "softsign": d_softsign,
    "relu": d_relu,
    "leaky_relu": d_leaky_relu,
}

# Where each activation has a kink (its derivative jumps); gradient checks keep z away from these.
KINKS: dict[str, tuple[float, ...]] = {
    "sigmoid": (),
    "tanh": (),
    "hardtanh": (-1.0, 1.0),
    "softsign": (),
    "relu": (0.0,),
    "leaky_relu": (0.0,),
}

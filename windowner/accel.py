"""Whether the optional numba kernels (``pip install windowner[accel]``) are used.

They are used when numba imports and $WINDOWNER_NO_NUMBA is unset (or 0): the one-pass
optimizer updates (optim/fused.py, equal bit for bit to the numpy rules), the row sums of
every embedding table's gradient (nn/fused.py, equal up to the order of additions) and the tanh
backward pass with the bias gradient (nn/fused_passes.py, bit for bit). Nothing on the
``windowner --help`` or prediction path imports this module.
"""

from __future__ import annotations

import functools
import os

DISABLE_ENV = "WINDOWNER_NO_NUMBA"  # set to 1 to keep the numpy code with numba installed


def available() -> bool:
    """numba importable and not disabled by $WINDOWNER_NO_NUMBA."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return False
    return numba_importable()


@functools.cache
def numba_importable() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True

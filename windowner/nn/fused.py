"""The sum of an embedding table's gradient rows, compiled by numba: an optional accelerator
(``pip install windowner[accel]``) for ``nn.fast.sum_window_rows``.

numpy needs a sort, gathers and a pass per run length to add the rows of repeated ids; this
kernel walks the windows once, keeping each id's running sum in a slot found through an
id → slot table of the vocabulary's size (kept between calls, reset to −1 for the ids used).
Each id's rows are added in window order starting from its first row. numpy's short runs add
in that order too, but its long runs go through ``np.add.reduceat``, which adds pairwise: the
sums of frequent ids can differ in the last bits (tests/test_fused.py checks them equal to
float32 rounding, and rows of ids seen once equal bit for bit).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from windowner.nn.layers import SparseGrad

_KERNEL: list[Callable] = []


def _compile() -> Callable:
    from numba import njit

    @njit(cache=True, error_model="numpy", nogil=True)
    def sum_rows(ids, rows, slot_of, out, used):  # pragma: no cover - compiled
        """ids (B, w), rows (B, w, d) → the number k of distinct ids; used[:k] the ids in
        first-seen order, out[:k] their summed rows. slot_of (V,) is −1 on entry and exit."""
        k = 0
        for i in range(ids.shape[0]):
            for p in range(ids.shape[1]):
                word = ids[i, p]
                slot = slot_of[word]
                if slot < 0:
                    slot_of[word] = k
                    used[k] = word
                    for j in range(rows.shape[2]):
                        out[k, j] = rows[i, p, j]
                    k += 1
                else:
                    for j in range(rows.shape[2]):
                        out[slot, j] += rows[i, p, j]
        for r in range(k):
            slot_of[used[r]] = -1
        return k

    return sum_rows


class RowSummer:
    """``sum_window_rows`` for a table of ``n_rows`` rows: ids (B, w), rows (B, w, d) with any
    strides → SparseGrad (unique sorted ids, their summed rows)."""

    def __init__(self, n_rows: int) -> None:
        if not _KERNEL:
            _KERNEL.append(_compile())
        self.kernel = _KERNEL[0]
        self.slot_of = np.full(n_rows, -1, dtype=np.int32)
        self._out = np.empty((0, 0), dtype=np.float32)  # running sums, kept between calls
        self._used = np.empty(0, dtype=np.int64)

    def __call__(self, ids: np.ndarray, rows: np.ndarray) -> SparseGrad:
        n = ids.size
        if n and (int(ids.min()) < 0 or int(ids.max()) >= len(self.slot_of)):
            raise IndexError(f"embedding id out of range for a table of {len(self.slot_of)} rows")
        d = rows.shape[2]
        if self._out.shape[0] < n or self._out.shape[1] != d or self._out.dtype != rows.dtype:
            self._out = np.empty((n, d), dtype=rows.dtype)
            self._used = np.empty(n, dtype=np.int64)
        out, used = self._out, self._used
        k = self.kernel(ids, rows, self.slot_of, out, used)
        order = np.argsort(used[:k], kind="stable")
        return SparseGrad(used[:k][order], out[:k][order])


def row_summer(vocab_size: int) -> RowSummer | None:
    """A RowSummer when the numba kernels are in use (``windowner.accel``), else None."""
    from windowner import accel

    return RowSummer(vocab_size) if accel.available() else None

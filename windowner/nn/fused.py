"""The sum of an embedding table's gradient rows, compiled by numba: an optional accelerator
(``pip install windowner[accel]``) for ``nn.fast.sum_window_rows``.

numpy needs a sort of every row's id, gathers and a pass per run length to add the rows of
repeated ids; here one walk over the ids finds the distinct ones, numpy sorts those (fewer),
and a second walk adds each row into its id's slot, found through an id → rank table of the
vocabulary's size (kept between calls, reset to −1 for the ids used), reading the rows
through one flat view of their buffer (``nn.rowitems.RowSource.flat``: any row strides;
contiguous rows, so the inner loop is a plain run of d values). Each id's rows are added
onto zeros in window order (0 + x = x: a row seen once is its sum bit for bit). numpy's
short runs add in that order too, but its long runs go through ``np.add.reduceat``, which
adds pairwise: the sums of frequent ids can differ in the last bits (tests/test_fused.py
checks them equal to float32 rounding, and rows of ids seen once equal bit for bit). The fast
path uses one RowSummer per table (words, caps and every extra feature table).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from windowner.nn.layers import SparseGrad
from windowner.nn.rowitems import RowSource

_KERNELS: list[Callable] = []  # mark_distinct, sum_rows (compiled on first use)


def _compile() -> tuple[Callable, Callable]:
    from numba import njit

    @njit(cache=True, error_model="numpy", nogil=True)
    def mark_distinct(ids, slot_of, used):  # pragma: no cover - compiled
        """ids (n,) → k, the number of distinct ids; used[:k] those ids in first-seen order,
        slot_of[id] = −2 for each (it is −1 on entry for every id). −1, with slot_of as it
        was, if an id is outside the table."""
        k = 0
        for i in range(ids.shape[0]):
            word = ids[i]
            if word < 0 or word >= slot_of.shape[0]:
                for r in range(k):
                    slot_of[used[r]] = -1
                return -1
            if slot_of[word] == -1:
                slot_of[word] = -2
                used[k] = word
                k += 1
        return k

    @njit(cache=True, error_model="numpy", nogil=True)
    def sum_rows(ids, flat, s0, s1, w, d, slot_of, used, k, out):  # pragma: no cover
        """Row (i, p) of the windows is flat[i·s0 + p·s1 : … + d]; ids (n,) = (B·w,) its id.
        With used[:k] the distinct ids (sorted), out[r] becomes the sum of the rows of
        used[r], added in window order onto zeros; slot_of is −1 again on exit."""
        for r in range(k):
            slot_of[used[r]] = r
            out[r, :] = 0.0
        for i in range(ids.shape[0] // w):  # (no division per row)
            for p in range(w):
                start = i * s0 + p * s1
                row = flat[start : start + d]  # a slice (not flat[start + j]): vectorised
                total = out[slot_of[ids[i * w + p]]]
                for j in range(d):
                    total[j] += row[j]
        for r in range(k):
            slot_of[used[r]] = -1

    return mark_distinct, sum_rows


class RowSummer:
    """``sum_window_rows`` for a table of ``n_rows`` rows: ids (B, w), rows (B, w, d) with any
    strides → SparseGrad (unique sorted ids, their summed rows). The rows returned are a view
    of a buffer the next call overwrites (as the fast path's other gradients)."""

    def __init__(self, n_rows: int) -> None:
        if not _KERNELS:
            _KERNELS.extend(_compile())
        self.mark_distinct, self.sum_rows = _KERNELS
        self.slot_of = np.full(n_rows, -1, dtype=np.int64)
        self._out = np.empty((0, 0), dtype=np.float32)  # the sums, kept between calls
        self._used = np.empty(0, dtype=np.int64)

    def __call__(
        self, ids: np.ndarray, rows: np.ndarray, source: RowSource | None = None
    ) -> SparseGrad:
        """``source``: ``RowSource(rows)`` (or of a buffer whose first windows ``rows`` are)
        when the caller keeps one from step to step; None makes it."""
        flat_ids = np.ascontiguousarray(ids.reshape(-1))
        n, (w, d) = flat_ids.size, rows.shape[1:]
        if ids.shape != rows.shape[:2]:
            raise ValueError(f"ids {ids.shape} do not match rows {rows.shape}")
        source = RowSource(rows) if source is None else source
        if source.flat is None:  # a row's values are not contiguous: read a copy
            source = RowSource(np.ascontiguousarray(rows))
        (s0, s1), flat = source.strides, source.flat
        if self._out.shape[0] < n or self._out.shape[1] != d or self._out.dtype != rows.dtype:
            self._out = np.empty((n, d), dtype=rows.dtype)
            self._used = np.empty(n, dtype=np.int64)
        out, used = self._out, self._used
        k = self.mark_distinct(flat_ids, self.slot_of, used)
        if k < 0:
            raise IndexError(f"embedding id out of range for a table of {len(self.slot_of)} rows")
        try:
            used[:k].sort()
            self.sum_rows(flat_ids, flat, s0, s1, w, d, self.slot_of, used, k, out)
        except BaseException:  # e.g. Ctrl-C in a notebook: the next call must start clean
            self.slot_of[used[:k]] = -1
            raise
        return SparseGrad(used[:k], out[:k])


def warm_up() -> None:
    """One tiny call of a kernel: loads numba's compiler and its cache of this module's
    kernels (about 0.4 s once per process on a 2-core guest). After it, each kernel's first
    call with the real arrays takes milliseconds."""
    RowSummer(2)(np.zeros((1, 1), dtype=np.int64), np.zeros((1, 1, 1), dtype=np.float32))


def row_summer(vocab_size: int) -> RowSummer | None:
    """A RowSummer when the numba kernels are in use (``windowner.accel``), else None."""
    from windowner import accel

    return RowSummer(vocab_size) if accel.available() else None

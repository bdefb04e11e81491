"""Whole rows moved as single items: gathers and scatters of table rows for the fast path.

numpy's fancy indexing of a 2-D array ``a[ids]`` copies row after row through its general
element loop; the same rows viewed as one raw item each (a void dtype of d·itemsize bytes)
move with one ``memcpy`` per row, 1.5–2× faster for the 50–300-float rows of embedding
tables and window blocks. Bytes are copied as they are, so the values are the same bit for
bit. Every function falls back to plain indexing when a row is not one contiguous run.
``RowSource`` gives the rows of a window-shaped block (a column block of the fast path's dx)
to the numpy row sums (``take``) and to the numba ones (``flat``).
"""

from __future__ import annotations

import copy

import numpy as np

MIN_ROWS = 64  # below this many rows plain indexing is cheaper than the extra views


def row_items(a: np.ndarray) -> np.ndarray | None:
    """The rows of ``a`` (R, d) as an (R,) array of raw items sharing a's memory, or None when
    a row is not one contiguous run of memory (or d is 0). The row stride may be anything,
    even smaller than a row (overlapping rows: ``RowSource``)."""
    if a.ndim != 2 or a.shape[1] == 0 or a.dtype.hasobject:
        return None
    if a.shape[1] > 1 and a.strides[1] != a.itemsize:
        return None
    try:
        return a.view(np.dtype((np.void, a.shape[1] * a.itemsize)))[:, 0]
    except (TypeError, ValueError):  # a layout numpy will not re-view: plain indexing
        return None


def gather_rows(a: np.ndarray, items: np.ndarray | None, ids: np.ndarray) -> np.ndarray:
    """``a[ids]`` (len(ids), d), a new C-contiguous array; ``items`` is ``row_items(a)``
    (None, or fewer than MIN_ROWS ids: plain fancy indexing). Raises IndexError for ids out
    of range, as ``a[ids]``."""
    if items is None or len(ids) < MIN_ROWS:
        return a[ids]
    return items[ids].view(a.dtype).reshape(len(ids), a.shape[1])


def scatter_rows(a: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> None:
    """``a[ids] = rows`` for unique ``ids``, as raw items when ``a`` is C-contiguous and
    ``rows`` are C-contiguous rows of a's dtype (fewer than MIN_ROWS ids, or anything else:
    plain fancy assignment)."""
    items = None
    if len(ids) >= MIN_ROWS and a.flags.c_contiguous and _same_rows(a, rows):
        items = row_items(a)
    if items is None:
        a[ids] = rows
        return
    np.put(items, ids, rows.view(items.dtype).reshape(len(ids)))


def _same_rows(a: np.ndarray, rows: np.ndarray) -> bool:
    return (
        rows.dtype == a.dtype
        and rows.flags.c_contiguous
        and rows.ndim == 2
        and rows.shape[1] == a.shape[1]
    )


class RowSource:
    """The rows of a (B, w, d) array with any strides, e.g. the word block of dx, as one
    (R, d) read-only view plus the view row of each (window i, position p): row i·w + p of the
    flattened windows is ``view[offsets[i·w + p]]``. ``take`` gathers rows with one index
    array and no copy of the source (one memcpy per row where rows are contiguous). When each
    row's d values are contiguous, ``flat`` is the same memory as one 1-D view: row (i, p) is
    ``flat[i·s0 + p·s1 : … + d]`` with (s0, s1) = ``strides`` (in elements); else None."""

    def __init__(self, rows: np.ndarray) -> None:
        B, w, d = rows.shape
        s0, s1, s2 = (s // rows.itemsize for s in rows.strides)
        last = (B - 1) * s0 + (w - 1) * s1 if B and w else -1  # where the last row starts
        as_strided = np.lib.stride_tricks.as_strided
        self.view = as_strided(
            rows, shape=(last + 1, d), strides=(rows.itemsize, rows.strides[2]), writeable=False
        )
        self.offsets = (np.arange(B)[:, None] * s0 + np.arange(w) * s1).reshape(-1)
        self.dtype = rows.dtype
        self.items = row_items(self.view)
        self.window, self.strides = w, (s0, s1)
        extent = last + d if B and w else 0
        contiguous = d <= 1 or s2 == 1
        self.flat = (
            as_strided(rows, (extent,), (rows.itemsize,), writeable=False) if contiguous else None
        )

    def prefix(self, n_windows: int) -> RowSource:
        """The RowSource of the first ``n_windows`` windows of these rows (the same views)."""
        out = copy.copy(self)
        out.offsets = self.offsets[: n_windows * self.window]
        return out

    def take(self, view_rows: np.ndarray) -> np.ndarray:
        """``view[view_rows]`` (len(view_rows), d), a new C-contiguous array."""
        return gather_rows(self.view, self.items, view_rows)

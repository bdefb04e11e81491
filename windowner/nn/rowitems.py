"""Whole rows moved as single items: gathers and scatters of table rows for the fast path.

numpy's fancy indexing of a 2-D array ``a[ids]`` copies row after row through its general
element loop; the same rows viewed as one raw item each (a void dtype of d·itemsize bytes)
move with one ``memcpy`` per row, 1.5–2× faster for the 50–300-float rows of embedding
tables and window blocks. Bytes are copied as they are, so the values are the same bit for
bit. Every function falls back to plain indexing when a row is not one contiguous run.
"""

from __future__ import annotations

import numpy as np

MIN_ROWS = 64  # below this many rows plain indexing is cheaper than the extra views


def row_items(a: np.ndarray) -> np.ndarray | None:
    """The rows of ``a`` (R, d) as an (R,) array of raw items sharing a's memory, or None when
    a row is not one contiguous run of memory (or d is 0). The row stride may be anything,
    even smaller than a row (overlapping rows: ``nn.fast.RowSource``)."""
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

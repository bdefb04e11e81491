"""Input preprocessing of the notes (§2.5) applied to the embedding table.

Statistics are taken over training *tokens*: each row is weighted by how often its word occurs
in the training data, so the table is centred (and scaled, or whitened) the way the network's
inputs actually are.

    mean         E − μ
    standardize  (E − μ) / σ                      (per dimension)
    whiten       (E − μ) V / max(s, s_min)        (SVD of the weighted, centred rows; tiny
                                                   singular values are floored, not divided by)
"""

from __future__ import annotations

import numpy as np

GUARD = 1e-5


def preprocess_table(table: np.ndarray, counts: np.ndarray, method: str) -> np.ndarray:
    """table (V, d), counts (V,) training-token counts → preprocessed (V, d), same dtype."""
    if method == "none":
        return table
    weights = counts / counts.sum() if counts.sum() > 0 else np.full(len(counts), 1 / len(counts))
    data = table.astype(np.float64)
    mean = weights @ data
    centred = data - mean
    if method == "mean":
        out = centred
    elif method == "standardize":
        std = np.sqrt(weights @ (centred * centred))
        out = centred / np.maximum(std, GUARD)
    elif method == "whiten":
        weighted = centred * np.sqrt(weights)[:, None]
        _, s, vt = np.linalg.svd(weighted, full_matrices=False)
        out = (centred @ vt.T) / np.maximum(s, GUARD * max(s[0], GUARD))
    else:
        raise KeyError(f"unknown preprocessing {method!r}")
    return out.astype(table.dtype)

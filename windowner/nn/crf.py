"""Sentence-level training (Collobert et al. 2011, §3.3.2): a linear-chain CRF over window scores.

A sentence of T tokens has window scores U (T, C) (the network's output, one row per token).
With tag transitions A (C, C) (``A[i, j]``: tag i followed by tag j), start scores π (C,) and
end scores η (C,), a tag path y = y_1 … y_T scores

    s(y) = π[y_1] + Σ_t U[t, y_t] + Σ_{t≥2} A[y_{t−1}, y_t] + η[y_T].

Collobert's sentence-level log-likelihood has π (his A_0) but no η; η costs one (C,) vector and
lets the model learn how sentences end (η = 0 gives his objective exactly).

CRF (SLL)       J = mean over sentences of  logsumexp_ŷ s(ŷ) − s(y)
structured      J = mean over sentences of  max_ŷ [margin · Hamming(y, ŷ) + s(ŷ)] − s(y)
hinge               (≥ 0: ŷ = y is a candidate, so the outer max(0, ·) never binds)

Both are computed for a batch of sentences of different lengths at once: sentences are sorted
longest first and padded to (S, L, C), so at position t the sentences still that long are a
prefix ``[:active[t]]`` and the loop runs over positions only (as decode.viterbi_batch).

Optional hard constraints (``decode.allowed_transitions``: IOB2, no ``I-X`` after anything but
``B-X``/``I-X`` and none at a start) set disallowed transitions to −inf, in training (the
partition sum runs over valid paths only) as in decoding. Everything is computed in float64;
gradients come back in the dtype of the input they belong to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Constraints = tuple[np.ndarray, np.ndarray]  # ((C, C) bool allowed[prev, next], (C,) bool start)


@dataclass(frozen=True)
class SentenceLayout:
    """Flat tokens (N,) of S sentences delimited by ``bounds`` (S + 1,) ↔ padded (S', L, ·).

    S' counts the non-empty sentences, sorted longest first (stable). ``rank[s']`` is the index
    of padded row s' in the original order, ``first[s']`` the flat index of its first token.
    ``active[t]`` (L,) is how many padded rows have a token at position t (a prefix).
    ``row[n]``, ``pos[n]`` (N,) place flat token n in the padded array.
    """

    rank: np.ndarray
    lengths: np.ndarray
    first: np.ndarray
    active: np.ndarray
    row: np.ndarray
    pos: np.ndarray

    @classmethod
    def from_bounds(cls, bounds: np.ndarray, n_tokens: int) -> SentenceLayout:
        bounds = np.asarray(bounds, dtype=np.int64)
        lengths = np.diff(bounds)
        if bounds[0] != 0 or bounds[-1] != n_tokens or np.any(lengths < 0):
            raise ValueError(f"sentence bounds must rise from 0 to {n_tokens} (the token count)")
        order = np.argsort(-lengths, kind="stable")
        order = order[lengths[order] > 0]
        lengths = lengths[order]
        first = bounds[:-1][order]
        longest = int(lengths[0]) if len(lengths) else 0
        active = len(lengths) - np.searchsorted(lengths[::-1], np.arange(longest), side="right")
        offsets = np.cumsum(lengths) - lengths  # where each row starts in padded-row order
        pos_sorted = np.arange(n_tokens) - np.repeat(offsets, lengths)
        flat = np.repeat(first, lengths) + pos_sorted  # flat index of the k-th token in row order
        row = np.empty(n_tokens, dtype=np.int64)
        pos = np.empty(n_tokens, dtype=np.int64)
        row[flat] = np.repeat(np.arange(len(order)), lengths)
        pos[flat] = pos_sorted
        return cls(order, lengths, first, active, row, pos)

    @property
    def n_sentences(self) -> int:
        return len(self.lengths)

    @property
    def last(self) -> np.ndarray:
        """(S',) flat index of each padded row's last token."""
        return self.first + self.lengths - 1

    def pad(self, flat: np.ndarray) -> np.ndarray:
        """(N, C) → (S', L, C) float64, zeros past each sentence's end."""
        out = np.zeros((self.n_sentences, len(self.active), flat.shape[1]), dtype=np.float64)
        out[self.row, self.pos] = flat
        return out

    def unpad(self, padded: np.ndarray) -> np.ndarray:
        """(S', L, C) → (N, C)."""
        return padded[self.row, self.pos]


def effective_transitions(
    A: np.ndarray, start: np.ndarray, end: np.ndarray | None, constraints: Constraints | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 (A, π, η) with −inf where ``constraints`` disallow; η = 0 when ``end`` is None."""
    A64 = np.asarray(A, dtype=np.float64)
    start64 = np.asarray(start, dtype=np.float64)
    end64 = np.zeros(len(start64)) if end is None else np.asarray(end, dtype=np.float64)
    if constraints is not None:
        allowed, allowed_start = constraints
        A64 = np.where(allowed, A64, -np.inf)
        start64 = np.where(allowed_start, start64, -np.inf)
    return A64, start64, end64


def _logsumexp_prev(x: np.ndarray) -> np.ndarray:
    """log Σ_i exp x[k, i, j] → (k, C), stable; −inf (not NaN) where every term is −inf."""
    m = x.max(axis=1)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return m + np.log(np.exp(x - m[:, None, :]).sum(axis=1))


def _logsumexp_next(x: np.ndarray) -> np.ndarray:
    """log Σ_j exp x[k, i, j] → (k, C)."""
    return _logsumexp_prev(x.transpose(0, 2, 1))


def forward_messages(
    U: np.ndarray, A: np.ndarray, start: np.ndarray, lay: SentenceLayout, use_max: bool = False
) -> np.ndarray:
    """Forward algorithm on padded scores U (S', L, C) → α (S', L, C):

        α[0, j] = π[j] + U[0, j],   α[t, j] = ⊕_i (α[t−1, i] + A[i, j]) + U[t, j]

    with ⊕ = logsumexp (sum-product), or max (Viterbi scores, ``use_max``). Padding is 0.
    """
    alpha = np.zeros_like(U)
    if U.shape[1] == 0:
        return alpha
    alpha[:, 0] = start + U[:, 0]
    reduce = (lambda x: x.max(axis=1)) if use_max else _logsumexp_prev
    for t in range(1, U.shape[1]):
        k = int(lay.active[t])
        alpha[:k, t] = reduce(alpha[:k, t - 1, :, None] + A) + U[:k, t]
    return alpha


def backward_messages(
    U: np.ndarray, A: np.ndarray, end: np.ndarray, lay: SentenceLayout, use_max: bool = False
) -> np.ndarray:
    """Backward algorithm → β (S', L, C): β[T−1, i] = η[i] at each sentence's last token,

    β[t, i] = ⊕_j (A[i, j] + U[t+1, j] + β[t+1, j])   for t < T − 1.
    """
    beta = np.zeros_like(U)
    L = U.shape[1]
    if L == 0:
        return beta
    beta[:, L - 1] = end
    reduce = (lambda x: x.max(axis=2)) if use_max else _logsumexp_next
    for t in range(L - 2, -1, -1):
        k_next, k = int(lay.active[t + 1]), int(lay.active[t])
        beta[:k_next, t] = reduce(A + (U[:k_next, t + 1] + beta[:k_next, t + 1])[:, None, :])
        beta[k_next:k, t] = end  # sentences whose last token is at t
    return beta


def final_scores(alpha: np.ndarray, end: np.ndarray, lay: SentenceLayout) -> np.ndarray:
    """(S', C) α at each sentence's last token plus η."""
    return alpha[np.arange(lay.n_sentences), lay.lengths - 1] + end


def path_scores(
    scores: np.ndarray,
    tags: np.ndarray,
    bounds: np.ndarray,
    A: np.ndarray,
    start: np.ndarray,
    end: np.ndarray | None = None,
) -> np.ndarray:
    """s(y) of the path ``tags`` (N,) in every sentence → (S,) float64 (0 for empty ones)."""
    tags = np.asarray(tags, dtype=np.int64)
    bounds = np.asarray(bounds, dtype=np.int64)
    n_tokens = len(tags)
    sent = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
    unary = scores[np.arange(n_tokens), tags].astype(np.float64)
    is_first = np.zeros(n_tokens, dtype=bool)
    is_first[bounds[:-1][np.diff(bounds) > 0]] = True
    inner = np.flatnonzero(~is_first)
    trans = np.zeros(n_tokens)
    trans[inner] = A[tags[inner - 1], tags[inner]]
    trans[is_first] = start[tags[is_first]]
    if end is not None:
        is_last = np.zeros(n_tokens, dtype=bool)
        is_last[bounds[1:][np.diff(bounds) > 0] - 1] = True
        trans[is_last] += end[tags[is_last]]
    return np.bincount(sent, weights=unary + trans, minlength=len(bounds) - 1)


def path_counts(
    tags: np.ndarray, lay: SentenceLayout, n_tags: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How often the path ``tags`` (N,) uses each transition, start and end tag, summed over
    sentences → ((C, C), (C,), (C,)) float64: ∂s(y)/∂A, ∂s(y)/∂π, ∂s(y)/∂η."""
    n_tokens = len(tags)
    is_first = np.zeros(n_tokens, dtype=bool)
    is_first[lay.first] = True
    inner = np.flatnonzero(~is_first)
    pairs = tags[inner - 1] * n_tags + tags[inner]
    dA = np.bincount(pairs, minlength=n_tags * n_tags).reshape(n_tags, n_tags)
    dstart = np.bincount(tags[lay.first], minlength=n_tags)
    dend = np.bincount(tags[lay.last], minlength=n_tags)
    return dA.astype(np.float64), dstart.astype(np.float64), dend.astype(np.float64)


def _check_inputs(scores: np.ndarray, tags: np.ndarray | None, A: np.ndarray) -> None:
    """Shapes: scores (N, C), tags (N,) in [0, C), A (C, C)."""
    N, C = scores.shape
    if A.shape != (C, C):
        raise ValueError(f"transitions have shape {A.shape}, expected {(C, C)}")
    if tags is not None and (tags.shape != (N,) or (N and (tags.min() < 0 or tags.max() >= C))):
        raise ValueError(f"gold tags must be {N} ids in [0, {C})")


@dataclass(frozen=True)
class CRFGrads:
    """Gradients of a sentence-level loss: dscores (N, C), dA (C, C), dstart (C,), and dend
    (C,) when end scores were given (else None). Zero at entries the constraints disallow."""

    dscores: np.ndarray
    dA: np.ndarray  # noqa: N815 - the gradient of the transition matrix A
    dstart: np.ndarray
    dend: np.ndarray | None


@dataclass(frozen=True)
class CRFCache:
    """What crf_backward needs: padded scores U and forward messages α (S', L, C), log Z (S',),
    the effective (A, π, η), the layout, gold tags (N,), and the dtypes to return."""

    U: np.ndarray
    alpha: np.ndarray
    log_z: np.ndarray
    trans: tuple[np.ndarray, np.ndarray, np.ndarray]
    lay: SentenceLayout
    tags: np.ndarray
    dtypes: tuple[np.dtype, np.dtype, np.dtype, np.dtype | None]


def _onehot(tags: np.ndarray, n_tags: int) -> np.ndarray:
    out = np.zeros((len(tags), n_tags))
    out[np.arange(len(tags)), tags] = 1.0
    return out


def _gold_scores(
    scores: np.ndarray, tags: np.ndarray, bounds: np.ndarray, lay: SentenceLayout, trans: tuple
) -> np.ndarray:
    """(S',) s(y) of the gold path per padded row; a path the constraints forbid → ValueError."""
    gold = path_scores(scores, tags, bounds, *trans)[lay.rank]
    if not np.all(np.isfinite(gold)):
        bad = int(lay.rank[np.flatnonzero(~np.isfinite(gold))[0]])
        raise ValueError(f"gold tags of sentence {bad} break the transition constraints")
    return gold


def crf_forward(
    scores: np.ndarray,
    tags: np.ndarray,
    bounds: np.ndarray,
    A: np.ndarray,
    start: np.ndarray,
    end: np.ndarray | None = None,
    constraints: Constraints | None = None,
) -> tuple[float, CRFCache]:
    """Sentence-level log-likelihood loss → (J, cache).

    scores (N, C) window scores of all tokens, tags (N,) gold tag ids, bounds (S + 1,)
    sentence bounds (``Encoded.sent_bounds``), A (C, C), start (C,), end (C,) or None.
    J = (1/S') Σ_s [log Z_s − s(y_s)], log Z_s = logsumexp_j(α_s[T−1, j] + η[j]); S' is the
    number of non-empty sentences (J = 0 when there are none).
    """
    tags = np.asarray(tags, dtype=np.int64)
    _check_inputs(scores, tags, A)
    lay = SentenceLayout.from_bounds(bounds, len(tags))
    trans = effective_transitions(A, start, end, constraints)
    U = lay.pad(scores)
    alpha = forward_messages(U, trans[0], trans[1], lay)
    last = final_scores(alpha, trans[2], lay)
    log_z = _logsumexp_prev(last[:, :, None])[:, 0] if len(last) else np.zeros(0)
    gold = _gold_scores(scores, tags, bounds, lay, trans)
    loss = float(np.sum(log_z - gold)) / max(lay.n_sentences, 1)
    dtypes = (scores.dtype, A.dtype, start.dtype, None if end is None else end.dtype)
    return loss, CRFCache(U, alpha, log_z, trans, lay, tags, dtypes)


def expected_transitions(
    U: np.ndarray,
    alpha: np.ndarray,
    beta: np.ndarray,
    log_z: np.ndarray,
    A: np.ndarray,
    lay: SentenceLayout,
) -> np.ndarray:
    """E[#(i → j)] summed over sentences → (C, C): Σ_s Σ_{t≥1} ξ_s,t(i, j) with the edge
    marginal ξ_t(i, j) = exp(α[t−1, i] + A[i, j] + U[t, j] + β[t, j] − log Z)."""
    out = np.zeros_like(A)
    for t in range(1, U.shape[1]):
        k = int(lay.active[t])
        right = (U[:k, t] + beta[:k, t] - log_z[:k, None])[:, None, :]
        out += np.exp(alpha[:k, t - 1, :, None] + A + right).sum(axis=0)
    return out


def crf_backward(cache: CRFCache) -> CRFGrads:
    """Gradients of crf_forward's J from the forward–backward marginals:

    ∂J/∂U[t, j] = (p(y_t = j) − [y_t = j]) / S',   p(y_t = j) = exp(α[t, j] + β[t, j] − log Z)
    ∂J/∂A[i, j] = (Σ_t ξ_t(i, j) − #gold(i → j)) / S'
    ∂J/∂π[j]    = (p(y_1 = j) − [y_1 = j]) / S',   ∂J/∂η[j] = (p(y_T = j) − [y_T = j]) / S'
    """
    A, start, end = cache.trans
    lay, C = cache.lay, A.shape[0]
    n = max(lay.n_sentences, 1)
    beta = backward_messages(cache.U, A, end, lay)
    marg = np.exp(lay.unpad(cache.alpha) + lay.unpad(beta) - cache.log_z[lay.row][:, None])
    gold_A, gold_start, gold_end = path_counts(cache.tags, lay, C)
    dscores = (marg - _onehot(cache.tags, C)) / n
    dA = (expected_transitions(cache.U, cache.alpha, beta, cache.log_z, A, lay) - gold_A) / n
    dstart = (marg[lay.first].sum(axis=0) - gold_start) / n
    dend = (marg[lay.last].sum(axis=0) - gold_end) / n
    ds, da, dst, de = cache.dtypes
    return CRFGrads(
        dscores.astype(ds),
        dA.astype(da),
        dstart.astype(dst),
        None if de is None else dend.astype(de),
    )


def crf_loss(
    scores: np.ndarray,
    tags: np.ndarray,
    bounds: np.ndarray,
    A: np.ndarray,
    start: np.ndarray,
    end: np.ndarray | None = None,
    constraints: Constraints | None = None,
) -> tuple[float, CRFGrads]:
    """crf_forward then crf_backward → (J, grads)."""
    loss, cache = crf_forward(scores, tags, bounds, A, start, end, constraints)
    return loss, crf_backward(cache)


def _viterbi_padded(
    U: np.ndarray, A: np.ndarray, start: np.ndarray, end: np.ndarray, lay: SentenceLayout
) -> tuple[np.ndarray, np.ndarray]:
    """Best path per padded row → (path (S', L) int64, its score (S',)). Ties go to the lower
    tag id, as in decode.viterbi_batch."""
    S, L, C = U.shape
    delta = start + U[:, 0]  # (S', C); rows that have ended keep their last value
    back = np.zeros((S, L, C), dtype=np.int64)
    cols = np.arange(C)
    for t in range(1, L):
        k = int(lay.active[t])
        cand = delta[:k, :, None] + A  # (k, prev, next)
        back[:k, t] = cand.argmax(axis=1)
        delta[:k] = cand[np.arange(k)[:, None], back[:k, t], cols] + U[:k, t]
    final = delta + end
    path = np.zeros((S, L), dtype=np.int64)
    rows = np.arange(S)
    path[rows, lay.lengths - 1] = final.argmax(axis=1)
    for t in range(L - 1, 0, -1):
        k = int(lay.active[t])
        path[:k, t - 1] = back[rows[:k], t, path[:k, t]]
    return path, final.max(axis=1)


def viterbi_decode(
    scores: np.ndarray,
    bounds: np.ndarray,
    A: np.ndarray,
    start: np.ndarray,
    end: np.ndarray | None = None,
    constraints: Constraints | None = None,
) -> np.ndarray:
    """argmax_y s(y) for every sentence: scores (N, C), bounds (S + 1,) → tag ids (N,).

    With A = 0, start = end = 0 and IOB2 ``constraints`` this is decode.viterbi_batch."""
    _check_inputs(scores, None, A)
    lay = SentenceLayout.from_bounds(bounds, len(scores))
    if lay.n_sentences == 0:
        return np.zeros(len(scores), dtype=np.int64)
    trans = effective_transitions(A, start, end, constraints)
    path, _ = _viterbi_padded(lay.pad(scores), *trans, lay)
    return path[lay.row, lay.pos]


@dataclass(frozen=True)
class HingeCache:
    """What structured_hinge_backward needs: the loss-augmented best path and the gold path
    (N,) each, the layout, and the dtypes to return."""

    best: np.ndarray
    tags: np.ndarray
    lay: SentenceLayout
    n_tags: int
    dtypes: tuple[np.dtype, np.dtype, np.dtype, np.dtype | None]


def loss_augmented(scores: np.ndarray, tags: np.ndarray, margin: float) -> np.ndarray:
    """(N, C) float64 scores + margin · [j ≠ y_t]: s(ŷ) on these is s(ŷ) + margin · Hamming."""
    return scores.astype(np.float64) + margin * (1.0 - _onehot(tags, scores.shape[1]))


def structured_hinge_forward(
    scores: np.ndarray,
    tags: np.ndarray,
    bounds: np.ndarray,
    A: np.ndarray,
    start: np.ndarray,
    end: np.ndarray | None = None,
    margin: float = 1.0,
    constraints: Constraints | None = None,
) -> tuple[float, HingeCache]:
    """Structured hinge J = (1/S') Σ_s max_ŷ [margin · Hamming(y_s, ŷ) + s(ŷ)] − s(y_s).

    The max is one Viterbi pass on the loss-augmented scores; shapes as crf_forward.
    """
    tags = np.asarray(tags, dtype=np.int64)
    _check_inputs(scores, tags, A)
    lay = SentenceLayout.from_bounds(bounds, len(tags))
    trans = effective_transitions(A, start, end, constraints)
    _gold_scores(scores, tags, bounds, lay, trans)  # refuses a gold path the constraints forbid
    augmented = loss_augmented(scores, tags, margin)
    best = viterbi_decode(augmented, bounds, *trans)
    # both paths scored by one summation, so ŷ = y gives exactly 0; max(0, ·) only drops the
    # rounding of a tie that Viterbi broke towards a path other than y
    excess = path_scores(augmented, best, bounds, *trans) - path_scores(
        augmented, tags, bounds, *trans
    )
    loss = float(np.sum(np.maximum(excess, 0.0))) / max(lay.n_sentences, 1)
    dtypes = (scores.dtype, A.dtype, start.dtype, None if end is None else end.dtype)
    return loss, HingeCache(best, tags, lay, scores.shape[1], dtypes)


def structured_hinge_backward(cache: HingeCache) -> CRFGrads:
    """Subgradient of structured_hinge_forward's J (exact away from ties of the max):

    ∂J/∂U = (onehot(ŷ) − onehot(y)) / S',  ∂J/∂A = (#ŷ(i → j) − #y(i → j)) / S', and the same
    difference of first-tag (π) and last-tag (η) counts; 0 where ŷ = y.
    """
    lay, C = cache.lay, cache.n_tags
    n = max(lay.n_sentences, 1)
    pred_A, pred_start, pred_end = path_counts(cache.best, lay, C)
    gold_A, gold_start, gold_end = path_counts(cache.tags, lay, C)
    dscores = (_onehot(cache.best, C) - _onehot(cache.tags, C)) / n
    ds, da, dst, de = cache.dtypes
    return CRFGrads(
        dscores.astype(ds),
        ((pred_A - gold_A) / n).astype(da),
        ((pred_start - gold_start) / n).astype(dst),
        None if de is None else ((pred_end - gold_end) / n).astype(de),
    )


def structured_hinge_loss(
    scores: np.ndarray,
    tags: np.ndarray,
    bounds: np.ndarray,
    A: np.ndarray,
    start: np.ndarray,
    end: np.ndarray | None = None,
    margin: float = 1.0,
    constraints: Constraints | None = None,
) -> tuple[float, CRFGrads]:
    """structured_hinge_forward then structured_hinge_backward → (J, grads)."""
    loss, cache = structured_hinge_forward(scores, tags, bounds, A, start, end, margin, constraints)
    return loss, structured_hinge_backward(cache)


def hinge_kink_gap(
    scores: np.ndarray,
    tags: np.ndarray,
    bounds: np.ndarray,
    A: np.ndarray,
    start: np.ndarray,
    end: np.ndarray | None = None,
    margin: float = 1.0,
    constraints: Constraints | None = None,
) -> float:
    """Smallest gap, over sentences, between the best and second-best loss-augmented path
    scores (inf when no sentence has two paths): where it is > 0 the hinge is locally linear.

    The second-best path differs from the best ŷ at some (t, j ≠ ŷ_t), so its score is the
    largest max-marginal α_max[t, j] + β_max[t, j] off the best path.
    """
    lay = SentenceLayout.from_bounds(bounds, len(tags))
    if lay.n_sentences == 0:
        return float("inf")
    A64, start64, end64 = effective_transitions(A, start, end, constraints)
    U = lay.pad(loss_augmented(scores, np.asarray(tags, dtype=np.int64), margin))
    alpha = forward_messages(U, A64, start64, lay, use_max=True)
    beta = backward_messages(U, A64, end64, lay, use_max=True)
    max_marg = lay.unpad(alpha + beta)  # (N, C) best score of a path through (t, j)
    best = final_scores(alpha, end64, lay).max(axis=1)
    tol = 1e-9 * np.maximum(1.0, np.abs(best))[lay.row][:, None]  # rounding of α + β
    on_best = np.abs(max_marg - best[lay.row][:, None]) <= tol
    first_best = np.argmax(on_best, axis=1)  # ŷ_t (lowest id on ties: then the gap is ~0)
    max_marg[np.arange(len(max_marg)), first_best] = -np.inf
    second = np.full(lay.n_sentences, -np.inf)
    np.maximum.at(second, lay.row, max_marg.max(axis=1))
    return float(np.min(best - second))

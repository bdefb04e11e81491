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


@dataclass(frozen=True)
class Transitions:
    """The CRF's own parameters: A (C, C) with ``A[i, j]`` scoring tag i followed by tag j,
    start scores π (C,), end scores η (C,) or None (then η = 0 and there is no dend), and
    optional hard ``constraints`` (``decode.allowed_transitions(tags)``)."""

    A: np.ndarray
    start: np.ndarray
    end: np.ndarray | None = None
    constraints: Constraints | None = None

    @property
    def n_tags(self) -> int:
        return len(self.start)

    def effective(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """float64 (A, π, η) with −inf where the constraints disallow; η = 0 when end is None."""
        A = np.asarray(self.A, dtype=np.float64)
        start = np.asarray(self.start, dtype=np.float64)
        end = np.zeros(self.n_tags) if self.end is None else np.asarray(self.end, np.float64)
        if self.constraints is not None:
            allowed, allowed_start = self.constraints
            A = np.where(allowed, A, -np.inf)
            start = np.where(allowed_start, start, -np.inf)
        return A, start, end

    def check(self, scores: np.ndarray, tags: np.ndarray | None) -> None:
        """ValueError unless scores (N, C), A (C, C), start/end (C,) and tags (N,) in [0, C)."""
        N, C = scores.shape
        shapes = [self.A.shape, self.start.shape] + ([] if self.end is None else [self.end.shape])
        if shapes[0] != (C, C) or any(s != (C,) for s in shapes[1:]):
            raise ValueError(f"transition shapes {shapes} do not fit {C} tags")
        if tags is not None and (tags.shape != (N,) or (N and (tags.min() < 0 or tags.max() >= C))):
            raise ValueError(f"gold tags must be {N} ids in [0, {C})")


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


@dataclass(frozen=True)
class CRFGrads:
    """Gradients of a sentence-level loss: dscores (N, C), dA (C, C), dstart (C,), and dend
    (C,) when end scores were given (else None), each in its parameter's dtype. Zero at the
    entries the constraints disallow."""

    dscores: np.ndarray
    dA: np.ndarray  # noqa: N815 - the gradient of the transition matrix A
    dstart: np.ndarray
    dend: np.ndarray | None

    @classmethod
    def cast(cls, scores: np.ndarray, trans: Transitions, dscores, dA, dstart, dend) -> CRFGrads:
        """float64 gradients → the dtypes of ``scores`` and ``trans``; dend only with an end."""
        return cls(
            dscores.astype(scores.dtype),
            dA.astype(trans.A.dtype),
            dstart.astype(trans.start.dtype),
            None if trans.end is None else dend.astype(trans.end.dtype),
        )


@dataclass(frozen=True)
class CRFCache:
    """What crf_backward needs: the inputs, padded scores U and forward messages α (S', L, C),
    log Z (S',), the effective float64 (A, π, η) and the layout."""

    scores: np.ndarray
    tags: np.ndarray
    trans: Transitions
    U: np.ndarray
    alpha: np.ndarray
    log_z: np.ndarray
    effective: tuple[np.ndarray, np.ndarray, np.ndarray]
    lay: SentenceLayout


def _onehot(tags: np.ndarray, n_tags: int) -> np.ndarray:
    out = np.zeros((len(tags), n_tags))
    out[np.arange(len(tags)), tags] = 1.0
    return out


def _gold_scores(
    scores: np.ndarray, tags: np.ndarray, bounds: np.ndarray, lay: SentenceLayout, effective
) -> np.ndarray:
    """(S',) s(y) of the gold path per padded row; a path the constraints forbid → ValueError."""
    gold = path_scores(scores, tags, bounds, *effective)[lay.rank]
    if not np.all(np.isfinite(gold)):
        bad = int(lay.rank[np.flatnonzero(~np.isfinite(gold))[0]])
        raise ValueError(f"gold tags of sentence {bad} break the transition constraints")
    return gold


def crf_forward(
    scores: np.ndarray, tags: np.ndarray, bounds: np.ndarray, trans: Transitions
) -> tuple[float, CRFCache]:
    """Sentence-level log-likelihood loss → (J, cache).

    scores (N, C) window scores of all tokens, tags (N,) gold tag ids, bounds (S + 1,)
    sentence bounds (``Encoded.sent_bounds``). J = (1/S') Σ_s [log Z_s − s(y_s)] with
    log Z_s = logsumexp_j(α_s[T−1, j] + η[j]); S' counts the non-empty sentences (J = 0 if none).
    """
    tags = np.asarray(tags, dtype=np.int64)
    trans.check(scores, tags)
    lay = SentenceLayout.from_bounds(bounds, len(tags))
    effective = trans.effective()
    U = lay.pad(scores)
    alpha = forward_messages(U, effective[0], effective[1], lay)
    last = final_scores(alpha, effective[2], lay)
    log_z = _logsumexp_prev(last[:, :, None])[:, 0]
    gold = _gold_scores(scores, tags, bounds, lay, effective)
    loss = float(np.sum(log_z - gold)) / max(lay.n_sentences, 1)
    return loss, CRFCache(scores, tags, trans, U, alpha, log_z, effective, lay)


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
    A, _, end = cache.effective
    lay, C = cache.lay, A.shape[0]
    n = max(lay.n_sentences, 1)
    beta = backward_messages(cache.U, A, end, lay)
    marg = np.exp(lay.unpad(cache.alpha) + lay.unpad(beta) - cache.log_z[lay.row][:, None])
    gold_A, gold_start, gold_end = path_counts(cache.tags, lay, C)
    return CRFGrads.cast(
        cache.scores,
        cache.trans,
        (marg - _onehot(cache.tags, C)) / n,
        (expected_transitions(cache.U, cache.alpha, beta, cache.log_z, A, lay) - gold_A) / n,
        (marg[lay.first].sum(axis=0) - gold_start) / n,
        (marg[lay.last].sum(axis=0) - gold_end) / n,
    )


def crf_loss(
    scores: np.ndarray, tags: np.ndarray, bounds: np.ndarray, trans: Transitions
) -> tuple[float, CRFGrads]:
    """crf_forward then crf_backward → (J, grads)."""
    loss, cache = crf_forward(scores, tags, bounds, trans)
    return loss, crf_backward(cache)


def token_marginals(scores: np.ndarray, bounds: np.ndarray, trans: Transitions) -> np.ndarray:
    """p(y_t = j | sentence) for every token: scores (N, C), bounds (S + 1,) → (N, C), rows
    summing to 1 (forward–backward; a confidence for the tags Viterbi picks). Computed with
    rescaled probabilities (``scaled_marginals``: products, no logsumexp), or in log space
    (``log_marginals``) when a rescaled message underflows."""
    trans.check(scores, None)
    lay = SentenceLayout.from_bounds(bounds, len(scores))
    marginals = scaled_marginals(scores, lay, *trans.effective())
    return marginals if marginals is not None else log_marginals(scores, lay, trans)


def log_marginals(scores: np.ndarray, lay: SentenceLayout, trans: Transitions) -> np.ndarray:
    """``token_marginals`` from the log-space messages α, β (the training objective's)."""
    A, start, end = trans.effective()
    U = lay.pad(scores)
    alpha = forward_messages(U, A, start, lay)
    beta = backward_messages(U, A, end, lay)
    log_z = _logsumexp_prev(final_scores(alpha, end, lay)[:, :, None])[:, 0]
    return np.exp(lay.unpad(alpha) + lay.unpad(beta) - log_z[lay.row][:, None])


def _shifted_exp(x: np.ndarray, axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(exp(x − m), m), m the largest entry of x (over ``axis``; 0 where it is not finite):
    entries in [0, 1], 0 for −inf; m has x's shape without ``axis`` (a scalar without one)."""
    m = np.max(x, axis=axis, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.exp(x - (m if axis is None else np.expand_dims(m, axis))), m


RESCALE = 4  # positions between two rescalings of the messages
TINY = 1e-200  # a message sum this small is taken as underflow (float64 reaches 1e-308)


def scaled_marginals(
    scores: np.ndarray, lay: SentenceLayout, A: np.ndarray, start: np.ndarray, end: np.ndarray
) -> np.ndarray | None:
    """Token marginals from forward–backward in probability space (``_scaled_messages``):
    p(y_t) = α̂[t] ∘ β̂[t] / its sum (each scale is a constant per position, so it cancels).
    None when a message sums to 0 (scores so far apart that a float64 product underflows):
    the caller then works in log space."""
    e = lay.pad(_shifted_exp(np.asarray(scores, dtype=np.float64), axis=1)[0])  # (S', L, C)
    E, pi, eta = (_shifted_exp(x)[0] for x in (A, start, end))
    with np.errstate(invalid="ignore", divide="ignore"):  # an underflow gives NaN: None
        messages = _scaled_messages(e, lay, E, pi, eta)
        if messages is None:
            return None
        alpha, beta, _ = messages
        joint = lay.unpad(alpha) * lay.unpad(beta)
        marginals = joint / joint.sum(axis=1, keepdims=True)
    return marginals if np.isfinite(marginals).all() else None


def _scaled_messages(
    e: np.ndarray, lay: SentenceLayout, E: np.ndarray, pi: np.ndarray, eta: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Forward–backward in probability space (Rabiner's scaling), on e (S', L, C) =
    exp(U − a shift per token), E = exp(A − a shift), π̂, η̂ (C,) likewise:

        a[0] = π̂ ∘ e[0],   a[t] = (α̂[t−1] E) ∘ e[t],   β̂[T−1] = η̂,   b[t] = E (e[t+1] ∘ β̂[t+1])

    with α̂[t] = a[t] / c[t] and β̂[t] = b[t] / (its sum) at every RESCALE-th position (and the
    first), c[t] = Σ_j a[t, j] there and 1 elsewhere: entries of E and e are ≤ 1, so between
    two rescalings a message grows at most C^RESCALE-fold, and a sum under TINY means it was
    shrinking towards float64's underflow.

    → α̂, β̂ (S', L, C) (zero past each row's end; views of time-major arrays) and the scales
    c (S', L) (1 past the end): α[t] = log α̂[t] + Σ_{τ≤t} log c[τ] + the shifts, so log Z
    needs no logsumexp. None when a sum falls under TINY (or is not finite): the caller then
    works in log space."""
    S, L, C = e.shape
    e_t = np.ascontiguousarray(e.transpose(1, 0, 2))  # (L, S', C): row blocks [t, :k] contiguous
    alpha, beta, right = np.zeros_like(e_t), np.zeros_like(e_t), np.empty((S, C))
    scale = np.ones((L, S))
    sums: list[np.ndarray] = []
    if L:
        np.multiply(pi, e_t[0], out=alpha[0])
        beta[L - 1] = eta
    for t in range(L):
        k = int(lay.active[t])
        if t:
            np.matmul(alpha[t - 1, :k], E, out=alpha[t, :k])
            alpha[t, :k] *= e_t[t, :k]
        if t % RESCALE == 0:
            c = scale[t, :k] = alpha[t, :k].sum(axis=1)
            alpha[t, :k] /= c[:, None]
            sums.append(c)
    for t in range(L - 2, -1, -1):
        k_next, k = int(lay.active[t + 1]), int(lay.active[t])
        np.multiply(e_t[t + 1, :k_next], beta[t + 1, :k_next], out=right[:k_next])
        np.matmul(right[:k_next], E.T, out=beta[t, :k_next])
        if t % RESCALE == 0:
            b = beta[t, :k_next].sum(axis=1)
            beta[t, :k_next] /= b[:, None]
            sums.append(b)
        beta[t, k_next:k] = eta  # sentences whose last token is at t
    if sums and not np.all(np.concatenate(sums) >= TINY):  # also False for NaN
        return None
    return alpha.transpose(1, 0, 2), beta.transpose(1, 0, 2), scale.T


def crf_loss_scaled(
    scores: np.ndarray, tags: np.ndarray, bounds: np.ndarray, trans: Transitions
) -> tuple[float, CRFGrads] | None:
    """``crf_loss`` (the same J and gradients, to float64 rounding) for training: the
    messages in probability space (``_scaled_messages``: two small products per position and
    a rescaling every RESCALE-th, where log space takes a logsumexp over (S', C, C)), and the
    edge marginals of every position at once,

        ξ_t(i, j) = α̂[t−1, i] E[i, j] e[t, j] β̂[t, j] / Σ_ij (the same),  (summed over t
                    by one matrix product)

    log Z_s = Σ_t log c[t] + Σ_t max U[t] + max π + (T−1) max A + max η + log(α̂[T−1] · η̂).
    None when a message underflows (or there is no sentence): the caller then uses the
    log-space ``crf_loss``."""
    tags = np.asarray(tags, dtype=np.int64)
    trans.check(scores, tags)
    lay = SentenceLayout.from_bounds(bounds, len(tags))
    if lay.n_sentences == 0:
        return None
    effective = trans.effective()
    gold = _gold_scores(scores, tags, bounds, lay, effective)
    (E, m_A), (pi, m_start), (eta, m_end) = (_shifted_exp(x) for x in effective)
    e, m_U = _shifted_exp(lay.pad(scores), axis=2)  # (S', L, C) and (S', L): 1 and 0 past the end
    T = lay.lengths
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        messages = _scaled_messages(e, lay, E, pi, eta)
        if messages is None:
            return None
        alpha, beta, scale = messages
        last = alpha[np.arange(lay.n_sentences), T - 1]
        log_z = np.log(scale).sum(axis=1) + m_U.sum(axis=1) + m_start + (T - 1) * m_A + m_end
        log_z += np.log(last @ eta)
        joint = lay.unpad(alpha) * lay.unpad(beta)
        marg = joint / joint.sum(axis=1, keepdims=True)
        # Σ_ij ξ_t(i, j) before normalising is (α̂[t−1] E) · r[t], r[t] = e[t] ∘ β̂[t]; and
        # Σ_t ξ_t = E ∘ Σ_t (α̂[t−1] / that sum)ᵀ r[t]: one product over all positions
        left, right = alpha[:, :-1], e[:, 1:] * beta[:, 1:]  # (S', L − 1, C)
        edge = np.arange(1, len(lay.active)) < T[:, None]  # (S', L − 1): position t < T
        weight = np.zeros(edge.shape)
        weight[edge] = 1.0 / ((left @ E) * right).sum(axis=2)[edge]
        C = len(E)
        expected = E * ((left * weight[:, :, None]).reshape(-1, C).T @ right.reshape(-1, C))
    if not (np.isfinite(log_z).all() and np.isfinite(marg).all() and np.isfinite(expected).all()):
        return None
    n = lay.n_sentences
    gold_A, gold_start, gold_end = path_counts(tags, lay, C)
    return float(np.sum(log_z - gold)) / n, CRFGrads.cast(
        scores,
        trans,
        (marg - _onehot(tags, C)) / n,
        (expected - gold_A) / n,
        (marg[lay.first].sum(axis=0) - gold_start) / n,
        (marg[lay.last].sum(axis=0) - gold_end) / n,
    )


def _viterbi_padded(
    U: np.ndarray, A: np.ndarray, start: np.ndarray, end: np.ndarray, lay: SentenceLayout
) -> np.ndarray:
    """Best path per padded row → (S', L) int64. Ties go to the lower tag id, as in
    decode.viterbi_batch. Rows that have ended keep their last δ while the rest go on."""
    S, L, C = U.shape
    delta = start + U[:, 0]  # (S', C)
    back = np.zeros((S, L, C), dtype=np.int64)
    cols = np.arange(C)
    for t in range(1, L):
        k = int(lay.active[t])
        cand = delta[:k, :, None] + A  # (k, prev, next)
        back[:k, t] = cand.argmax(axis=1)
        delta[:k] = cand[np.arange(k)[:, None], back[:k, t], cols] + U[:k, t]
    path = np.zeros((S, L), dtype=np.int64)
    rows = np.arange(S)
    path[rows, lay.lengths - 1] = (delta + end).argmax(axis=1)
    for t in range(L - 1, 0, -1):
        k = int(lay.active[t])
        path[:k, t - 1] = back[rows[:k], t, path[:k, t]]
    return path


def viterbi_decode(scores: np.ndarray, bounds: np.ndarray, trans: Transitions) -> np.ndarray:
    """argmax_y s(y) for every sentence: scores (N, C), bounds (S + 1,) → tag ids (N,).

    With A = 0, start = 0, no end and IOB2 constraints this is decode.viterbi_batch."""
    trans.check(scores, None)
    lay = SentenceLayout.from_bounds(bounds, len(scores))
    if lay.n_sentences == 0:
        return np.zeros(len(scores), dtype=np.int64)
    path = _viterbi_padded(lay.pad(scores), *trans.effective(), lay)
    return path[lay.row, lay.pos]


@dataclass(frozen=True)
class HingeCache:
    """What structured_hinge_backward needs: the inputs, the loss-augmented best path (N,) and
    the layout."""

    scores: np.ndarray
    tags: np.ndarray
    trans: Transitions
    best: np.ndarray
    lay: SentenceLayout


def loss_augmented(scores: np.ndarray, tags: np.ndarray, margin: float) -> np.ndarray:
    """(N, C) float64 scores + margin · [j ≠ y_t]: s(ŷ) on these is s(ŷ) + margin · Hamming."""
    return scores.astype(np.float64) + margin * (1.0 - _onehot(tags, scores.shape[1]))


def structured_hinge_forward(
    scores: np.ndarray, tags: np.ndarray, bounds: np.ndarray, trans: Transitions, margin: float
) -> tuple[float, HingeCache]:
    """Structured hinge J = (1/S') Σ_s max_ŷ [margin · Hamming(y_s, ŷ) + s(ŷ)] − s(y_s).

    The max is one Viterbi pass on the loss-augmented scores; shapes as crf_forward.
    """
    tags = np.asarray(tags, dtype=np.int64)
    trans.check(scores, tags)
    lay = SentenceLayout.from_bounds(bounds, len(tags))
    effective = trans.effective()
    _gold_scores(scores, tags, bounds, lay, effective)  # refuses a gold path the constraints forbid
    augmented = loss_augmented(scores, tags, margin)
    best = viterbi_decode(augmented, bounds, trans)
    # both paths scored by one summation, so ŷ = y gives exactly 0; max(0, ·) only drops the
    # rounding of a tie that Viterbi broke towards a path other than y
    best_score = path_scores(augmented, best, bounds, *effective)
    excess = best_score - path_scores(augmented, tags, bounds, *effective)
    loss = float(np.sum(np.maximum(excess, 0.0))) / max(lay.n_sentences, 1)
    return loss, HingeCache(scores, tags, trans, best, lay)


def structured_hinge_backward(cache: HingeCache) -> CRFGrads:
    """Subgradient of structured_hinge_forward's J (exact away from ties of the max):

    ∂J/∂U = (onehot(ŷ) − onehot(y)) / S',  ∂J/∂A = (#ŷ(i → j) − #y(i → j)) / S', and the same
    difference of first-tag (π) and last-tag (η) counts; 0 where ŷ = y.
    """
    lay, C = cache.lay, cache.trans.n_tags
    n = max(lay.n_sentences, 1)
    pred = path_counts(cache.best, lay, C)
    gold = path_counts(cache.tags, lay, C)
    diffs = [(p - g) / n for p, g in zip(pred, gold, strict=True)]
    dscores = (_onehot(cache.best, C) - _onehot(cache.tags, C)) / n
    return CRFGrads.cast(cache.scores, cache.trans, dscores, *diffs)


def structured_hinge_loss(
    scores: np.ndarray, tags: np.ndarray, bounds: np.ndarray, trans: Transitions, margin: float
) -> tuple[float, CRFGrads]:
    """structured_hinge_forward then structured_hinge_backward → (J, grads)."""
    loss, cache = structured_hinge_forward(scores, tags, bounds, trans, margin)
    return loss, structured_hinge_backward(cache)


def hinge_kink_gap(
    scores: np.ndarray, tags: np.ndarray, bounds: np.ndarray, trans: Transitions, margin: float
) -> float:
    """Smallest gap, over sentences, between the best and second-best loss-augmented path
    scores (inf when no sentence has two paths): where it is > 0 the hinge is locally linear.

    The second-best path differs from the best ŷ at some (t, j ≠ ŷ_t), so its score is the
    largest max-marginal α_max[t, j] + β_max[t, j] off the best path.
    """
    lay = SentenceLayout.from_bounds(bounds, len(tags))
    if lay.n_sentences == 0:
        return float("inf")
    A, start, end = trans.effective()
    U = lay.pad(loss_augmented(scores, np.asarray(tags, dtype=np.int64), margin))
    alpha = forward_messages(U, A, start, lay, use_max=True)
    beta = backward_messages(U, A, end, lay, use_max=True)
    max_marg = lay.unpad(alpha + beta)  # (N, C) best score of a path through (t, j)
    best = final_scores(alpha, end, lay).max(axis=1)
    tol = 1e-9 * np.maximum(1.0, np.abs(best))[lay.row][:, None]  # rounding of α + β
    on_best = np.abs(max_marg - best[lay.row][:, None]) <= tol
    first_best = np.argmax(on_best, axis=1)  # ŷ_t (lowest id on ties: then the gap is ~0)
    max_marg[np.arange(len(max_marg)), first_best] = -np.inf
    second = np.full(lay.n_sentences, -np.inf)
    np.maximum.at(second, lay.row, max_marg.max(axis=1))
    return float(np.min(best - second))

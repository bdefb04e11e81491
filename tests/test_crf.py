"""Sentence-level losses (windowner/nn/crf.py): brute force over all paths, central differences
in float64, Viterbi against enumeration and against decode.viterbi_batch, float32 stability."""

from __future__ import annotations

import itertools
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from windowner.decode import allowed_transitions, viterbi_batch
from windowner.gradcheck import KINK_GAP, TOLERANCE, check_gradients
from windowner.nn.crf import (
    CRFGrads,
    SentenceLayout,
    Transitions,
    crf_forward,
    crf_loss,
    crf_loss_scaled,
    hinge_kink_gap,
    log_marginals,
    path_scores,
    scaled_marginals,
    structured_hinge_loss,
    token_marginals,
    viterbi_decode,
)
from windowner.nn.model import sentence_loss

TAGS_5 = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
TAGS_9 = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
TAG_SETS = {5: TAGS_5, 9: TAGS_9}


def bounds_of(lengths: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def random_problem(
    rng: np.random.Generator, n_tags: int, lengths: list[int], scale: float = 1.0, end=True
) -> tuple[np.ndarray, np.ndarray, Transitions]:
    """Scores (N, C), the bounds of ``lengths`` and transitions, all drawn N(0, scale²)."""
    bounds = bounds_of(lengths)
    scores = rng.normal(0.0, scale, (int(bounds[-1]), n_tags))
    A = rng.normal(0.0, scale, (n_tags, n_tags))
    start, end_scores = rng.normal(0.0, scale, n_tags), rng.normal(0.0, scale, n_tags)
    return scores, bounds, Transitions(A, start, end_scores if end else None)


def constrained(trans: Transitions) -> Transitions:
    """The same parameters with the IOB2 constraints of the 5- or 9-tag set."""
    return replace(trans, constraints=allowed_transitions(TAG_SETS[trans.n_tags]))


def valid_tags(rng: np.random.Generator, n_tags: int, bounds: np.ndarray) -> np.ndarray:
    """Random gold tags that obey the IOB2 rules: the constrained best path of random scores."""
    noise = rng.normal(size=(int(bounds[-1]), n_tags))
    return viterbi_batch(noise, bounds, *allowed_transitions(TAG_SETS[n_tags]))


def enumerate_scores(scores: np.ndarray, trans: Transitions) -> tuple[np.ndarray, np.ndarray]:
    """Every allowed path of one sentence, scores (T, C), and s(ŷ) by the definition →
    (paths (P, T), scores (P,))."""
    T, C = scores.shape
    paths = np.array(list(itertools.product(range(C), repeat=T)), dtype=np.int64)
    end = np.zeros(C) if trans.end is None else trans.end
    total = scores[np.arange(T), paths].sum(axis=1) + trans.start[paths[:, 0]] + end[paths[:, -1]]
    total = total + trans.A[paths[:, :-1], paths[:, 1:]].sum(axis=1)
    if trans.constraints is not None:
        allowed, allowed_start = trans.constraints
        ok = allowed_start[paths[:, 0]] & allowed[paths[:, :-1], paths[:, 1:]].all(axis=1)
        paths, total = paths[ok], total[ok]
    return paths, total


def sentences(bounds: np.ndarray) -> list[slice]:
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def gold_score(scores: np.ndarray, tags: np.ndarray, trans: Transitions) -> float:
    """s(y) of one sentence by the definition (no constraints)."""
    end = 0.0 if trans.end is None else trans.end[tags[-1]]
    inner = trans.A[tags[:-1], tags[1:]].sum()
    return float(scores[np.arange(len(tags)), tags].sum() + trans.start[tags[0]] + inner + end)


def logsumexp(x: np.ndarray) -> float:
    m = x.max()
    return float(m + np.log(np.exp(x - m).sum()))


def max_rel_errors(loss_fn, scores: np.ndarray, trans: Transitions, grads: CRFGrads) -> dict:
    """gradcheck.check_gradients over scores, A, start (and end): every entry perturbed in
    place, central differences, relative error with its rounding floor → {name: error}."""
    params = {"scores": scores, "A": trans.A, "start": trans.start}
    named = {"scores": grads.dscores, "A": grads.dA, "start": grads.dstart}
    if trans.end is not None:
        params["end"], named["end"] = trans.end, grads.dend
    holder = SimpleNamespace(params=params)
    result = check_gradients(holder, loss_fn, named, np.random.default_rng(0))
    assert set(result) == set(params)
    return {name: err for name, (err, _, _) in result.items()}


LENGTHS_1_TO_7 = [3, 1, 7, 2, 5, 4, 6]


@pytest.mark.parametrize("n_tags", [5, 9])
@pytest.mark.parametrize("use_constraints", [False, True])
def test_crf_gradients_match_central_differences(n_tags: int, use_constraints: bool) -> None:
    rng = np.random.default_rng(n_tags + 10 * use_constraints)
    scores, bounds, trans = random_problem(rng, n_tags, LENGTHS_1_TO_7)
    trans = constrained(trans) if use_constraints else trans
    tags = valid_tags(rng, n_tags, bounds)
    _, grads = crf_loss(scores, tags, bounds, trans)
    errors = max_rel_errors(
        lambda: crf_forward(scores, tags, bounds, trans)[0], scores, trans, grads
    )
    assert max(errors.values()) < TOLERANCE, errors


def test_crf_without_end_scores_has_no_end_gradient() -> None:
    rng = np.random.default_rng(3)
    scores, bounds, trans = random_problem(rng, 5, LENGTHS_1_TO_7, end=False)
    tags = rng.integers(0, 5, len(scores))
    _, grads = crf_loss(scores, tags, bounds, trans)
    assert grads.dend is None
    errors = max_rel_errors(
        lambda: crf_forward(scores, tags, bounds, trans)[0], scores, trans, grads
    )
    assert max(errors.values()) < TOLERANCE, errors


@pytest.mark.parametrize("use_constraints", [False, True])
def test_crf_loss_equals_brute_force_enumeration(use_constraints: bool) -> None:
    rng = np.random.default_rng(4)
    scores, bounds, trans = random_problem(rng, 5, [1, 4, 0, 2, 5, 3], scale=2.0)
    trans = constrained(trans) if use_constraints else trans
    tags = valid_tags(rng, 5, bounds)
    expected = [
        logsumexp(enumerate_scores(scores[s], trans)[1]) - gold_score(scores[s], tags[s], trans)
        for s in sentences(bounds)
    ]
    loss, _ = crf_forward(scores, tags, bounds, trans)
    assert loss == pytest.approx(np.mean(expected), rel=1e-12)
    gold = path_scores(scores, tags, bounds, trans.A, trans.start, trans.end)
    by_definition = [gold_score(scores[s], tags[s], trans) for s in sentences(bounds)]
    np.testing.assert_allclose(gold[np.diff(bounds) > 0], by_definition, rtol=1e-12)


def test_marginals_from_gradient_match_enumeration() -> None:
    """dscores · S' + onehot(y) is p(y_t = j): compare with path probabilities summed."""
    rng = np.random.default_rng(5)
    scores, bounds, trans = random_problem(rng, 5, [4])
    tags = rng.integers(0, 5, 4)
    _, grads = crf_loss(scores, tags, bounds, trans)
    paths, totals = enumerate_scores(scores, trans)
    prob = np.exp(totals - logsumexp(totals))
    expected = np.stack([np.bincount(paths[:, t], prob, minlength=5) for t in range(4)])
    np.testing.assert_allclose(grads.dscores + np.eye(5)[tags], expected, atol=1e-12)


@pytest.mark.parametrize("use_constraints", [False, True])
def test_token_marginals_match_enumeration(use_constraints: bool) -> None:
    rng = np.random.default_rng(13)
    scores, bounds, trans = random_problem(rng, 5, [3, 0, 1, 4], scale=2.0)
    trans = constrained(trans) if use_constraints else trans
    marginals = token_marginals(scores, bounds, trans)
    for s in sentences(bounds):
        paths, totals = enumerate_scores(scores[s], trans)
        prob = np.exp(totals - logsumexp(totals))
        T = s.stop - s.start
        expected = np.stack([np.bincount(paths[:, t], prob, minlength=5) for t in range(T)])
        np.testing.assert_allclose(marginals[s], expected, atol=1e-12)


@pytest.mark.parametrize("use_constraints", [False, True])
@pytest.mark.parametrize("scale", [0.1, 3.0, 30.0])
def test_scaled_marginals_equal_the_log_space_ones(use_constraints: bool, scale: float) -> None:
    """The rescaled probability-space forward–backward (prediction's) = the log-space one
    (training's), on long and short sentences, with and without end scores."""
    rng = np.random.default_rng(int(scale * 10) + use_constraints)
    for with_end in (False, True):
        lengths = [int(n) for n in rng.integers(0, 60, 12)] + [1, 0, 120]
        scores, bounds, trans = random_problem(rng, 9, lengths, scale=scale, end=with_end)
        trans = constrained(trans) if use_constraints else trans
        lay = SentenceLayout.from_bounds(bounds, len(scores))
        scaled = scaled_marginals(scores, lay, *trans.effective())
        assert scaled is not None
        np.testing.assert_allclose(scaled, log_marginals(scores, lay, trans), rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(token_marginals(scores, bounds, trans), scaled, rtol=0, atol=0)


def test_marginals_fall_back_to_log_space_when_products_underflow() -> None:
    """Scores 2000 apart underflow float64 products (exp(−2000) = 0): the scaled pass gives
    None and ``token_marginals`` answers from log space, still exact."""
    rng = np.random.default_rng(2)
    scores, bounds, trans = random_problem(rng, 5, [4, 3])
    trans = replace(trans, A=np.where(np.eye(5, dtype=bool), -2000.0, 0.0))  # no tag repeats
    scores[:, 0] = 2000.0  # ... but every token wants tag 0
    lay = SentenceLayout.from_bounds(bounds, len(scores))
    assert scaled_marginals(scores, lay, *trans.effective()) is None
    marginals = token_marginals(scores, bounds, trans)
    np.testing.assert_allclose(marginals, log_marginals(scores, lay, trans))
    np.testing.assert_allclose(marginals.sum(axis=1), 1.0)


@pytest.mark.parametrize("use_constraints", [False, True])
@pytest.mark.parametrize("scale", [0.1, 3.0, 30.0])
def test_scaled_crf_loss_equals_the_log_space_one(use_constraints: bool, scale: float) -> None:
    """The training fast path's CRF (probability-space messages, every edge marginal at once)
    = crf_loss to float64 rounding: loss and every gradient, long and short sentences (and
    an empty one), with and without end scores."""
    rng = np.random.default_rng(int(scale * 10) + use_constraints)
    for with_end in (False, True):
        lengths = [int(n) for n in rng.integers(0, 40, 8)] + [1, 0, 60]
        scores, bounds, trans = random_problem(rng, 9, lengths, scale=scale, end=with_end)
        trans = constrained(trans) if use_constraints else trans
        tags = valid_tags(rng, 9, bounds)
        loss, want = crf_loss(scores, tags, bounds, trans)
        got_loss, got = crf_loss_scaled(scores, tags, bounds, trans)
        assert got_loss == pytest.approx(loss, rel=1e-12)
        for name in ("dscores", "dA", "dstart", "dend"):
            if getattr(want, name) is None:
                assert getattr(got, name) is None
                continue
            np.testing.assert_allclose(getattr(got, name), getattr(want, name), atol=1e-12)


def test_scaled_crf_loss_gradients_match_central_differences() -> None:
    rng = np.random.default_rng(12)
    scores, bounds, trans = random_problem(rng, 9, LENGTHS_1_TO_7)
    trans = constrained(trans)
    tags = valid_tags(rng, 9, bounds)
    _, grads = crf_loss_scaled(scores, tags, bounds, trans)
    errors = max_rel_errors(
        lambda: crf_loss_scaled(scores, tags, bounds, trans)[0], scores, trans, grads
    )
    assert max(errors.values()) < TOLERANCE, errors


def test_scaled_crf_loss_gives_way_to_log_space_when_products_underflow() -> None:
    """The underflow of the marginals test: None, and the fast path's sentence loss then
    equals the log-space one exactly; an empty batch is left to crf_loss too."""
    rng = np.random.default_rng(2)
    scores, bounds, trans = random_problem(rng, 5, [4, 3])
    trans = replace(trans, A=np.where(np.eye(5, dtype=bool), -2000.0, 0.0))
    scores[:, 0] = 2000.0
    tags = np.array([0, 1, 0, 2, 0, 1, 0])
    assert crf_loss_scaled(scores, tags, bounds, trans) is None
    spec = SimpleNamespace(objective="crf")
    fast = sentence_loss(spec, trans, scores, tags, bounds, fast=True)
    reference = sentence_loss(spec, trans, scores, tags, bounds)
    assert fast[0] == reference[0]
    np.testing.assert_array_equal(fast[1], reference[1])
    empty = crf_loss_scaled(np.zeros((0, 5)), np.zeros(0, np.int64), np.array([0, 0]), trans)
    assert empty is None


@pytest.mark.parametrize("use_constraints", [False, True])
@pytest.mark.parametrize("with_end", [False, True])
@pytest.mark.parametrize(("n_tags", "lengths"), [(5, [5, 1, 0, 3, 4, 2]), (9, [3, 1, 4, 2])])
def test_viterbi_equals_brute_force(
    use_constraints: bool, with_end: bool, n_tags: int, lengths: list[int]
) -> None:
    rng = np.random.default_rng(6)
    scores, bounds, trans = random_problem(rng, n_tags, lengths, end=with_end)
    trans = constrained(trans) if use_constraints else trans
    path = viterbi_decode(scores, bounds, trans)
    for s in sentences(bounds):
        paths, totals = enumerate_scores(scores[s], trans)
        np.testing.assert_array_equal(path[s], paths[np.argmax(totals)])


def test_viterbi_with_zero_transitions_is_decode_viterbi_batch() -> None:
    rng = np.random.default_rng(7)
    bounds = bounds_of(list(rng.integers(0, 12, 40)))
    scores = rng.normal(size=(int(bounds[-1]), 9))
    cons = allowed_transitions(TAGS_9)
    trans = Transitions(np.zeros((9, 9)), np.zeros(9), constraints=cons)
    np.testing.assert_array_equal(
        viterbi_decode(scores, bounds, trans), viterbi_batch(scores, bounds, *cons)
    )


def test_structured_hinge_equals_brute_force() -> None:
    rng = np.random.default_rng(8)
    scores, bounds, trans = random_problem(rng, 5, [3, 1, 4, 2])
    tags = rng.integers(0, 5, len(scores))
    margin = 0.7
    expected = []
    for s in sentences(bounds):
        paths, totals = enumerate_scores(scores[s], trans)
        hamming = (paths != tags[s]).sum(axis=1)
        expected.append(np.max(totals + margin * hamming) - gold_score(scores[s], tags[s], trans))
    loss, _ = structured_hinge_loss(scores, tags, bounds, trans, margin)
    assert loss == pytest.approx(np.mean(expected), rel=1e-12)
    assert loss > 0.0


def kink_free_hinge_problem(n_tags: int, seed: int, use_constraints: bool = False):
    """A random batch (lengths 1..7) redrawn until the best loss-augmented path of every
    sentence beats the second best by more than KINK_GAP."""
    rng = np.random.default_rng(seed)
    for _ in range(200):
        scores, bounds, trans = random_problem(rng, n_tags, LENGTHS_1_TO_7)
        trans = constrained(trans) if use_constraints else trans
        tags = valid_tags(rng, n_tags, bounds)
        if hinge_kink_gap(scores, tags, bounds, trans, 1.0) > KINK_GAP:
            return scores, tags, bounds, trans
    raise RuntimeError("no kink-free example")


@pytest.mark.parametrize("n_tags", [5, 9])
@pytest.mark.parametrize("use_constraints", [False, True])
def test_structured_hinge_gradients_away_from_kinks(n_tags: int, use_constraints: bool) -> None:
    scores, tags, bounds, trans = kink_free_hinge_problem(n_tags, n_tags, use_constraints)
    _, grads = structured_hinge_loss(scores, tags, bounds, trans, 1.0)
    assert np.abs(grads.dscores).sum() > 0  # some sentence is in the margin
    errors = max_rel_errors(
        lambda: structured_hinge_loss(scores, tags, bounds, trans, 1.0)[0], scores, trans, grads
    )
    assert max(errors.values()) < TOLERANCE, errors


def test_hinge_kink_gap_equals_brute_force_second_best() -> None:
    rng = np.random.default_rng(9)
    scores, bounds, trans = random_problem(rng, 5, [4, 1, 3])
    tags = rng.integers(0, 5, len(scores))
    gaps = []
    for s in sentences(bounds):
        paths, totals = enumerate_scores(scores[s], trans)
        augmented = np.sort(totals + (paths != tags[s]).sum(axis=1))
        gaps.append(augmented[-1] - augmented[-2])
    assert hinge_kink_gap(scores, tags, bounds, trans, 1.0) == pytest.approx(min(gaps), rel=1e-9)


def test_structured_hinge_is_zero_when_gold_wins_by_the_margin() -> None:
    rng = np.random.default_rng(10)
    scores, bounds, trans = random_problem(rng, 5, LENGTHS_1_TO_7, scale=0.1)
    tags = rng.integers(0, 5, len(scores))
    scores[np.arange(len(tags)), tags] += 10.0
    loss, grads = structured_hinge_loss(scores, tags, bounds, trans, 1.0)
    assert loss == 0.0
    assert not np.any(grads.dscores) and not np.any(grads.dA) and not np.any(grads.dstart)


def as_dtype(trans: Transitions, dtype) -> Transitions:
    return replace(
        trans, A=trans.A.astype(dtype), start=trans.start.astype(dtype), end=trans.end.astype(dtype)
    )


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_float32_inputs_are_stable_and_keep_their_dtype(scale: float) -> None:
    rng = np.random.default_rng(11)
    scores, bounds, trans = random_problem(rng, 9, LENGTHS_1_TO_7 * 5, scale=scale)
    tags = valid_tags(rng, 9, bounds)
    scores32, trans32 = scores.astype(np.float32), as_dtype(constrained(trans), np.float32)
    loss32, g32 = crf_loss(scores32, tags, bounds, trans32)
    loss64, g64 = crf_loss(scores32.astype(np.float64), tags, bounds, as_dtype(trans32, np.float64))
    assert np.isfinite(loss32) and loss32 == pytest.approx(loss64, rel=1e-12)
    for name in ("dscores", "dA", "dstart", "dend"):
        a32, a64 = getattr(g32, name), getattr(g64, name)
        assert a32.dtype == np.float32 and np.all(np.isfinite(a32)), name
        np.testing.assert_allclose(a32, a64, rtol=1e-5, atol=1e-7)
    hinge, hinge_grads = structured_hinge_loss(scores32, tags, bounds, trans32, 1.0)
    assert np.isfinite(hinge) and hinge_grads.dscores.dtype == np.float32
    path = viterbi_decode(scores32, bounds, trans32)
    np.testing.assert_array_equal(path, viterbi_decode(scores32, bounds, as_dtype(trans32, float)))


def test_gold_path_breaking_constraints_is_refused() -> None:
    rng = np.random.default_rng(12)
    scores, bounds, trans = random_problem(rng, 5, [2, 3])
    tags = np.array([0, 0, 2, 0, 0])  # sentence 1 starts with I-LOC
    with pytest.raises(ValueError, match="sentence 1"):
        crf_forward(scores, tags, bounds, constrained(trans))
    with pytest.raises(ValueError, match="sentence 1"):
        structured_hinge_loss(scores, tags, bounds, constrained(trans), 1.0)


def test_layout_pads_and_unpads_every_token() -> None:
    bounds = bounds_of([2, 0, 5, 1, 5, 3])
    lay = SentenceLayout.from_bounds(bounds, int(bounds[-1]))
    flat = np.arange(2 * bounds[-1], dtype=np.float64).reshape(-1, 2)
    padded = lay.pad(flat)
    assert padded.shape == (5, 5, 2)
    np.testing.assert_array_equal(lay.lengths, [5, 5, 3, 2, 1])
    np.testing.assert_array_equal(lay.rank, [2, 4, 5, 0, 3])
    np.testing.assert_array_equal(lay.active, [5, 4, 3, 2, 2])
    np.testing.assert_array_equal(lay.unpad(padded), flat)
    np.testing.assert_array_equal(padded[0, :5], flat[2:7])


def test_bad_bounds_and_shapes_are_refused() -> None:
    scores, tags = np.zeros((4, 3)), np.zeros(4, dtype=np.int64)
    trans = Transitions(np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="bounds"):
        crf_forward(scores, tags, np.array([0, 3]), trans)
    with pytest.raises(ValueError, match="transition shapes"):
        crf_forward(scores, tags, np.array([0, 4]), replace(trans, A=np.zeros((2, 2))))
    with pytest.raises(ValueError, match="transition shapes"):
        crf_forward(scores, tags, np.array([0, 4]), replace(trans, end=np.zeros(2)))
    with pytest.raises(ValueError, match="gold tags"):
        crf_forward(scores, tags + 3, np.array([0, 4]), trans)


def test_empty_batch_has_zero_loss() -> None:
    scores, tags = np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
    trans = Transitions(np.eye(3), np.ones(3), np.ones(3))
    loss, grads = crf_loss(scores, tags, np.array([0, 0]), trans)
    assert loss == 0.0 and grads.dscores.shape == (0, 3) and not np.any(grads.dA)
    assert structured_hinge_loss(scores, tags, np.array([0]), trans, 1.0)[0] == 0.0
    assert viterbi_decode(scores, np.array([0]), trans).shape == (0,)

"""Sentence-level losses (windowner/nn/crf.py): brute force over all paths, central differences
in float64, Viterbi against enumeration and against decode.viterbi_batch, float32 stability."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from windowner.decode import allowed_transitions, viterbi_batch
from windowner.gradcheck import EPS, KINK_GAP, TOLERANCE, relative_error, roundoff
from windowner.nn.crf import (
    SentenceLayout,
    crf_forward,
    crf_loss,
    hinge_kink_gap,
    path_scores,
    structured_hinge_loss,
    viterbi_decode,
)

TAGS_5 = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
TAGS_9 = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
TAG_SETS = {5: TAGS_5, 9: TAGS_9}


def bounds_of(lengths: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def random_problem(rng: np.random.Generator, n_tags: int, lengths: list[int], scale: float = 1.0):
    """Scores (N, C), A, start, end drawn N(0, scale²), and the bounds of ``lengths``."""
    bounds = bounds_of(lengths)
    scores = rng.normal(0.0, scale, (int(bounds[-1]), n_tags))
    A = rng.normal(0.0, scale, (n_tags, n_tags))
    return scores, bounds, A, rng.normal(0.0, scale, n_tags), rng.normal(0.0, scale, n_tags)


def valid_tags(rng: np.random.Generator, n_tags: int, bounds: np.ndarray) -> np.ndarray:
    """Random gold tags that obey the IOB2 rules: the constrained best path of random scores."""
    noise = rng.normal(size=(int(bounds[-1]), n_tags))
    return viterbi_batch(noise, bounds, *allowed_transitions(TAG_SETS[n_tags]))


def all_paths(n_tags: int, length: int) -> np.ndarray:
    """(C^T, T) every tag path of one sentence."""
    return np.array(list(itertools.product(range(n_tags), repeat=length)), dtype=np.int64)


def enumerate_scores(scores, A, start, end, constraints=None) -> tuple[np.ndarray, np.ndarray]:
    """s(ŷ) of every path of one sentence (T, C), by the definition → (paths, scores)."""
    T, C = scores.shape
    paths = all_paths(C, T)
    total = scores[np.arange(T), paths].sum(axis=1) + start[paths[:, 0]] + end[paths[:, -1]]
    total = total + A[paths[:, :-1], paths[:, 1:]].sum(axis=1)
    if constraints is not None:
        allowed, allowed_start = constraints
        ok = allowed_start[paths[:, 0]] & allowed[paths[:, :-1], paths[:, 1:]].all(axis=1)
        paths, total = paths[ok], total[ok]
    return paths, total


def logsumexp(x: np.ndarray) -> float:
    m = x.max()
    return float(m + np.log(np.exp(x - m).sum()))


def numeric_max_rel_error(loss_fn, param: np.ndarray, analytic: np.ndarray) -> float:
    """Largest relative error of ``analytic`` against central differences of ``loss_fn``
    over every entry of ``param`` (perturbed in place), with gradcheck's rounding floor."""
    noise = roundoff(loss_fn())
    worst = 0.0
    for ix in np.ndindex(param.shape):
        old = param[ix]
        param[ix] = old + EPS
        plus = loss_fn()
        param[ix] = old - EPS
        minus = loss_fn()
        param[ix] = old
        numeric = (plus - minus) / (2 * EPS)
        worst = max(worst, float(relative_error(np.float64(analytic[ix]), numeric, noise)))
    return worst


LENGTHS_1_TO_7 = [3, 1, 7, 2, 5, 4, 6]


@pytest.mark.parametrize("n_tags", [5, 9])
@pytest.mark.parametrize("constrained", [False, True])
def test_crf_gradients_match_central_differences(n_tags: int, constrained: bool) -> None:
    rng = np.random.default_rng(n_tags + 10 * constrained)
    scores, bounds, A, start, end = random_problem(rng, n_tags, LENGTHS_1_TO_7)
    tags = valid_tags(rng, n_tags, bounds)
    cons = allowed_transitions(TAG_SETS[n_tags]) if constrained else None

    def loss() -> float:
        return crf_forward(scores, tags, bounds, A, start, end, cons)[0]

    _, grads = crf_loss(scores, tags, bounds, A, start, end, cons)
    for name, param, grad in [
        ("scores", scores, grads.dscores),
        ("A", A, grads.dA),
        ("start", start, grads.dstart),
        ("end", end, grads.dend),
    ]:
        err = numeric_max_rel_error(loss, param, grad)
        assert err < TOLERANCE, (name, err)


def test_crf_without_end_scores_returns_no_end_gradient() -> None:
    rng = np.random.default_rng(3)
    scores, bounds, A, start, _ = random_problem(rng, 5, LENGTHS_1_TO_7)
    tags = rng.integers(0, 5, len(scores))
    _, grads = crf_loss(scores, tags, bounds, A, start)
    assert grads.dend is None
    err = numeric_max_rel_error(lambda: crf_forward(scores, tags, bounds, A, start)[0], A, grads.dA)
    assert err < TOLERANCE


@pytest.mark.parametrize("constrained", [False, True])
def test_crf_loss_equals_brute_force_enumeration(constrained: bool) -> None:
    rng = np.random.default_rng(4)
    lengths = [1, 4, 0, 2, 5, 3]
    scores, bounds, A, start, end = random_problem(rng, 5, lengths, scale=2.0)
    tags = valid_tags(rng, 5, bounds)
    cons = allowed_transitions(TAGS_5) if constrained else None
    expected = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b > a:
            _, totals = enumerate_scores(scores[a:b], A, start, end, cons)
            gold = path_scores(scores[a:b], tags[a:b], np.array([0, b - a]), A, start, end)[0]
            expected.append(logsumexp(totals) - gold)
    loss, _ = crf_forward(scores, tags, bounds, A, start, end, cons)
    assert loss == pytest.approx(np.mean(expected), rel=1e-12)


def test_marginals_from_gradient_match_enumeration() -> None:
    """dscores · S' + onehot(y) is p(y_t = j): compare with path probabilities summed."""
    rng = np.random.default_rng(5)
    scores, bounds, A, start, end = random_problem(rng, 5, [4])
    tags = rng.integers(0, 5, 4)
    _, grads = crf_loss(scores, tags, bounds, A, start, end)
    paths, totals = enumerate_scores(scores, A, start, end)
    prob = np.exp(totals - logsumexp(totals))
    expected = np.stack([np.bincount(paths[:, t], prob, minlength=5) for t in range(4)])
    onehot = np.eye(5)[tags]
    np.testing.assert_allclose(grads.dscores + onehot, expected, atol=1e-12)


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("with_end", [False, True])
def test_viterbi_equals_brute_force(constrained: bool, with_end: bool) -> None:
    rng = np.random.default_rng(6)
    lengths = [5, 1, 0, 3, 4, 2]
    scores, bounds, A, start, end = random_problem(rng, 5, lengths)
    cons = allowed_transitions(TAGS_5) if constrained else None
    end_arg = end if with_end else None
    path = viterbi_decode(scores, bounds, A, start, end_arg, cons)
    end_used = end if with_end else np.zeros(5)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b > a:
            paths, totals = enumerate_scores(scores[a:b], A, start, end_used, cons)
            np.testing.assert_array_equal(path[a:b], paths[np.argmax(totals)])


def test_viterbi_with_zero_transitions_is_decode_viterbi_batch() -> None:
    rng = np.random.default_rng(7)
    lengths = list(rng.integers(0, 12, 40))
    bounds = bounds_of(lengths)
    scores = rng.normal(size=(int(bounds[-1]), 9))
    allowed, allowed_start = allowed_transitions(TAGS_9)
    zeros = np.zeros(9)
    ours = viterbi_decode(scores, bounds, np.zeros((9, 9)), zeros, zeros, (allowed, allowed_start))
    np.testing.assert_array_equal(ours, viterbi_batch(scores, bounds, allowed, allowed_start))


def test_structured_hinge_equals_brute_force() -> None:
    rng = np.random.default_rng(8)
    lengths = [3, 1, 4, 2]
    scores, bounds, A, start, end = random_problem(rng, 5, lengths)
    tags = rng.integers(0, 5, len(scores))
    margin = 0.7
    expected = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        paths, totals = enumerate_scores(scores[a:b], A, start, end)
        hamming = (paths != tags[a:b]).sum(axis=1)
        gold = path_scores(scores[a:b], tags[a:b], np.array([0, b - a]), A, start, end)[0]
        expected.append(np.max(totals + margin * hamming) - gold)
    loss, _ = structured_hinge_loss(scores, tags, bounds, A, start, end, margin)
    assert loss == pytest.approx(np.mean(expected), rel=1e-12)
    assert loss >= 0.0


def kink_free_hinge_problem(n_tags: int, seed: int):
    """A random batch (lengths 1..7) redrawn until the best loss-augmented path of every
    sentence beats the second best by more than KINK_GAP."""
    rng = np.random.default_rng(seed)
    for _ in range(200):
        scores, bounds, A, start, end = random_problem(rng, n_tags, LENGTHS_1_TO_7)
        tags = rng.integers(0, n_tags, len(scores))
        if hinge_kink_gap(scores, tags, bounds, A, start, end, 1.0) > KINK_GAP:
            return scores, tags, bounds, A, start, end
    raise RuntimeError("no kink-free example")


@pytest.mark.parametrize("n_tags", [5, 9])
def test_structured_hinge_gradients_away_from_kinks(n_tags: int) -> None:
    scores, tags, bounds, A, start, end = kink_free_hinge_problem(n_tags, seed=n_tags)

    def loss() -> float:
        return structured_hinge_loss(scores, tags, bounds, A, start, end, 1.0)[0]

    _, grads = structured_hinge_loss(scores, tags, bounds, A, start, end, 1.0)
    assert np.abs(grads.dscores).sum() > 0  # some sentence is in the margin
    for name, param, grad in [
        ("scores", scores, grads.dscores),
        ("A", A, grads.dA),
        ("start", start, grads.dstart),
        ("end", end, grads.dend),
    ]:
        err = numeric_max_rel_error(loss, param, grad)
        assert err < TOLERANCE, (name, err)


def test_hinge_kink_gap_equals_brute_force_second_best() -> None:
    rng = np.random.default_rng(9)
    scores, bounds, A, start, end = random_problem(rng, 5, [4, 1, 3])
    tags = rng.integers(0, 5, len(scores))
    gaps = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        paths, totals = enumerate_scores(scores[a:b], A, start, end)
        aug = np.sort(totals + (paths != tags[a:b]).sum(axis=1))
        gaps.append(aug[-1] - aug[-2])
    gap = hinge_kink_gap(scores, tags, bounds, A, start, end, 1.0)
    assert gap == pytest.approx(min(gaps), rel=1e-9)


def test_structured_hinge_is_zero_when_gold_wins_by_the_margin() -> None:
    rng = np.random.default_rng(10)
    scores, bounds, A, start, end = random_problem(rng, 5, LENGTHS_1_TO_7, scale=0.1)
    tags = rng.integers(0, 5, len(scores))
    scores[np.arange(len(tags)), tags] += 10.0
    loss, grads = structured_hinge_loss(scores, tags, bounds, A, start, end, 1.0)
    assert loss == 0.0
    assert not np.any(grads.dscores) and not np.any(grads.dA) and not np.any(grads.dstart)


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_float32_inputs_are_stable_and_keep_their_dtype(scale: float) -> None:
    rng = np.random.default_rng(11)
    problem64 = random_problem(rng, 9, LENGTHS_1_TO_7 * 5, scale=scale)
    scores, bounds, A, start, end = problem64
    tags = valid_tags(rng, 9, bounds)
    cons = allowed_transitions(TAGS_9)
    f32 = [x.astype(np.float32) for x in (scores, A, start, end)]
    loss32, g32 = crf_loss(f32[0], tags, bounds, *f32[1:], constraints=cons)
    loss64, g64 = crf_loss(
        *(f32[0].astype(np.float64),),
        tags,
        bounds,
        *(x.astype(np.float64) for x in f32[1:]),
        constraints=cons,
    )
    assert np.isfinite(loss32) and loss32 == pytest.approx(loss64, rel=1e-12)
    for a32, a64 in zip(
        (g32.dscores, g32.dA, g32.dstart, g32.dend),
        (g64.dscores, g64.dA, g64.dstart, g64.dend),
        strict=True,
    ):
        assert a32.dtype == np.float32 and np.all(np.isfinite(a32))
        np.testing.assert_allclose(a32, a64, rtol=1e-5, atol=1e-7)
    hinge, hg = structured_hinge_loss(f32[0], tags, bounds, *f32[1:], constraints=cons)
    assert np.isfinite(hinge) and hg.dscores.dtype == np.float32
    assert np.all(np.isfinite(viterbi_decode(f32[0], bounds, *f32[1:], cons)))


def test_gold_path_breaking_constraints_is_refused() -> None:
    rng = np.random.default_rng(12)
    scores, bounds, A, start, end = random_problem(rng, 5, [2, 3])
    tags = np.array([0, 0, 2, 0, 0])  # sentence 1 starts with I-LOC
    with pytest.raises(ValueError, match="sentence 1"):
        crf_forward(scores, tags, bounds, A, start, end, allowed_transitions(TAGS_5))


def test_layout_pads_and_unpads_every_token() -> None:
    lengths = [2, 0, 5, 1, 5, 3]
    bounds = bounds_of(lengths)
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
    scores = np.zeros((4, 3))
    with pytest.raises(ValueError, match="bounds"):
        crf_forward(scores, np.zeros(4, dtype=int), np.array([0, 3]), np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="transitions"):
        crf_forward(scores, np.zeros(4, dtype=int), np.array([0, 4]), np.zeros((2, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="gold tags"):
        crf_forward(scores, np.full(4, 3), np.array([0, 4]), np.zeros((3, 3)), np.zeros(3))


def test_empty_batch_has_zero_loss() -> None:
    scores = np.zeros((0, 3))
    loss, grads = crf_loss(scores, np.zeros(0, dtype=int), np.array([0, 0]), np.eye(3), np.ones(3))
    assert loss == 0.0 and grads.dscores.shape == (0, 3) and not np.any(grads.dA)
    assert viterbi_decode(scores, np.array([0]), np.eye(3), np.ones(3)).shape == (0,)

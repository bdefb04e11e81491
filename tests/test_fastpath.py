"""The fast paths against the reference: fused training step, optimizer, row sums, inference,
batched Viterbi. Fast paths may sum in a different order, so float64 comparisons allow
rounding (1e-12); float32 ones 1e-5; what is exact is tested exactly."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from windowner.decode import allowed_transitions, decode_sentences, viterbi, viterbi_batch
from windowner.nn import fast, layers
from windowner.nn.activations import ACTIVATIONS
from windowner.nn.fast import train_step
from windowner.nn.layers import SparseGrad
from windowner.nn.losses import OBJECTIVES
from windowner.nn.rowitems import MIN_ROWS, gather_rows, row_items, scatter_rows
from windowner.optim.optimizers import OPTIMIZERS, Optimizer, OptimizerSettings

from .helpers import assert_grads_close, make_batch, make_model

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]


# ----------------------------------------------------------------------------- row sums


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_sort_ids_is_a_stable_argsort(n):
    ids = np.random.default_rng(n).integers(0, 5, n).astype(np.int32)
    sorted_ids, order = fast.sort_ids(ids)
    np.testing.assert_array_equal(order, np.argsort(ids, kind="stable"))
    np.testing.assert_array_equal(sorted_ids, np.sort(ids))


@pytest.mark.parametrize("vocab", [1, 3, 50, 2_000])  # all repeated … all distinct
@pytest.mark.parametrize("dim", [4, 5])  # even widths take the complex64 view, odd do not
def test_sum_window_rows_equals_sum_rows(vocab, dim):
    rng = np.random.default_rng(vocab)
    ids = rng.integers(0, vocab, (64, 5))
    block = rng.standard_normal((64, 5 * dim + 3)).astype(np.float32)
    rows = block[:, : 5 * dim].reshape(64, 5, dim)  # a strided column block, like dx's
    ref = layers.sum_rows(ids.reshape(-1), np.ascontiguousarray(rows).reshape(-1, dim))
    for got in (fast.sum_window_rows(ids, rows), fast.sum_window_rows_small(ids, rows, vocab)):
        np.testing.assert_array_equal(got.ids, ref.ids)
        np.testing.assert_allclose(got.rows, ref.rows, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("short", [1, 4, 8, 100])
def test_sum_window_rows_by_run_length(short):
    """Many runs of every length: singletons, short runs (passes), long runs (reduceat)."""
    rng = np.random.default_rng(short)
    ids = (rng.zipf(1.3, (600, 5)) % 3000).astype(np.int32)
    block = rng.standard_normal((600, 5 * 6 + 2))
    rows = block[:, :30].reshape(600, 5, 6)
    ref = layers.sum_rows(ids.reshape(-1), np.ascontiguousarray(rows).reshape(-1, 6))
    got = fast.sum_window_rows(ids, rows, fast.RowSource(rows), short=short)
    lengths = np.bincount(ids.reshape(-1))
    assert (lengths == 1).any() and ((lengths > 1) & (lengths <= 8)).sum() >= 128
    assert (lengths > 100).any()
    np.testing.assert_array_equal(got.ids, ref.ids)
    np.testing.assert_allclose(got.rows, ref.rows, rtol=1e-12, atol=1e-12)


def test_sum_window_rows_rejects_negative_ids():
    rows = np.zeros((2, 5, 3))
    with pytest.raises(IndexError):
        fast.sum_window_rows(np.full((2, 5), -1), rows)


def test_sum_window_rows_of_nothing():
    got = fast.sum_window_rows(np.zeros((0, 5), dtype=np.int32), np.zeros((0, 5, 3)))
    assert got.ids.shape == (0,) and got.rows.shape == (0, 3)


def test_sum_window_rows_small_rejects_bad_ids():
    rows = np.zeros((2, 5, 3), dtype=np.float32)
    with pytest.raises(IndexError):
        fast.sum_window_rows_small(np.full((2, 5), 6), rows, 6)


# ----------------------------------------------------------------------------- training step


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_fast_loss_and_grads_equal_reference(activation, objective):
    """Dropout, L2 on embeddings and corrupted windows on: every branch of the fast path."""
    model = make_model(
        activation=activation, objective=objective, keep_prob=0.7, l2=0.01, l2_embeddings=True
    )
    batch = make_batch(model.spec, np.random.default_rng(1), k=2)
    rng_ref, rng_fast = np.random.default_rng(5), np.random.default_rng(5)
    loss_ref, ref = model.loss_and_grads(batch, rng_ref)
    loss, got = model.loss_and_grads_fast(batch, rng_fast)
    assert loss == pytest.approx(loss_ref, rel=1e-12)
    shapes = {k: v.shape for k, v in model.params.items()}
    assert_grads_close(ref, got, shapes, rtol=1e-12, atol=1e-15)
    assert rng_ref.bit_generator.state == rng_fast.bit_generator.state  # the same draws


@pytest.mark.parametrize(
    "kw", [{"caps_dim": 0}, {"train_embeddings": False}, {"keep_prob": 1.0, "window": 3}]
)
def test_fast_path_without_caps_or_embedding_training(kw):
    model = make_model(**kw)
    batch = make_batch(model.spec, np.random.default_rng(2))
    loss_ref, ref = model.loss_and_grads(batch)
    loss, got = model.loss_and_grads_fast(batch)
    assert loss == pytest.approx(loss_ref, rel=1e-12)
    assert_grads_close(ref, got, {k: v.shape for k, v in model.params.items()}, rtol=1e-12)


def test_fast_path_float32_and_fixed_mask():
    model = make_model("float32", keep_prob=0.5, hidden=16)
    batch = make_batch(model.spec, np.random.default_rng(3), n=50)
    mask = layers.dropout_mask(np.random.default_rng(0), (50, 16), 0.5, np.float32)
    loss_ref, ref = model.loss_and_grads(batch, dropout_mask=mask)
    loss, got = model.loss_and_grads_fast(batch, dropout_mask=mask)
    assert loss == pytest.approx(loss_ref, rel=1e-6)
    assert all(g.dtype == np.float32 for g in got.values() if isinstance(g, np.ndarray))
    assert_grads_close(ref, got, {k: v.shape for k, v in model.params.items()}, 1e-5, 1e-7)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_train_step_equals_reference_steps(name):
    """Several steps of different sizes (views of one set of buffers, and a size past its
    capacity): same parameters and state."""
    fast_model, ref = make_model(keep_prob=0.8), make_model(keep_prob=0.8)
    opt_fast, opt_ref = Optimizer(OptimizerSettings(name)), Optimizer(OptimizerSettings(name))
    rng_fast, rng_ref, data = (np.random.default_rng(s) for s in (7, 7, 8))
    for n in (13, 5, 13, 70, 13):
        batch = make_batch(fast_model.spec, data, n=n)
        train_step(fast_model, batch, opt_fast, 0.05, rng_fast)
        _, grads = ref.loss_and_grads(batch, rng_ref)
        opt_ref.step(ref.params, grads, 0.05)
    for k in ref.params:
        np.testing.assert_allclose(fast_model.params[k], ref.params[k], rtol=1e-10, atol=1e-12)
    assert opt_fast.state.keys() == opt_ref.state.keys()
    for k in opt_ref.state:
        np.testing.assert_allclose(opt_fast.state[k], opt_ref.state[k], rtol=1e-9, atol=1e-12)


def test_workspaces_of_every_size_are_views_of_one_capacity():
    """Sentence batches change size at every step: each size gets views of the first rows of
    one set of buffers per capacity (a power of two), not buffers of its own."""
    model = make_model()
    small, other, exact = (fast.workspace(model, n) for n in (13, 40, fast.MIN_CAPACITY))
    assert small.x.shape == (13, model.spec.input_dim) and other.x.shape[0] == 40
    assert small.x.base is exact.x and other.dx.base is exact.dx and small.dW is exact.dW
    assert fast.workspace(model, 13) is small
    assert small.dx_word_rows.offsets.shape == (13 * model.spec.window,)
    big = fast.workspace(model, fast.MIN_CAPACITY + 1)
    assert big.x.shape[0] == fast.MIN_CAPACITY + 1 and not np.shares_memory(big.x, exact.x)


def test_train_step_is_deterministic():
    """Bit for bit, given the seed (resumed runs depend on it)."""
    runs = []
    for _ in range(2):
        model = make_model("float32", keep_prob=0.8, hidden=16)
        opt = Optimizer(OptimizerSettings("adam"))
        rng, data = np.random.default_rng(1), np.random.default_rng(2)
        for _ in range(5):
            train_step(model, make_batch(model.spec, data, n=40), opt, 0.01, rng)
        runs.append((model.params, opt.state))
    for (p1, s1), (p2, s2) in zip(runs[:1], runs[1:], strict=True):
        for k in p1:
            np.testing.assert_array_equal(p1[k], p2[k])
        for k in s1:
            np.testing.assert_array_equal(s1[k], s2[k])


def test_train_step_skips_the_update_when_the_loss_is_not_finite():
    model = make_model()
    model.params["b"][0] = np.nan
    before = {k: v.copy() for k, v in model.params.items()}
    optimizer = Optimizer(OptimizerSettings("adam"))
    loss = train_step(model, make_batch(model.spec, np.random.default_rng(0)), optimizer, 0.1)
    assert not np.isfinite(loss)
    assert optimizer.t == 0 and optimizer.state == {}  # the optimizer was not called
    for k, v in before.items():
        np.testing.assert_array_equal(model.params[k], v)


def test_dropout_mask_keeps_an_element_when_its_32_bits_are_below_keep_times_2_to_the_32():
    """77 elements take 39 raw 64-bit draws (the last half unused), low half first."""
    bits = np.random.default_rng(5).bit_generator.random_raw(39).view(np.uint32)[:77]
    rng = np.random.default_rng(5)
    mask = layers.dropout_mask(rng, (7, 11), 0.6, np.float64)
    np.testing.assert_array_equal(mask.reshape(-1) > 0, bits < round(0.6 * 2**32))
    assert rng.bit_generator.state == _after_raw_draws(5, 39)


def _after_raw_draws(seed: int, n: int) -> dict:
    rng = np.random.default_rng(seed)
    rng.bit_generator.random_raw(n)
    return rng.bit_generator.state


@given(st.floats(min_value=1e-9, max_value=1.0, exclude_max=True))
def test_keep_threshold_is_keep_to_within_2_to_the_minus_32(keep):
    threshold = layers.keep_threshold(keep)
    assert 1 <= threshold < 2**32
    assert abs(threshold / 2**32 - keep) <= 2**-32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_mask_into_buffers_is_the_same_mask_and_the_same_draws(dtype):
    """The fast path's buffers change where the mask is written, not what is drawn."""
    rng_new, rng_buf = np.random.default_rng(3), np.random.default_rng(3)
    expected = layers.dropout_mask(rng_new, (7, 11), 0.6, dtype)
    out = np.empty((7, 11), dtype=dtype)
    got = layers.dropout_mask(rng_buf, (7, 11), 0.6, dtype, out)
    assert got is out and got.dtype == dtype
    np.testing.assert_array_equal(got, expected)
    assert set(np.unique(got).tolist()) == {0.0, float(np.asarray(1 / 0.6, dtype=dtype))}
    assert rng_new.bit_generator.state == rng_buf.bit_generator.state


def test_dropout_masks_input_first_then_hidden():
    """The one mask-drawing function: input mask from the first draws, hidden mask next."""
    model = make_model(keep_prob=0.7, input_keep_prob=0.8)
    spec, n = model.spec, 6
    input_mask, mask = model.dropout_masks(n, np.random.default_rng(4))
    rng = np.random.default_rng(4)
    first = layers.dropout_mask(rng, (n, spec.input_dim), 0.8, np.float64)
    second = layers.dropout_mask(rng, (n, spec.hidden), 0.7, np.float64)
    np.testing.assert_array_equal(input_mask, first)
    np.testing.assert_array_equal(mask, second)
    fixed = np.ones((n, spec.hidden))
    assert model.dropout_masks(n, np.random.default_rng(4), mask=fixed)[1] is fixed
    assert make_model().dropout_masks(n, None) == (None, None)  # no dropout, no draws


def test_fast_path_rejects_bad_ids():
    model = make_model()
    batch = make_batch(model.spec, np.random.default_rng(0))
    batch.words[0, 0] = model.spec.vocab_size
    with pytest.raises(IndexError):
        model.loss_and_grads_fast(batch)


# ----------------------------------------------------------------------------- optimizer


def formula_step(name, params, grads, state, t, lr):
    """The update rules exactly as written in the optimizers' docstring, with temporaries."""
    s = OptimizerSettings()
    for key, g in grads.items():
        theta, ids = params[key], None
        if isinstance(g, SparseGrad):
            ids, g = g.ids, g.rows

        def rows(a, ids=ids):
            return a if ids is None else a[ids]

        f = theta.dtype.type

        def get(slot, key=key, theta=theta):
            return rows(state.setdefault(f"{key}.{slot}", np.zeros_like(theta)))

        def put(slot, value, key=key, ids=ids):
            state[f"{key}.{slot}"][... if ids is None else ids] = value

        if name == "sgd":
            delta = -f(lr) * g
        elif name in ("momentum", "nesterov"):
            v = get("v")
            v_new = f(s.momentum) * v - f(lr) * g
            delta = v_new if name == "momentum" else -f(s.momentum) * v + f(1 + s.momentum) * v_new
            put("v", v_new)
        elif name in ("adagrad", "rmsprop"):
            c = get("cache")
            c = c + g * g if name == "adagrad" else f(s.decay) * c + f(1 - s.decay) * g * g
            put("cache", c)
            delta = -f(lr) * g / (np.sqrt(c) + f(s.eps))
        else:
            m = f(s.beta1) * get("m") + f(1 - s.beta1) * g
            v = f(s.beta2) * get("v") + f(1 - s.beta2) * g * g
            put("m", m)
            put("v", v)
            # α m̂ / (√v̂ + ε) = (α s₁/√s₂) m / (√v + ε/√s₂), s₁, s₂ the bias corrections
            mh, root_vh = 1 / (1 - s.beta1**t), np.sqrt(1 / (1 - s.beta2**t))
            delta = m / (np.sqrt(v) + f(s.eps / root_vh)) * f(-lr * mh / root_vh)
        theta[... if ids is None else ids] = rows(theta) + delta


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_in_place_optimizer_is_the_formula_bit_for_bit(name, dtype):
    rng = np.random.default_rng(0)
    params = {
        "W": rng.standard_normal((3, 7)).astype(dtype),
        "E_word": rng.standard_normal((20, 4)).astype(dtype),
    }
    expected = {k: v.copy() for k, v in params.items()}
    opt, state = Optimizer(OptimizerSettings(name)), {}
    for t in range(1, 5):
        ids = np.unique(rng.integers(0, 20, 6 + t))  # the row count changes step to step
        grads = {
            "W": rng.standard_normal((3, 7)).astype(dtype),
            "E_word": SparseGrad(ids, rng.standard_normal((len(ids), 4)).astype(dtype)),
        }
        opt.step(params, grads, 0.01 * t)
        formula_step(name, expected, grads, state, t, 0.01 * t)
    for k in params:
        np.testing.assert_array_equal(params[k], expected[k])
    assert opt.state.keys() == state.keys()
    for k in state:
        np.testing.assert_array_equal(opt.state[k], state[k])


# ----------------------------------------------------------------------------- inference


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_scores_equal_forward(activation):
    model = make_model("float32", activation=activation)
    rng = np.random.default_rng(0)
    words, caps = rng.integers(0, 40, (300, 5)), rng.integers(0, 6, (300, 5))
    expected = np.concatenate([model.forward(words[i : i + 64], caps[i : i + 64])[0]
                               for i in range(0, 300, 64)])  # fmt: skip
    np.testing.assert_array_equal(model.scores(words, caps, batch_size=64), expected)
    assert model.scores(words[:0], caps[:0]).shape == (0, 5)


@pytest.mark.parametrize("seed", range(20))
def test_viterbi_batch_equals_viterbi_per_sentence(seed):
    rng = np.random.default_rng(seed)
    allowed, start = allowed_transitions(TAGS)
    lengths = rng.integers(0, 9, rng.integers(1, 12))
    bounds = np.r_[0, np.cumsum(lengths)]
    scores = rng.integers(-2, 3, (bounds[-1], len(TAGS))).astype(np.float32)  # many ties
    if seed % 2:
        scores += rng.standard_normal(scores.shape).astype(np.float32)
    expected = [
        viterbi(scores[a:b], allowed, start) if b > a else np.zeros(0, int)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    got = viterbi_batch(scores, bounds, allowed, start)
    np.testing.assert_array_equal(got, np.concatenate([np.zeros(0, int), *expected]))
    decoded = decode_sentences(scores, bounds, TAGS)
    assert decoded == [[TAGS[i] for i in e] for e in expected]


# ----------------------------------------------------------------------------- row items


def _row_layouts():
    """(R, d) arrays in the layouts the fast path moves rows of: a C-contiguous table, a
    column block of a wider buffer (x/dx), RowSource's overlapping view, one-column tables."""
    rng = np.random.default_rng(11)
    wide = rng.standard_normal((40, 23)).astype(np.float32)
    block = wide[:, :20].reshape(40, 5, 4)
    return {
        "table32": rng.standard_normal((30, 7)).astype(np.float32),
        "table64": rng.standard_normal((30, 6)),
        "column block": wide[:, 3:11],
        "overlapping": fast.RowSource(block).view,
        "one column": rng.standard_normal((30, 1)).astype(np.float32),
        "one strided column": wide[:, 5:6],
    }


@pytest.mark.parametrize("layout", list(_row_layouts()))
def test_gather_rows_is_fancy_indexing_bit_for_bit(layout):
    a = _row_layouts()[layout]
    items = row_items(a)
    assert items is not None and items.shape == (len(a),)
    rng = np.random.default_rng(len(layout))
    many = rng.integers(0, len(a), 3 * MIN_ROWS)  # above MIN_ROWS: the raw-item path
    for ids in (many, many[:5], np.array([], dtype=np.int64), np.arange(len(a))):
        got = gather_rows(a, items, ids)
        assert got.dtype == a.dtype and got.flags.c_contiguous
        np.testing.assert_array_equal(got, a[ids])
    for bad in (np.array([len(a)]), np.r_[many, len(a)]):
        with pytest.raises(IndexError):
            gather_rows(a, items, bad)


def test_row_items_refuses_rows_that_are_not_contiguous():
    a = np.zeros((6, 8))
    assert row_items(a[:, ::2]) is None and row_items(a.T) is None
    assert row_items(np.zeros((4, 0))) is None and row_items(np.zeros(5)) is None
    assert row_items(np.empty((3, 2), dtype=object)) is None
    ids = np.array([4, 1])
    np.testing.assert_array_equal(gather_rows(a[:, ::2], None, ids), a[:, ::2][ids])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scatter_rows_is_fancy_assignment_bit_for_bit(dtype):
    rng = np.random.default_rng(3)
    n = 4 * MIN_ROWS
    table = rng.standard_normal((n, 9)).astype(dtype)
    expected = table.copy()
    for count in (2 * MIN_ROWS, 5):  # the raw-item path, and plain assignment below MIN_ROWS
        ids = np.sort(rng.choice(n, count, replace=False))
        rows = rng.standard_normal((count, 9)).astype(dtype)
        expected[ids] = rows
        scatter_rows(table, ids, rows)
        np.testing.assert_array_equal(table, expected)
    # rows that are not C-contiguous, or of another dtype, go through plain assignment
    ids = np.sort(rng.choice(n, 2 * MIN_ROWS, replace=False))
    other = rng.standard_normal((9, 2 * MIN_ROWS)).T
    expected[ids] = other
    scatter_rows(table, ids, other)
    np.testing.assert_array_equal(table, expected)
    with pytest.raises(IndexError):
        scatter_rows(table, np.full(MIN_ROWS, n), np.ones((MIN_ROWS, 9), dtype))


@given(st.lists(st.integers(0, 5), min_size=1, max_size=40))
def test_run_lengths_are_numpys_differences(ids):
    sorted_ids = np.sort(np.asarray(ids))
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    lengths = fast.run_lengths(starts, len(ids))
    np.testing.assert_array_equal(lengths, np.diff(starts, append=len(ids)))


@pytest.mark.parametrize("bad", [[[1, 6]], [[-1, 2]]])
def test_small_table_row_sums_reject_an_id_outside_the_table(bad):
    with pytest.raises(IndexError, match="out of range"):
        fast.sum_window_rows_small(np.array(bad), np.zeros((1, 2, 3), np.float32), 6)


def test_window_runs_merges_only_contiguous_windows():
    x = np.zeros((4, 23), dtype=np.float32)
    words, caps = x[:, :15].reshape(4, 3, 5), x[:, 15:].reshape(4, 2, 4)
    for block in (words, caps):
        runs = fast.window_runs(block)
        assert runs.shape == (4, block.shape[1] * block.shape[2]) and np.shares_memory(runs, x)
        runs[...] = 1.0
    assert x.all()
    strided = np.zeros((4, 3, 10))[:, :, ::2]
    assert fast.window_runs(strided) is strided


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [1, 37, 300])
def test_multiclass_hinge_into_equals_the_reference_bit_for_bit(dtype, n):
    """The workspace hinge (active counts by a matrix-vector product) against
    ``losses.multiclass_hinge``: the same loss and dJ/ds to the last bit, ties included."""
    from windowner.nn.fast import multiclass_hinge_into, workspace
    from windowner.nn.losses import multiclass_hinge

    model = make_model(dtype, n_out=7)
    rng = np.random.default_rng(n)
    scores = rng.integers(-3, 4, (n, 7)).astype(dtype) / 2  # many margins exactly 0
    y = rng.integers(0, 7, n)
    want_loss, want = multiclass_hinge(scores.copy(), y, 1.0)
    loss, got = multiclass_hinge_into(scores, y, 1.0, workspace(model, n))
    assert loss == want_loss
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)

"""The numba one-pass update kernels equal the numpy rules bit for bit (skipped without numba)."""

from __future__ import annotations

import numpy as np
import pytest

from windowner.nn.layers import SparseGrad
from windowner.optim.optimizers import OPTIMIZERS, Optimizer, OptimizerSettings

pytest.importorskip("numba")

from windowner import accel  # noqa: E402


def problem(dtype: str, seed: int = 0) -> tuple[dict, list[dict]]:
    """Parameters of every shape kind (table, matrix, vector) and 4 steps of gradients: dense
    for W and b, rows 1, 3, 4 of the table (unique, sorted, as SparseGrad gives them)."""
    rng = np.random.default_rng(seed)
    params = {
        "E_word": rng.standard_normal((7, 5)).astype(dtype),
        "W": rng.standard_normal((6, 11)).astype(dtype),
        "b": rng.standard_normal(6).astype(dtype),
    }
    steps = []
    for k in range(4):
        ids = np.array([1, 3, 4] if k % 2 == 0 else [0, 3, 6], dtype=np.int64)
        steps.append(
            {
                "E_word": SparseGrad(ids, rng.standard_normal((3, 5)).astype(dtype)),
                "W": rng.standard_normal((6, 11)).astype(dtype),
                "b": (rng.standard_normal(6) * 1e-3).astype(dtype),
            }
        )
    return params, steps


def run_steps(settings: OptimizerSettings, params: dict, steps: list[dict], fused_: bool):
    """Copies of ``params`` after ``steps``, and the optimizer, numba kernels or numpy rules."""
    params = {k: v.copy() for k, v in params.items()}
    optimizer = Optimizer(settings, fused=fused_)
    assert optimizer.kernels == ("numba" if fused_ else "numpy")
    for grads in steps:
        optimizer.step(params, grads, 0.05)
    return params, optimizer


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_fused_rules_equal_the_numpy_rules_bit_for_bit(name: str, dtype: str):
    settings = OptimizerSettings(name, momentum=0.8, decay=0.95, eps=1e-6, fan_in_scaling=True)
    params, steps = problem(dtype)
    reference, numpy_opt = run_steps(settings, params, steps, fused_=False)
    ours, numba_opt = run_steps(settings, params, steps, fused_=True)
    for key in params:
        assert ours[key].dtype == reference[key].dtype
        np.testing.assert_array_equal(ours[key], reference[key], err_msg=key)
        assert not np.array_equal(ours[key], params[key]), f"{key} was not updated"
    assert numba_opt.state.keys() == numpy_opt.state.keys()
    assert numba_opt.t == numpy_opt.t
    for key, value in numpy_opt.state.items():
        np.testing.assert_array_equal(numba_opt.state[key], value, err_msg=key)


def test_untouched_rows_and_their_state_stay_as_they_were():
    params, steps = problem("float32")
    ours, optimizer = run_steps(OptimizerSettings("adam"), params, steps[:1], fused_=True)
    for row in (0, 2, 5, 6):  # step 0 names rows 1, 3, 4 only
        np.testing.assert_array_equal(ours["E_word"][row], params["E_word"][row])
        assert not optimizer.state["E_word.m"][row].any()
        assert not optimizer.state["E_word.v"][row].any()


def test_disabled_by_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(accel.DISABLE_ENV, raising=False)
    assert accel.available()
    assert Optimizer(OptimizerSettings()).kernels == "numba"
    monkeypatch.setenv(accel.DISABLE_ENV, "1")
    assert not accel.available()
    assert Optimizer(OptimizerSettings()).kernels == "numpy"


@pytest.mark.parametrize("zipf", [0.0, 1.1, 3.0])
def test_row_sums_equal_sum_window_rows(zipf: float):
    """Ids from uniform (most seen once) to very skewed (long runs, reduceat in numpy), rows
    read from a column block of a wider buffer as the fast path does. Equal up to the order of
    the additions: numpy's reduceat adds long runs pairwise, the kernel in window order."""
    from windowner.nn.fast import sum_window_rows
    from windowner.nn.fused import RowSummer

    rng = np.random.default_rng(3)
    V, B, w, d = 500, 256, 5, 8
    p = 1.0 / (np.arange(V) + 1.0) ** zipf
    ids = rng.choice(V, size=(B, w), p=p / p.sum()).astype(np.int32)
    buffer = rng.standard_normal((B, w * d + 7)).astype(np.float32)
    rows = buffer[:, : w * d].reshape(B, w, d)
    summer = RowSummer(V)
    for _ in range(2):  # the id → slot table is reset between calls
        ours, reference = summer(ids, rows), sum_window_rows(ids, rows)
        np.testing.assert_array_equal(ours.ids, reference.ids)
        np.testing.assert_allclose(ours.rows, reference.rows, rtol=1e-5, atol=1e-5)
        once = np.bincount(ids.reshape(-1), minlength=V)[ours.ids] == 1
        np.testing.assert_array_equal(ours.rows[once], reference.rows[once])


def test_row_sums_reject_an_id_outside_the_table():
    from windowner.nn.fused import RowSummer

    rows = np.zeros((1, 2, 3), dtype=np.float32)
    with pytest.raises(IndexError, match="out of range"):
        RowSummer(4)(np.array([[1, 4]]), rows)
    with pytest.raises(IndexError, match="out of range"):
        RowSummer(4)(np.array([[-1, 2]]), rows)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_table_summed_by_numba_equals_the_numpy_sums(
    dtype: str, monkeypatch: pytest.MonkeyPatch
):
    """The fast path with a RowSummer per table (words, caps, each feature table: numba
    installed) against the same step with numpy's row sums: the same ids, rows equal to
    rounding, every other gradient bit for bit."""
    from windowner.nn.fast import workspace

    monkeypatch.delenv(accel.DISABLE_ENV, raising=False)

    from .helpers import make_batch, make_feature_model, with_feats

    model = make_feature_model(dtype, keep_prob=0.8)
    rng = np.random.default_rng(7)
    batch = with_feats(make_batch(model.spec, rng, n=40), model.spec, rng)
    ws = workspace(model, 40)
    assert ws.row_summer and ws.caps_summer and all(ws.feature_summers)
    _, ours = model.loss_and_grads_fast(batch, np.random.default_rng(1))
    ours = {k: SparseGrad(g.ids.copy(), g.rows.copy()) if isinstance(g, SparseGrad) else g.copy()
            for k, g in ours.items()}  # fmt: skip
    ws.row_summer = ws.caps_summer = None
    ws.feature_summers = [None] * len(ws.feature_summers)
    _, reference = model.loss_and_grads_fast(batch, np.random.default_rng(1))
    tables = ("E_word", "E_caps", *model.spec.feature_params)
    for key, want in reference.items():
        if key in tables:
            np.testing.assert_array_equal(ours[key].ids, want.ids, err_msg=key)
            np.testing.assert_allclose(ours[key].rows, want.rows, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(ours[key], want, err_msg=key)


def test_row_sums_reject_ids_that_do_not_match_the_rows():
    from windowner.nn.fused import RowSummer

    with pytest.raises(ValueError, match="do not match"):
        RowSummer(4)(np.array([[1, 2, 3]]), np.zeros((1, 2, 3), dtype=np.float32))


def test_row_sums_after_a_rejected_id_start_clean():
    from windowner.nn.fused import RowSummer

    summer, rows = RowSummer(4), np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    with pytest.raises(IndexError):
        summer(np.array([[1, 2, 9]]), rows)
    assert (summer.slot_of == -1).all()
    got = summer(np.array([[2, 1, 2]]), rows)
    np.testing.assert_array_equal(got.ids, [1, 2])
    np.testing.assert_array_equal(got.rows, [rows[0, 1], rows[0, 0] + rows[0, 2]])


def test_row_sums_interrupted_between_kernels_start_clean():
    """An interrupt (Ctrl-C in a notebook) after the ids are marked leaves the id → slot
    table as it was, so the next call is right."""
    from windowner.nn.fused import RowSummer

    summer, rows = RowSummer(5), np.ones((2, 2, 3), dtype=np.float32)
    real = summer.sum_rows

    def interrupted(*args):
        raise KeyboardInterrupt

    summer.sum_rows = interrupted
    with pytest.raises(KeyboardInterrupt):
        summer(np.array([[1, 3], [3, 4]]), rows)
    assert (summer.slot_of == -1).all()
    summer.sum_rows = real
    got = summer(np.array([[1, 3], [3, 4]]), rows)
    np.testing.assert_array_equal(got.ids, [1, 3, 4])
    np.testing.assert_array_equal(got.rows[:, 0], [1.0, 2.0, 1.0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("activation", "keep_prob", "objective"),
    [("tanh", 0.5, "multiclass"), ("tanh", 1.0, "softmax"), ("relu", 0.5, "multiclass")],
)
def test_tanh_backward_pass_equals_the_numpy_passes_bit_for_bit(
    dtype: str, activation: str, keep_prob: float, objective: str
):
    """The fast path with the workspace's tanh′/db pass (nn/fused_passes.py: the compiled one
    for tanh, none for relu) against the same step with numpy's passes: loss and every
    gradient bit for bit."""
    from windowner.nn.fast import workspace
    from windowner.nn.fused_passes import tanh_backward

    from .helpers import make_batch, make_model

    model = make_model(
        dtype, activation=activation, keep_prob=keep_prob, input_keep_prob=0.8,
        objective=objective,
    )  # fmt: skip
    batch = make_batch(model.spec, np.random.default_rng(3), n=37)
    ws = workspace(model, 37)
    ws.row_summer = ws.caps_summer = None  # numpy's row sums in both runs
    compiled = ws.tanh_backward
    assert compiled is (tanh_backward if activation == "tanh" else None)
    results = []
    for pass_ in (compiled, None):
        ws.tanh_backward = pass_
        loss, grads = model.loss_and_grads_fast(batch, np.random.default_rng(5))
        results.append((loss, {k: np.copy(g.rows if isinstance(g, SparseGrad) else g)
                               for k, g in grads.items()}))  # fmt: skip
    (loss, ours), (want_loss, reference) = results
    assert loss == want_loss
    assert ours.keys() == reference.keys()
    for key, want in reference.items():
        np.testing.assert_array_equal(ours[key], want, err_msg=key)


def test_tanh_backward_pass_of_no_rows_gives_a_zero_bias_gradient():
    from windowner.nn.fused_passes import tanh_backward

    dz, a = np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)
    db = np.full(3, np.nan, np.float32)
    np.testing.assert_array_equal(tanh_backward(dz, a, None, db), np.zeros(3))


def test_workspace_uses_the_compiled_pass_only_with_accel(monkeypatch: pytest.MonkeyPatch):
    from windowner.nn.fast import workspace
    from windowner.nn.fused_passes import tanh_backward

    from .helpers import make_model

    monkeypatch.setenv(accel.DISABLE_ENV, "1")
    assert workspace(make_model(), 4).tanh_backward is None
    monkeypatch.delenv(accel.DISABLE_ENV)
    assert workspace(make_model(), 4).tanh_backward is tanh_backward
    assert workspace(make_model(activation="relu"), 4).tanh_backward is None


def test_warm_up_compiles_the_row_kernels_and_leaves_no_marks():
    """``nn.fused.warm_up`` (run by the Trainer's set-up, where a signal stops at once, so that
    numba's compiler does not load inside the first step) really calls the kernels."""
    from windowner.nn import fused

    fused.warm_up()
    mark_distinct, sum_rows = fused._KERNELS
    assert mark_distinct.signatures and sum_rows.signatures
    summer = fused.RowSummer(3)
    grad = summer(np.array([[2, 0, 2]]), np.ones((1, 3, 2), dtype=np.float32))
    assert grad.ids.tolist() == [0, 2] and grad.rows.tolist() == [[1, 1], [2, 2]]
    assert (summer.slot_of == -1).all()

"""Each update rule and schedule: one step computed by hand."""

import math
from dataclasses import fields

import numpy as np
import pytest

from windowner.config import ScheduleConfig
from windowner.nn.layers import SparseGrad
from windowner.optim.optimizers import OPTIMIZERS, RULES, SLOTS, Optimizer, OptimizerSettings
from windowner.optim.schedules import Schedule

G = np.array([0.5, -1.0])
THETA = np.array([1.0, 2.0])


def one_step(name, lr=0.1, steps=1, **kw):
    opt = Optimizer(OptimizerSettings(name=name, **kw))
    params = {"b": THETA.copy()}
    for _ in range(steps):
        opt.step(params, {"b": G.copy()}, lr)
    return params["b"], opt


def test_sgd():
    np.testing.assert_allclose(one_step("sgd")[0], THETA - 0.1 * G)


def test_momentum_as_in_the_notes():
    # v = μv − αg; θ += v.  Step 1: v = −0.1g.  Step 2: v = 0.9(−0.1g) − 0.1g = −0.19g.
    theta, opt = one_step("momentum", steps=2, momentum=0.9)
    np.testing.assert_allclose(theta, THETA - 0.1 * G - 0.19 * G)
    np.testing.assert_allclose(opt.state["b.v"], -0.19 * G)


def test_nesterov():
    # v' = μv − αg; θ += −μv + (1+μ)v'.  Step 1 (v=0): θ += 1.9·(−0.1g).
    theta, _ = one_step("nesterov", momentum=0.9)
    np.testing.assert_allclose(theta, THETA - 0.19 * G)


def test_adagrad():
    theta, opt = one_step("adagrad", steps=2, eps=1e-8)
    step1 = THETA - 0.1 * G / (np.abs(G) + 1e-8)
    expected = step1 - 0.1 * G / (np.sqrt(2 * G * G) + 1e-8)
    np.testing.assert_allclose(theta, expected)
    np.testing.assert_allclose(opt.state["b.cache"], 2 * G * G)


def test_rmsprop():
    theta, _ = one_step("rmsprop", decay=0.9, eps=1e-8)
    cache = 0.1 * G * G
    np.testing.assert_allclose(theta, THETA - 0.1 * G / (np.sqrt(cache) + 1e-8))


def test_adam_with_bias_correction():
    theta, opt = one_step("adam", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)
    m, v = 0.1 * G, 0.001 * G * G
    m_hat, v_hat = m / 0.1, v / 0.001  # = g and g²: the first step moves by ≈ lr·sign(g)
    np.testing.assert_allclose(theta, THETA - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-8))
    assert opt.t == 1


def test_fan_in_scaling_divides_weight_rates():
    opt = Optimizer(OptimizerSettings(name="sgd", fan_in_scaling=True))
    W = np.ones((2, 16))
    b = np.ones(2)
    opt.step({"W": W, "b": b}, {"W": np.ones((2, 16)), "b": np.ones(2)}, 0.4)
    np.testing.assert_allclose(W, 1 - 0.4 / 4)
    np.testing.assert_allclose(b, 1 - 0.4)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
def test_sparse_rows_update_like_dense_rows(name):
    """A SparseGrad touches only its rows, exactly as a dense step would on those rows."""
    table_dense = np.arange(12, dtype=np.float64).reshape(6, 2)
    table_sparse = table_dense.copy()
    ids = np.array([1, 4])
    rows = np.array([[0.5, -1.0], [2.0, 0.25]])
    dense_grad = np.zeros((6, 2))
    dense_grad[ids] = rows
    d, s = Optimizer(OptimizerSettings(name)), Optimizer(OptimizerSettings(name))
    for _ in range(3):
        d.step({"E_word": table_dense}, {"E_word": dense_grad}, 0.1)
        s.step({"E_word": table_sparse}, {"E_word": SparseGrad(ids, rows)}, 0.1)
    np.testing.assert_allclose(table_sparse[ids], table_dense[ids])
    untouched = [0, 2, 3, 5]
    np.testing.assert_array_equal(table_sparse[untouched], np.arange(12.0).reshape(6, 2)[untouched])


def test_state_round_trip():
    _, opt = one_step("adam", steps=3)
    other = Optimizer(OptimizerSettings("adam"))
    other.load_state_arrays(opt.state_arrays())
    assert other.t == 3
    np.testing.assert_array_equal(other.state["b.m"], opt.state["b.m"])


def test_schedules_by_hand():
    assert Schedule(name="constant", lr=0.1)(1000) == 0.1
    step = Schedule(name="step", lr=0.1, factor=0.5, every=2, unit="epochs", steps_per_epoch=10)
    assert [step(s) for s in (0, 19, 20, 39, 40)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    step_s = Schedule(name="step", lr=1.0, factor=0.1, every=100, unit="steps")
    assert step_s(99) == 1.0 and step_s(100) == pytest.approx(0.1)
    exp = Schedule(name="exponential", lr=0.2, k=0.5, unit="steps")
    assert exp(3) == pytest.approx(0.2 * math.exp(-1.5))
    inv = Schedule(name="inverse", lr=0.3, tau=10, unit="steps")
    assert inv(5) == pytest.approx(0.3) and inv(30) == pytest.approx(0.1)
    per_epoch = Schedule(name="exponential", lr=1.0, k=1.0, unit="epochs", steps_per_epoch=4)
    assert per_epoch(2) == pytest.approx(math.exp(-0.5))


def test_schedule_from_config_takes_every_setting():
    settings = ScheduleConfig(name="step", factor=0.25, every=3.0, k=0.7, tau=2.0, unit="steps")
    schedule = Schedule.from_config(settings, lr=0.4, steps_per_epoch=9)
    for f in fields(ScheduleConfig):
        assert getattr(schedule, f.name) == getattr(settings, f.name), f.name
        assert getattr(settings, f.name) != getattr(ScheduleConfig(), f.name), (
            f.name
        )  # not a default
    assert (schedule.lr, schedule.steps_per_epoch) == (0.4, 9)
    assert schedule(6) == pytest.approx(0.4 * 0.25**2)
    with pytest.raises(TypeError):
        Schedule("constant", 0.1)  # the base rate is a keyword argument


def test_every_optimizer_has_one_rule_and_its_slots():
    assert tuple(RULES) == OPTIMIZERS
    assert tuple(SLOTS) == OPTIMIZERS

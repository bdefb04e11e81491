"""The dense layers' update in a second process (optim/worker.py): the same values, a clean
end, no orphan."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from windowner.nn.fast import train_step
from windowner.optim import worker as wk
from windowner.optim.optimizers import Optimizer, OptimizerSettings
from windowner.threads import ThreadChoice

from .helpers import make_batch, make_model

pytestmark = pytest.mark.skipif(not wk.available(), reason="the update worker needs Linux's fork")


def RNG() -> np.random.Generator:  # noqa: N802
    return np.random.default_rng(0)


def pair(objective: str, optimizer: str, **spec):
    """Two identical models and optimizers; the second updates W in a worker."""
    sides = []
    for _ in range(2):
        model = make_model(
            "float32", objective=objective, keep_prob=0.7, input_keep_prob=0.9, **spec
        )
        sides.append((model, Optimizer(OptimizerSettings(optimizer), fused=False)))
    (_, _), (model, opt) = sides
    opt.worker = wk.UpdateWorker(wk.LAYERS, model.params, opt)
    return sides


@pytest.mark.parametrize(
    ("objective", "optimizer"),
    [("multiclass", "adam"), ("softmax", "rmsprop"), ("crf", "momentum")],
)
def test_updates_in_the_worker_equal_the_in_process_ones_bit_for_bit(objective, optimizer):
    (m1, o1), (m2, o2) = pair(objective, optimizer)
    rng1, rng2, data = np.random.default_rng(1), np.random.default_rng(1), np.random.default_rng(2)
    try:
        for _ in range(6):
            batch = make_batch(m1.spec, data, n=40)
            assert train_step(m1, batch, o1, 0.01, rng1) == train_step(m2, batch, o2, 0.01, rng2)
        o2.settle()
        assert o2._started == o2.t == 6  # every update of W ran in the worker
        for k in m1.params:
            np.testing.assert_array_equal(m1.params[k], m2.params[k], err_msg=k)
        for k in o1.state:
            np.testing.assert_array_equal(o1.state[k], o2.state[k], err_msg=k)
    finally:
        o2.worker.close()


def test_the_backward_pass_writes_the_gradients_into_the_shared_block():
    (_, _), (model, opt) = pair("multiclass", "adam")
    worker, own = opt.worker, np.empty_like(model.params["W"])
    try:
        assert opt.gradient_out("W", own) is worker.grads["W"]  # idle: the child reads it next
        assert opt.gradient_out("E_word", own) is own
        loss, grads = model.loss_and_grads_fast(
            make_batch(model.spec, np.random.default_rng(0)), RNG(), optimizer=opt, lr=0.01
        )
        assert worker.pending  # started, and without a copy:
        assert all(grads[name] is worker.grads[name] for name in ("W", "b", "U"))
        assert opt.gradient_out("W", own) is own  # busy: its buffer is being read
    finally:
        worker.close()
    assert opt.gradient_out("W", own) is own  # closed: its block is gone


def test_close_gives_the_arrays_back_and_ends_the_child():
    (_, _), (model, opt) = pair("multiclass", "adam")
    worker = opt.worker
    train_step(model, make_batch(model.spec, np.random.default_rng(0)), opt, 0.01, RNG())
    shared = {name: model.params[name] for name in wk.LAYERS}
    worker.close()
    worker.close()  # twice is harmless
    for name, array in shared.items():
        assert model.params[name] is not array and model.params[name].base is None
        np.testing.assert_array_equal(model.params[name], array)
        assert opt.state[f"{name}.m"].base is None and opt.state[f"{name}.v"].base is None
    with pytest.raises(ChildProcessError):
        os.waitpid(worker.pid, os.WNOHANG)  # reaped: no zombie left behind


@pytest.mark.slow
def test_a_dead_worker_is_an_error_not_a_hang():
    (_, _), (model, opt) = pair("multiclass", "adam")
    os.kill(opt.worker.pid, signal.SIGKILL)
    time.sleep(0.1)
    started = time.monotonic()
    with pytest.raises(wk.WorkerDied, match="stopped"):
        train_step(model, make_batch(model.spec, np.random.default_rng(0)), opt, 0.01, RNG())
        opt.settle()
    assert time.monotonic() - started < 3 * wk.POLL_SECONDS + 1
    opt.worker.close()


@pytest.mark.slow
def test_the_worker_ignores_ctrl_c_and_leaves_with_its_trainer():
    """A process that dies without closing its worker (kill -9) leaves no process behind."""
    code = (
        "import os, signal\n"
        "from tests.helpers import make_model\n"
        "from windowner.optim.optimizers import Optimizer, OptimizerSettings\n"
        "from windowner.optim.worker import UpdateWorker\n"
        "model = make_model('float32')\n"
        "opt = Optimizer(OptimizerSettings('adam'), fused=False)\n"
        "w = UpdateWorker(('W', 'b', 'U'), model.params, opt)\n"
        "os.kill(w.pid, signal.SIGINT)\n"
        "print(w.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=60
    )
    child = int(out.stdout.split()[0])
    deadline = time.monotonic() + 3 * wk.POLL_SECONDS + 3
    while time.monotonic() < deadline and process_exists(child):
        time.sleep(0.05)
    assert not process_exists(child)


def process_exists(pid: int) -> bool:
    """A live process (a zombie waiting for init to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


AUTO_ONE = ThreadChoice(1, "auto", 2, None, "small products")


@pytest.mark.parametrize(
    ("choice", "values", "kernels", "l2", "reason"),
    [
        (AUTO_ONE, 82_500, "numpy", 0.0, None),
        (ThreadChoice(1, "1", 2, None, "as configured"), 82_500, "numpy", 0.0, "BLAS thread"),
        (ThreadChoice(2, "auto", 2, 0.0, "free"), 82_500, "numpy", 0.0, "BLAS thread"),
        (ThreadChoice(1, "auto", 1, None, "one usable core"), 82_500, "numpy", 0.0, "core"),
        # one thread because the machine was busy: a later recheck may give BLAS two, and
        # two BLAS threads beside a worker made steps 2× slower (0.52–0.69×)
        (ThreadChoice(1, "auto", 2, 1.0, "busy", adaptive=True), 82_500, "numpy", 0.0, "load"),
        (AUTO_ONE, 82_500, "numba", 0.0, "numba"),
        (AUTO_ONE, 82_500, "numpy", 1e-4, "L2"),
        (AUTO_ONE, 27_500, "numpy", 0.0, "27,500 values"),
    ],
)
def test_when_a_worker_may_take_w(choice, values, kernels, l2, reason):
    got = wk.reason_not_to(choice, values, kernels, l2)
    assert got is None if reason is None else reason in got


def test_a_forced_worker_skips_only_the_checks_of_whether_it_pays():
    one_thread_set = ThreadChoice(1, "1", 1, None, "as configured")
    assert wk.reason_not_to(one_thread_set, 10, "numpy", 0.0, forced=True) is None
    assert "numba" in wk.reason_not_to(AUTO_ONE, 82_500, "numba", 0.0, forced=True)
    assert "L2" in wk.reason_not_to(AUTO_ONE, 82_500, "numpy", 1e-4, forced=True)


def policy_with_worker():
    model = make_model("float32")
    opt = Optimizer(OptimizerSettings("adam"), fused=False)
    logs: list[str] = []
    policy = wk.WorkerPolicy(opt, logs.append)
    policy.worker = opt.worker = wk.UpdateWorker(wk.LAYERS, model.params, opt)
    policy._probe = []
    return policy, opt, logs


@pytest.mark.parametrize("faster", ["with", "without"])
def test_the_probe_keeps_the_worker_only_when_steps_are_faster_with_it(faster):
    policy, opt, logs = policy_with_worker()
    try:
        attached = []
        for i in range(wk.WARMUP_STEPS + wk.PROBE_BLOCKS * wk.PROBE_STEPS):
            attached.append(opt.worker is not None)
            block = (i - wk.WARMUP_STEPS) // wk.PROBE_STEPS
            with_it = i < wk.WARMUP_STEPS or block % 2 == 0
            policy.observe(1.0 if with_it == (faster == "with") else 2.0)
        # blocks alternate: with the worker, then without it (the trainer updates W)
        first = wk.WARMUP_STEPS
        assert attached[first] and not attached[first + wk.PROBE_STEPS]
        assert (policy.worker is not None) == (faster == "with")
        assert (opt.worker is not None) == (faster == "with")
        assert "kept" in logs[-1] if faster == "with" else "back in this process" in logs[-1]
    finally:
        policy.stop()


def test_waiting_for_the_worker_too_long_stops_it():
    policy, opt, logs = policy_with_worker()
    policy._probe = None
    policy._checked = (time.monotonic() - 1.0, 0.0)
    policy.worker.busy_seconds = 0.5  # half of the last second spent waiting for it
    policy.recheck()
    assert policy.worker is None and opt.worker is None
    assert "waited for it 50% of the time" in logs[-1]


@pytest.mark.parametrize("others", [0.0, 0.5])
def test_a_worker_starts_when_the_last_moment_shows_a_free_core(others, monkeypatch):
    """The decision reads the last 0.1 s, not the minute's load average (which the previous
    run's own worker keeps up when runs follow each other)."""
    monkeypatch.delenv(wk.ENV, raising=False)
    monkeypatch.setattr(wk, "others_now", lambda: others)
    monkeypatch.setattr(os, "getloadavg", lambda: (2.0, 2.0, 2.0))  # not read
    model = make_model("float32", hidden=500, word_dim=20)  # W: 55,000 values
    opt = Optimizer(OptimizerSettings("adam"), fused=False)
    logs: list[str] = []
    policy = wk.WorkerPolicy(opt, logs.append)
    try:
        policy.start(model.params, AUTO_ONE, "numpy", 0.0)
        assert (policy.worker is not None) == (others == 0.0), logs
    finally:
        policy.stop()


def test_no_process_to_spare_leaves_the_update_in_the_trainer(monkeypatch):
    def refuse() -> int:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(wk.os, "fork", refuse)
    monkeypatch.setenv(wk.ENV, "on")
    model = make_model("float32")
    opt = Optimizer(OptimizerSettings("adam"), fused=False)
    logs: list[str] = []
    policy = wk.WorkerPolicy(opt, logs.append)
    policy.start(model.params, AUTO_ONE, "numpy", 0.0)
    assert policy.worker is None and opt.worker is None
    assert "no second process" in logs[-1]
    train_step(model, make_batch(model.spec, np.random.default_rng(0)), opt, 0.01, RNG())

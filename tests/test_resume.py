"""Resume and determinism: an interrupted run, resumed, ends bit for bit like one done in one go."""

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from windowner import config as cfg
from windowner.checkpoint import load_npz
from windowner.cli import app
from windowner.errors import ModelFileError
from windowner.optim.worker import WorkerDied
from windowner.optim.worker import available as worker_available
from windowner.train import Interrupted, SilentReporter, Trainer, strip_timing

from .conftest import strip_ansi
from .helpers import outcome
from .tiny_runs import same_arrays, subset, write_config

runner = CliRunner()


class Stop(Exception):
    """Stands in for a kill -9: the process just ends, nothing is saved."""


def trainer(config: cfg.Config, run: Path, resume: bool = False, stop_at=None, how="signal"):
    """A Trainer that receives SIGINT (``how="signal"``, delivered through the handler) or dies
    (``how="crash"``) right after step ``stop_at``."""
    t = Trainer(config, run, SilentReporter(), resume=resume)
    if stop_at is not None:
        step = t._step

        def stepping(idx, lr):
            loss = step(idx, lr)
            if t.state.step == stop_at:
                if how == "crash":
                    raise Stop
                signal.raise_signal(signal.SIGINT)
            return loss

        t._step = stepping
    return t


def assert_same(a: dict, b: dict) -> None:
    assert same_arrays(a["last"], b["last"]), "last.npz differs"
    assert same_arrays(a["model"], b["model"]), "model.npz differs"
    assert a["metrics"] == b["metrics"]
    assert a["summary"] == b["summary"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny config and the outcome of running it in one go."""
    base = tmp_path_factory.mktemp("resume")
    config = cfg.load_config(write_config(base / "data"))
    trainer(config, base / "one-go").run()
    return config, base, outcome(base / "one-go")


def n_batches(config: cfg.Config) -> int:
    return Trainer(config, Path("unused"), SilentReporter()).n_batches


@pytest.mark.parametrize(
    "where",
    ["first step", "end of epoch 2", "start of epoch 3", "middle of epoch 3", "last step"],
)
@pytest.mark.slow
def test_interrupt_then_resume_is_bit_identical(setup, tmp_path, where):
    config, _, expected = setup
    nb = n_batches(config)
    stop_at = {
        "first step": 1,
        "end of epoch 2": 2 * nb,  # the signal lands while epoch 2 is evaluated and saved
        "start of epoch 3": 2 * nb + 1,
        "middle of epoch 3": 2 * nb + nb // 2,
        "last step": 4 * nb,  # during the final evaluation: still stops, still resumes
    }[where]
    run = tmp_path / "run"
    with pytest.raises(Interrupted) as info:
        trainer(config, run, stop_at=stop_at).run()
    assert info.value.exit_code == 130
    assert f"Resume with: windowner train --resume {run}" in str(info.value)
    state = load_npz(run / "last.npz")[1]["loop"]
    assert state["step"] == stop_at
    trainer(config, run, resume=True).run()
    assert_same(outcome(run), expected)


@pytest.mark.slow
def test_several_interrupts_and_a_crash_then_resume(setup, tmp_path):
    config, _, expected = setup
    nb = n_batches(config)
    run = tmp_path / "run"
    with pytest.raises(Interrupted):
        trainer(config, run, stop_at=3).run()
    with pytest.raises(Interrupted):
        trainer(config, run, resume=True, stop_at=nb + 2).run()
    # A hard stop mid-epoch 3 saves nothing: the resume starts again from the end of epoch 2.
    with pytest.raises(Stop):
        trainer(config, run, resume=True, stop_at=2 * nb + 3, how="crash").run()
    assert load_npz(run / "last.npz")[1]["loop"]["epoch"] == 2
    trainer(config, run, resume=True).run()
    assert_same(outcome(run), expected)


def test_two_runs_of_one_config_give_identical_metrics(setup, tmp_path):
    config, base, _ = setup
    path = base / "data" / "config.yaml"
    texts = []
    for name in ("a", "b"):
        result = runner.invoke(app, ["train", "--config", str(path), "--out", str(tmp_path / name)])
        assert result.exit_code == 0, strip_ansi(result.output)
        texts.append((tmp_path / name / "metrics.jsonl").read_text())
    a, b = ([json.loads(line) for line in t.splitlines()] for t in texts)
    assert len(a) == config.train.epochs
    assert [strip_timing(r) for r in a] == [strip_timing(r) for r in b]
    assert all({"seconds", "windows_per_s"} <= set(r) for r in a)


def test_cli_interrupt_exit_codes_and_resume(setup, tmp_path, monkeypatch):
    _, base, expected = setup
    path = base / "data" / "config.yaml"
    step = Trainer._step
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        run = tmp_path / f"run{signum}"

        def stepping(self, idx, lr, signum=signum):
            loss = step(self, idx, lr)
            if self.state.step == 5:
                signal.raise_signal(signum)
            return loss

        monkeypatch.setattr(Trainer, "_step", stepping)
        result = runner.invoke(app, ["train", "--config", str(path), "--out", str(run)])
        text = strip_ansi(result.output)
        assert result.exit_code == code, text
        name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        assert f"{name}: stopped at step 5, in epoch 1 after batch 5" in text
        assert f"Resume with: windowner train --resume {run}" in text
        assert "Traceback" not in text
        monkeypatch.setattr(Trainer, "_step", step)
        result = runner.invoke(app, ["train", "--resume", str(run)])
        assert result.exit_code == 0, strip_ansi(result.output)
        assert_same(outcome(run), expected)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_resume_refuses_what_it_cannot_continue(setup, tmp_path):
    config, base, _ = setup
    run = tmp_path / "run"
    with pytest.raises(Interrupted):
        trainer(config, run, stop_at=2).run()
    # The training data changed since the run started.
    other = subset(base / "data" / "train.conll", tmp_path / "fewer.conll", 50)
    changed = cfg.Config(**{**config.__dict__, "data": cfg.DataConfig(str(other))})
    with pytest.raises(ModelFileError, match="the training data changed since this run started"):
        Trainer(changed, run, SilentReporter(), resume=True)
    # CLI: not a run directory, --set with --resume, an existing run, no checkpoint.
    (run / "config.yaml").write_text(cfg.dump_yaml(config))

    def refused(message, *args):
        result = runner.invoke(app, ["train", *map(str, args)])
        text = strip_ansi(result.output)
        assert result.exit_code == 2 and message in text, text

    refused("not a run directory (no config.yaml)", "--resume", tmp_path / "nowhere")
    refused("--resume takes the run's own config.yaml", "--resume", run, "--set", "seed=1")
    refused("already holds a run", "--config", base / "data" / "config.yaml", "--out", run)
    (run / "last.npz").rename(tmp_path / "saved.npz")
    refused("no last.npz to resume from", "--resume", run)
    (tmp_path / "saved.npz").rename(run / "last.npz")
    (run / ".last.npz.x1y2.tmp").write_bytes(b"PK\x03\x04 left by a kill -9")
    trainer(config, run, resume=True).run()
    assert not list(run.glob(".*.tmp"))


def test_perm_and_state_live_in_last_npz(setup, tmp_path):
    config, _, _ = setup
    run = tmp_path / "run"
    with pytest.raises(Interrupted):
        trainer(config, run, stop_at=4).run()
    arrays, meta = load_npz(run / "last.npz")
    t = Trainer(config, run, SilentReporter())
    assert sorted(arrays["loop/perm"]) == list(range(len(t.train_idx)))
    assert meta["loop"]["in_epoch"] is True and meta["loop"]["batch_pos"] == 4
    assert {"bit_generator", "state"} <= set(meta["rng"])
    assert np.asarray(arrays["opt_t"]) == 4


@pytest.fixture
def numpy_runs(setup, tmp_path, monkeypatch):
    """The tiny config run in one go on the numpy kernels (what the update worker runs
    beside), and a function that runs it with $WINDOWNER_WORKER set."""
    config, _, _ = setup
    monkeypatch.setenv("WINDOWNER_NO_NUMBA", "1")
    monkeypatch.setenv("WINDOWNER_WORKER", "off")
    trainer(config, tmp_path / "in-process").run()

    def with_worker(run: Path, **kw) -> Trainer:
        monkeypatch.setenv("WINDOWNER_WORKER", "on")
        return trainer(config, run, **kw)

    return config, outcome(tmp_path / "in-process"), with_worker


@pytest.mark.skipif(not worker_available(), reason="the update worker needs Linux's fork")
def test_a_run_with_w_updated_in_a_second_process_is_bit_identical(numpy_runs, tmp_path):
    _, expected, with_worker = numpy_runs
    t = with_worker(tmp_path / "worker")
    t.run()
    assert t.optimizer.worker is None and t.worker.worker is None  # closed at the end
    assert_same(outcome(tmp_path / "worker"), expected)


@pytest.mark.slow
@pytest.mark.skipif(not worker_available(), reason="the update worker needs Linux's fork")
def test_interrupt_with_the_worker_then_resume_is_bit_identical(numpy_runs, tmp_path):
    """The checkpoint written on Ctrl-C holds W after the last step's update (settled first)."""
    config, expected, with_worker = numpy_runs
    nb, run = n_batches(config), tmp_path / "run"
    with pytest.raises(Interrupted):
        with_worker(run, stop_at=2 * nb + nb // 2).run()
    with_worker(run, resume=True).run()
    assert_same(outcome(run), expected)


@pytest.mark.slow
@pytest.mark.skipif(not worker_available(), reason="the update worker needs Linux's fork")
def test_a_dead_update_worker_stops_the_run_with_a_way_to_resume(numpy_runs, tmp_path):
    config, expected, with_worker = numpy_runs
    run = tmp_path / "run"
    t = with_worker(run)
    step = t._step

    def stepping(idx, lr):
        loss = step(idx, lr)
        if t.state.step == n_batches(config) + 2:  # in epoch 2: last.npz holds epoch 1
            os.kill(t.worker.worker.pid, signal.SIGKILL)
        return loss

    t._step = stepping
    with pytest.raises(WorkerDied, match="resume with windowner train --resume") as info:
        t.run()
    assert info.value.exit_code == 1 and t.worker.worker is None  # reaped, arrays back
    assert load_npz(run / "last.npz")[1]["loop"]["epoch"] == 1
    with_worker(run, resume=True).run()
    assert_same(outcome(run), expected)

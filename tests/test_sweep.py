"""``windowner sweep``: the space file, grid expansion, conditional keys, one trial in-process,
and for real (slow): local workers, kill -9 then the same command, two drivers sharing a SQLite
or a PostgreSQL study, and a Dask cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests import pg_server
from tests.conftest import ROOT, strip_ansi
from tests.tiny_runs import write_config
from windowner.cli import app
from windowner.errors import ConfigError, DataError, UsageError

optuna = pytest.importorskip("optuna")

from windowner import sweep as sw  # noqa: E402  (needs the sweep extra)

SPACE = {
    "set": {"train.epochs": 3},
    "method": "tpe",
    "trials": 4,
    "pruner": {"name": "median", "startup_trials": 1, "warmup_epochs": 0},
    "heartbeat": 1,
    "space": {
        "optimizer.name": {"choices": ["adam", "momentum"]},
        "optimizer.lr": {"float": [0.001, 0.05], "log": True},
        "optimizer.momentum": {"float": [0.5, 0.95], "when": {"optimizer.name": ["momentum"]}},
        "model.hidden": {"int": [8, 16], "step": 4},
    },
}


def write_sweep(tmp_path: Path, **changes) -> Path:
    """A sweep file over a tiny config (data subsets, absolute paths) in ``tmp_path``."""
    base = write_config(tmp_path / "base", n_train=40, n_dev=15)
    spec = {"base": str(base), **json.loads(json.dumps(SPACE)), **changes}
    spec = {k: v for k, v in spec.items() if v is not None}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def finished_trials(sweep_dir: Path, name: str = "tiny", storage: str | None = None) -> list:
    study = optuna.load_study(study_name=name, storage=storage or sw.default_storage(sweep_dir))
    return [t for t in study.get_trials() if t.state.name in sw.FINISHED]


# ----------------------------------------------------------------------------- the file


def test_shipped_optimizers_sweep_is_the_full_grid():
    sweep = sw.load_sweep(ROOT / "sweeps/optimizers.yaml")
    points = sw.grid_points(sweep.entries, sweep.base)
    names = {p["optimizer.name"] for p in points}
    schedules = {p["schedule.name"] for p in points}
    assert names == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}
    assert schedules == {"constant", "step", "exponential", "inverse"}
    assert len(points) == len(names) * len(schedules) == sweep.trials
    assert len({json.dumps(p, sort_keys=True) for p in points}) == len(points)
    assert Path(sweep.base.data.train).is_absolute()


def test_shipped_conll03_sweep_reads_the_shared_data_paths(monkeypatch, tmp_path):
    for name in ("train.txt", "valid.txt"):
        (tmp_path / name).write_text("EU B-ORG\n", encoding="utf-8")
    monkeypatch.setenv("CONLL03_DIR", str(tmp_path))
    sweep = sw.load_sweep(ROOT / "sweeps/conll03.yaml")
    assert sweep.method == "tpe" and sweep.base.data.train == str(tmp_path / "train.txt")
    assert sweep.base.embeddings.init == "glove-6b-50d"
    monkeypatch.setenv("CONLL03_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="data.train .*nowhere/train.txt: no such file"):
        sw.load_sweep(ROOT / "sweeps/conll03.yaml")


def test_conditional_key_only_where_its_condition_holds(tmp_path):
    sweep = sw.load_sweep(write_sweep(tmp_path))
    fixed = {"optimizer.name": "adam", "optimizer.lr": 0.01, "model.hidden": 12}
    adam = sw.sample_overrides(optuna.trial.FixedTrial(fixed), sweep)
    assert "optimizer.momentum" not in adam
    momentum = {**fixed, "optimizer.name": "momentum", "optimizer.momentum": 0.7}
    assert (
        sw.sample_overrides(optuna.trial.FixedTrial(momentum), sweep)["optimizer.momentum"] == 0.7
    )


def test_by_table_sets_a_value_per_case(tmp_path):
    space = {
        "optimizer.name": {"choices": ["sgd", "adam"]},
        "optimizer.lr": {
            "by": "optimizer.name",
            "values": {"sgd": 0.1, "adam": {"choices": [1, 2]}},
        },
    }
    sweep = sw.load_sweep(write_sweep(tmp_path, space=space, method="grid", trials=None))
    points = sw.grid_points(sweep.entries, sweep.base)
    assert points == [
        {"optimizer.name": "sgd"},
        {"optimizer.name": "adam", "optimizer.lr[adam]": 1},
        {"optimizer.name": "adam", "optimizer.lr[adam]": 2},
    ]
    assert sw.sample_overrides(optuna.trial.FixedTrial(points[0]), sweep)["optimizer.lr"] == 0.1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"space": {"optimizer.lrr": {"choices": [1]}}}, "space.optimizer.lrr: not a config key"),
        ({"space": {"optimizer.name": {"choices": ["adamw"]}}}, "unknown value 'adamw'"),
        ({"space": {"model.hidden": {"int": [5, 2]}}}, "low < high"),
        ({"method": "bayes"}, "method: unknown value 'bayes'"),
        ({"metric": "f1"}, "metric: expected a per-epoch dev metric"),
        ({"trails": 3}, "trails: unknown key"),
        (
            {
                "space": {
                    "optimizer.momentum": {"choices": [0.9], "when": {"optimizer.name": "sgd"}}
                }
            },
            "must be a key listed earlier",
        ),
    ],
)
def test_bad_sweep_file_is_one_clear_line(tmp_path, change, message):
    path = write_sweep(tmp_path, **change)
    with pytest.raises(ConfigError, match=message) as info:
        sw.load_sweep(path)
    assert str(path) in str(info.value)
    result = CliRunner().invoke(app, ["sweep", str(path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output and message.split("'")[0] in strip_ansi(result.output)


@pytest.mark.slow
def test_unusable_storage_is_one_clear_line(tmp_path):
    path = write_sweep(tmp_path)
    for url, says in (
        ("postgresql://u:secret@127.0.0.1:1/db", "study storage postgresql://u:***@127.0.0.1:1/db"),
        (f"sqlite:///{tmp_path}/no/such/dir/x.db", "cannot open"),
        ("nosuchdb://x", "study storage nosuchdb://x"),
        ("mysql://u:secret@127.0.0.1:1/db", "mysql://u:***@127.0.0.1:1/db: no database driver"),
    ):
        args = ["sweep", str(path), "--out", str(tmp_path / "s"), "--storage", url]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and says in result.output, result.output
        assert "secret" not in result.output and "Traceback" not in result.output


def test_without_the_extra_the_sweep_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna → ImportError
    out = tmp_path / "sweep"
    result = CliRunner().invoke(app, ["sweep", str(write_sweep(tmp_path)), "--out", str(out)])
    assert result.exit_code == 2 and not out.exists()
    assert "sweeps need Optuna: pip install 'windowner[sweep]'" in strip_ansi(result.output)


def test_grid_float_range_needs_a_step(tmp_path):
    space = {"optimizer.lr": {"float": [0.001, 0.1], "log": True}}
    with pytest.raises(ConfigError, match="a grid needs choices"):
        sw.load_sweep(write_sweep(tmp_path, space=space, method="grid", trials=2))


# ----------------------------------------------------------------------------- one trial


def test_one_trial_in_process_reports_every_epoch_and_writes_its_run_dir(tmp_path):
    path = write_sweep(tmp_path, pruner="none")
    sweep = sw.load_sweep(path)
    sweep_dir = sw.prepare_dir(sweep, tmp_path / "sweep")
    url = sw.default_storage(sweep_dir)
    study = sw.open_study(sweep, sw.make_storage(url, sweep.heartbeat))
    trial, run_dir, overrides = sw.admit(study, sweep, sweep_dir)
    assert sw.run_trial(sw.trial_job(sweep, url, trial, run_dir, overrides)) == 0
    done = study.trials[0]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert run_dir.name == "trial-0000" and done.state.name == "COMPLETE"
    assert done.intermediate_values == {r["epoch"]: r["dev_f1"] for r in records}
    assert done.value == json.loads((run_dir / "summary.json").read_text())["dev"]["f1"]
    record = json.loads(sw.trial_record(run_dir).read_text())
    assert record["state"] == "COMPLETE" and record["overrides"] == overrides
    assert sw.trial_record(run_dir) == sweep_dir / "trial-0000.json"  # beside, not inside
    assert not any(f.name.startswith("trial") for f in run_dir.iterdir())


def test_a_signal_during_a_trials_imports_is_not_a_failed_trial(tmp_path, monkeypatch):
    """Python 3.11 wraps a KeyboardInterrupt raised inside a ``__set_name__`` (a dataclass
    field, while a module is imported) in a RuntimeError: still the signal, not a failure."""
    sweep = sw.load_sweep(write_sweep(tmp_path, pruner="none"))
    sweep_dir = sw.prepare_dir(sweep, tmp_path / "sweep")
    url = sw.default_storage(sweep_dir)
    study = sw.open_study(sweep, sw.make_storage(url, sweep.heartbeat))
    trial, run_dir, overrides = sw.admit(study, sweep, sweep_dir)

    def interrupted(*args):
        raise RuntimeError("Error calling __set_name__") from KeyboardInterrupt()

    monkeypatch.setattr(sw, "_train_trial", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sw.run_trial(sw.trial_job(sweep, url, trial, run_dir, overrides))
    first, again = study.trials  # re-queued as an interrupted trial is, no error recorded
    assert (first.state.name, again.state.name) == ("FAIL", "WAITING")
    assert "error" not in first.user_attrs and again.params == first.params


def test_stale_trial_is_requeued_and_resumes_its_run_dir(tmp_path):
    """A trial whose process vanished after epoch 1 (its last.npz on disk): failed, re-queued
    with the same parameters, and the re-run continues the same directory to the end."""
    from windowner.train import train

    sweep = sw.load_sweep(write_sweep(tmp_path, pruner="none"))
    sweep_dir = sw.prepare_dir(sweep, tmp_path / "sweep")
    url = sw.default_storage(sweep_dir)
    study = sw.open_study(sweep, sw.make_storage(url, sweep.heartbeat))
    trial, run_dir, overrides = sw.admit(study, sweep, sweep_dir)
    train(sw.cfg.from_dict(sweep.base.to_dict()), {**overrides, "train.epochs": 1}, out_dir=run_dir)
    (run_dir / "summary.json").unlink()  # as if killed before the run finished
    assert sw.fail_and_requeue(study, trial._trial_id)
    retry, retry_dir, _ = sw.admit(study, sweep, sweep_dir)
    assert retry.number == 1 and retry_dir == run_dir and retry.params == trial.params
    assert sw.run_trial(sw.trial_job(sweep, url, retry, retry_dir, overrides)) == 0
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]


def test_retry_of_a_trial_killed_before_its_directory_was_claimed(tmp_path):
    """The driver names the run directory in the study, then claims it: killed in between, the
    retry has a name and no directory, and train() claims it through the run-dir module."""
    sweep = sw.load_sweep(write_sweep(tmp_path, pruner="none"))
    sweep_dir = sw.prepare_dir(sweep, tmp_path / "sweep")
    url = sw.default_storage(sweep_dir)
    study = sw.open_study(sweep, sw.make_storage(url, sweep.heartbeat))
    trial, run_dir, _ = sw.admit(study, sweep, sweep_dir)
    run_dir.rmdir()  # as if the driver died before its claim
    assert sw.fail_and_requeue(study, trial._trial_id)
    retry, retry_dir, overrides = sw.admit(study, sweep, sweep_dir)
    assert retry_dir == run_dir and not run_dir.exists()
    assert sw.run_trial(sw.trial_job(sweep, url, retry, retry_dir, overrides)) == 0
    assert (run_dir / "summary.json").is_file()
    assert json.loads(sw.trial_record(run_dir).read_text())["number"] == retry.number


def test_trial_asked_but_never_beaten_is_requeued(tmp_path):
    """A driver killed between ``study.ask()`` and the trial's first heartbeat leaves a RUNNING
    trial that Optuna never calls stale: it is re-queued once older than the grace period."""
    sweep = sw.load_sweep(write_sweep(tmp_path, pruner="none", trials=2))
    sweep_dir = sw.prepare_dir(sweep, tmp_path / "sweep")
    study = sw.open_study(sweep, sw.make_storage(sw.default_storage(sweep_dir), sweep.heartbeat))
    orphan = study.ask()  # the killed driver's last act
    assert sw.fail_unbeaten(study, grace=60.0) == 0  # as young as a live driver's new trial
    time.sleep(0.2)
    assert sw.fail_unbeaten(study, grace=0.1) == 1
    retry, _, _ = sw.admit(study, sweep, sweep_dir)
    assert study.trials[1].system_attrs["failed_trial"] == orphan.number
    assert retry.user_attrs[sw.BEATING] == retry.number
    time.sleep(0.2)
    assert sw.fail_unbeaten(study, grace=0.1) == 0  # a beaten trial is left to its heartbeat
    assert [t.state.name for t in study.trials] == ["FAIL", "RUNNING"]


def test_a_bare_postgresql_url_names_the_extras_driver():
    assert sw.with_driver("postgresql://u:p@db/w") == "postgresql+psycopg://u:p@db/w"
    for kept in ("postgresql+psycopg2://u@db/w", "sqlite:///x/study.db", "mysql://u@db/w"):
        assert sw.with_driver(kept) == kept


def test_retry_of_a_trial_killed_before_its_first_checkpoint_starts_afresh(tmp_path):
    """Killed after train() wrote config.yaml but before the first last.npz: the retry
    empties the directory (nothing was trained) and runs the trial instead of failing."""
    sweep = sw.load_sweep(write_sweep(tmp_path, pruner="none"))
    sweep_dir = sw.prepare_dir(sweep, tmp_path / "sweep")
    url = sw.default_storage(sweep_dir)
    study = sw.open_study(sweep, sw.make_storage(url, sweep.heartbeat))
    trial, run_dir, overrides = sw.admit(study, sweep, sweep_dir)
    (run_dir / "config.yaml").write_text("model: {}\n", encoding="utf-8")
    (run_dir / ".lock").write_text("123\n", encoding="utf-8")
    assert sw.fail_and_requeue(study, trial._trial_id)
    retry, retry_dir, retry_overrides = sw.admit(study, sweep, sweep_dir)
    assert retry_dir == run_dir
    assert sw.run_trial(sw.trial_job(sweep, url, retry, retry_dir, retry_overrides)) == 0
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    assert (run_dir / "summary.json").is_file()


def test_a_started_run_is_never_discarded(tmp_path):
    from windowner import runs

    (tmp_path / "config.yaml").write_text("x", encoding="utf-8")
    (tmp_path / "model.npz").write_bytes(b"x")
    assert not runs.discard_unstarted(tmp_path)
    assert (tmp_path / "config.yaml").exists()


def test_blas_threads_divided_and_never_above_what_the_environment_asks(monkeypatch):
    for name in sw.BLAS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert {sw.blas_env(3)[n] for n in sw.BLAS_VARIABLES} == {"3"}
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert {sw.blas_env(3)[n] for n in sw.BLAS_VARIABLES} == {"1"}
    assert sw.LocalLauncher(1).threads == 1


def test_a_trial_directory_the_study_does_not_know_is_refused(tmp_path):
    sweep = sw.load_sweep(write_sweep(tmp_path))
    sweep_dir = sw.prepare_dir(sweep, tmp_path / "sweep")
    study = sw.open_study(sweep, sw.make_storage(sw.default_storage(sweep_dir), sweep.heartbeat))
    (sweep_dir / "trial-0000").mkdir()  # left by an earlier study whose study.db was removed
    with pytest.raises(UsageError, match="trial-0000 exists but is not this study's trial"):
        sw.admit(study, sweep, sweep_dir)


# ----------------------------------------------------------------------------- for real


def sweep_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "windowner", "sweep", *map(str, args)]


def check_sweep_dir(sweep_dir: Path, trials: int, storage: str | None = None) -> None:
    """Exactly ``trials`` finished trials, each with a whole run directory."""
    finished = finished_trials(sweep_dir, storage=storage)
    assert len(finished) == trials
    claimed = {p.name for p in sweep_dir.glob("trial-*") if p.is_dir()}
    assert claimed == {t.user_attrs["run_dir"] for t in finished}  # none lost, none extra
    for t in finished:
        run = sweep_dir / t.user_attrs["run_dir"]
        assert json.loads(sw.trial_record(run).read_text())["state"] == t.state.name
        assert (run / "summary.json").is_file() and (run / "model.npz").is_file()
        assert len((run / "metrics.jsonl").read_text().splitlines()) == max(t.intermediate_values)


@pytest.mark.slow
def test_two_local_workers_finish_the_sweep(tmp_path):
    path = write_sweep(tmp_path)
    out = tmp_path / "sweep"
    done = subprocess.run(
        sweep_command(path, "--workers", 2, "--out", out, "--json"), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["finished"] == 4
    reported = [
        line for line in done.stderr.splitlines() if " complete: " in line or " pruned: " in line
    ]
    assert len(reported) == 4  # every trial reaped and reported before the driver returns
    check_sweep_dir(out, 4)
    shown = CliRunner().invoke(app, ["compare", str(out), "--json"])
    assert len(json.loads(shown.output)["runs"]) == len(
        [p for p in out.glob("trial-*") if p.is_dir()]
    )


@pytest.mark.slow
@pytest.mark.parametrize("whole_group", [False, True])
def test_kill_9_then_the_same_command_completes_the_study(tmp_path, whole_group):
    """kill -9 of the driver (its trials get SIGTERM and re-queue themselves) or of the whole
    process group (trials go stale: heartbeat), then the same command: exactly ``trials``."""
    path = write_sweep(tmp_path, pruner="none", trials=5)
    out = tmp_path / "sweep"
    command = sweep_command(path, "--workers", 2, "--out", out)
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in proc.stderr:
        if "complete" in line:  # at least one trial done, others under way
            break
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL) if whole_group else proc.kill()
    proc.wait()
    time.sleep(1.0)
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    check_sweep_dir(out, 5)


@pytest.mark.slow
def test_a_trial_left_unbeaten_by_a_killed_driver_does_not_hang_the_next(tmp_path):
    path = write_sweep(tmp_path, pruner="none", trials=2)
    out = tmp_path / "sweep"
    sweep = sw.load_sweep(path)
    sweep_dir = sw.prepare_dir(sweep, out)
    study = sw.open_study(sweep, sw.make_storage(sw.default_storage(sweep_dir), sweep.heartbeat))
    study.ask()  # RUNNING, no heartbeat, no run directory: the driver died right here
    again = subprocess.run(
        sweep_command(path, "--out", out), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    assert "without a heartbeat" in again.stderr
    check_sweep_dir(out, 2)


def two_drivers(tmp_path: Path, storage: str) -> None:
    """Two drivers started together on one storage URL and one sweep directory (as two
    machines would be): both exit 0 with exactly ``trials`` finished, each in its own run dir."""
    path = write_sweep(tmp_path, trials=5)
    out = tmp_path / "sweep"
    command = sweep_command(path, "--workers", 1, "--out", out, "--storage", storage)
    drivers = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for driver in drivers:
        assert driver.wait(300) == 0, driver.stderr.read()
    check_sweep_dir(out, 5, storage=storage)


@pytest.mark.slow
def test_two_drivers_sharing_one_storage_finish_exactly_the_trials(tmp_path):
    two_drivers(tmp_path, f"sqlite:///{tmp_path / 'shared.db'}")


@pytest.mark.slow
@pytest.mark.skipif(pg_server.missing() is not None, reason=str(pg_server.missing()))
def test_two_drivers_sharing_a_postgresql_study(tmp_path):
    """The README's several machines on one PostgreSQL study, against a real server."""
    pytest.importorskip("psycopg", reason="psycopg (the sweep extra) is not installed")
    with pg_server.postgres() as url:
        two_drivers(tmp_path, url)  # its checks read the study from the server
    assert not (tmp_path / "sweep" / "study.db").exists()  # no SQLite study on the side


@pytest.mark.slow
def test_sweep_on_a_real_dask_cluster(tmp_path):
    pytest.importorskip("distributed")
    dask = Path(sys.executable).parent / "dask"
    address = f"tcp://127.0.0.1:{pg_server.free_port()}"
    port = address.rsplit(":", 1)[1]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": tmp_path}
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"], **quiet
        )
    ]
    try:
        for _ in range(2):
            worker = [
                dask,
                "worker",
                address,
                "--nthreads",
                "1",
                "--no-dashboard",
                "--nworkers",
                "1",
            ]
            procs.append(subprocess.Popen(worker, **quiet))
        from distributed import Client

        with Client(address, timeout="60s") as client:  # the cluster is up: both workers in
            client.wait_for_workers(2, timeout=120)
        path = write_sweep(tmp_path)
        out = tmp_path / "sweep"
        done = subprocess.run(
            sweep_command(path, "--dask", address, "--out", out, "--json"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert "2 at a time, Dask" in done.stderr
        check_sweep_dir(out, 4)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_help_imports_neither_optuna_nor_dask():
    code = (
        "import sys\nfrom windowner.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('optuna', 'dask', 'distributed') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"

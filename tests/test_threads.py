"""The BLAS thread policy: settings, machine readings (from fake /proc files and clocks) and
the choice; no test here times anything."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from windowner import config as cfg
from windowner import threads as th
from windowner.cli import app
from windowner.errors import ConfigError
from windowner.train import SilentReporter, strip_timing, train

from .conftest import ROOT, embedded_data, strip_ansi


def blas_threads() -> int:
    from threadpoolctl import threadpool_info

    counts = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    assert counts, "numpy's BLAS not found by threadpoolctl"
    return counts[0]


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize(("value", "expected"), [("auto", None), ("AUTO ", None), (1, 1), ("3", 3)])
def test_parse_setting_accepts_auto_and_positive_numbers(value: object, expected: int | None):
    assert th.parse_setting(value) == expected


@pytest.mark.parametrize("value", [0, -2, "many", 1.5, True, None, "0"])
def test_parse_setting_rejects_anything_else_with_the_value_named(value: object):
    with pytest.raises(ValueError, match="'auto' or a positive whole number") as err:
        th.parse_setting(value)
    assert repr(value) in str(err.value)


# ----------------------------------------------------------------------------- the machine


@pytest.mark.parametrize(
    ("text", "expected"),
    [("max 100000\n", None), ("150000 100000\n", 1.5), ("200000 100000", 2.0), ("junk", None)],
)
def test_cgroup_cpu_limit_reads_quota_over_period(tmp_path: Path, text: str, expected):
    path = tmp_path / "cpu.max"
    path.write_text(text)
    assert th.cgroup_cpu_limit(path) == expected


def test_cgroup_cpu_limit_is_none_without_the_file(tmp_path: Path):
    assert th.cgroup_cpu_limit(tmp_path / "missing") is None


def test_usable_cores_is_capped_by_a_cgroup_quota(monkeypatch: pytest.MonkeyPatch):
    for name in th.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(th.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(th, "cgroup_cpu_limit", lambda: 1.5)
    assert th.usable_cores() == 1
    monkeypatch.setattr(th, "cgroup_cpu_limit", lambda: None)
    assert th.usable_cores() == 4


def write_stat(path: Path, user: int, idle: int, iowait: int = 0) -> Path:
    """A /proc/stat with the given ticks (system 10, the rest 0) and a per-cpu line."""
    path.write_text(f"cpu  {user} 0 10 {idle} {iowait} 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\n")
    return path


def test_read_busy_seconds_counts_everything_but_idle_and_iowait(tmp_path: Path):
    ticks = th.os.sysconf("SC_CLK_TCK")
    path = write_stat(tmp_path / "stat", user=290, idle=5000, iowait=700)
    assert th.read_busy_seconds(path) == pytest.approx(300 / ticks)
    assert th.read_busy_seconds(tmp_path / "missing") is None
    (tmp_path / "bad").write_text("intr 1 2 3\n")
    assert th.read_busy_seconds(tmp_path / "bad") is None


class FakeClocks:
    """Stands in for the ``time`` module: wall and own-CPU clocks set by the test."""

    def __init__(self) -> None:
        self.wall, self.cpu = 100.0, 5.0

    def monotonic(self) -> float:
        return self.wall

    def process_time(self) -> float:
        return self.cpu

    def sleep(self, seconds: float) -> None:
        self.wall += seconds


def test_load_meter_subtracts_our_own_cpu_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    clocks = FakeClocks()
    monkeypatch.setattr(th, "time", clocks)
    ticks = th.os.sysconf("SC_CLK_TCK")
    stat = write_stat(tmp_path / "stat", user=0, idle=0)
    meter = th.LoadMeter(stat)
    # 2 wall seconds: the machine was busy 3.5 CPU-seconds, 1.5 of them ours → 1 other core
    write_stat(stat, user=int(3.5 * ticks), idle=0)
    clocks.wall += 2.0
    clocks.cpu += 1.5
    assert meter.others() == pytest.approx(1.0, abs=1 / ticks)
    # the next reading starts where the last ended: only our own work now → no one else
    write_stat(stat, user=int(4.5 * ticks), idle=0)
    clocks.wall += 1.0
    clocks.cpu += 1.0
    assert meter.others() == pytest.approx(0.0, abs=1 / ticks)


def test_load_meter_is_none_without_proc(tmp_path: Path):
    assert th.LoadMeter(tmp_path / "missing").others() is None


# ----------------------------------------------------------------------------- the choice

BIG = th.MIN_THREADED_MNK
SMALL = th.MIN_THREADED_MNK - 1


def test_a_number_is_used_as_given():
    choice = th.choose_threads(3, SMALL, cores=2, others=1.7)
    assert (choice.threads, choice.setting, choice.adaptive) == (3, "3", False)
    assert choice.describe() == "BLAS threads: 3 (3: as configured)"


def test_auto_keeps_small_products_on_one_thread_however_idle():
    choice = th.choose_threads(None, SMALL, cores=8, others=0.0)
    assert (choice.threads, choice.adaptive) == (1, False)
    assert "faster on one thread" in choice.describe()


def test_auto_between_tokenising_and_writing_is_one_thread_but_a_number_is_kept():
    """Raw text: the products come in bursts between Python work, where idle OpenBLAS workers
    would spin on the other core."""
    choice = th.choose_threads(None, BIG, cores=8, others=0.0, interleaved=True)
    assert (choice.threads, choice.adaptive) == (1, False)
    assert "between tokenising and writing" in choice.describe()
    assert th.choose_threads(3, BIG, cores=8, others=0.0, interleaved=True).threads == 3
    spec = type("Spec", (), {"hidden": 300, "input_dim": 275})()
    before = blas_threads()
    with th.scoring_threads("auto", spec, 100_000, interleaved=True) as chosen:
        assert chosen.threads == 1 and blas_threads() == 1
    assert blas_threads() == before


def test_auto_on_one_core_is_one_thread():
    assert th.choose_threads(None, BIG, cores=1, others=0.0).threads == 1


@pytest.mark.parametrize(
    ("cores", "others", "expected"),
    [(2, 0.0, 2), (2, 0.2, 2), (2, 0.8, 1), (2, 1.0, 1), (2, 6.0, 1), (8, 2.9, 5), (4, None, 4)],
)
def test_auto_uses_the_cores_other_processes_leave_free(cores: int, others, expected: int):
    choice = th.choose_threads(None, BIG, cores=cores, others=others)
    assert (choice.threads, choice.adaptive) == (expected, True)
    assert f"{cores} usable cores" in choice.describe()


def test_product_size_is_batch_times_hidden_times_input_dim():
    assert th.product_size(1024, 100, 275) == 1024 * 100 * 275


# ----------------------------------------------------------------------------- applying


def test_policy_applies_the_choice_and_restores_the_previous_limit(
    monkeypatch: pytest.MonkeyPatch,
):
    np.ones(2) @ np.ones(2)  # numpy's BLAS loaded
    before = blas_threads()
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    policy = th.ThreadPolicy("1", batch_size=1024, hidden=300, input_dim=275)
    with policy as choice:
        assert choice.threads == 1
        assert blas_threads() == 1
    assert blas_threads() == before


class FakeMeter:
    def __init__(self, readings: list[float | None], since: float = 10.0) -> None:
        self.readings, self.since = readings, since

    def seconds_since(self) -> float:
        return self.since

    def others(self) -> float | None:
        return self.readings.pop(0)


def test_recheck_follows_the_load_of_other_processes(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    monkeypatch.setattr(th, "measure_others", lambda: (0.0, "fake"))
    monkeypatch.setattr(th.os, "getloadavg", lambda: (1.05, 1.0, 1.0))  # our one thread
    applied: list[int] = []
    monkeypatch.setattr(th.ThreadPolicy, "_apply", lambda self, n: applied.append(n))
    policy = th.ThreadPolicy("auto", batch_size=1024, hidden=300, input_dim=275)
    with policy as choice:
        assert choice.threads == 2 and choice.adaptive
        policy._meter = FakeMeter([1.0, 1.1, None, 0.1])
        assert policy.recheck().threads == 1  # a neighbour arrived
        assert policy.recheck() is None  # still there: no change
        assert policy.recheck() is None  # no reading
        assert policy.recheck().threads == 2  # gone again
    assert applied == [2, 1, 2]


def test_recheck_does_nothing_for_a_fixed_number(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(th.ThreadPolicy, "_apply", lambda self, n: None)
    with th.ThreadPolicy(2, batch_size=1024, hidden=300, input_dim=275) as choice:
        assert choice.threads == 2
    policy = th.ThreadPolicy(2, batch_size=1024, hidden=300, input_dim=275)
    assert policy.recheck() is None


# ----------------------------------------------------------------------------- wiring


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), ("2", 2), ("1", 1)])
def test_train_threads_config_key(value: str, expected):
    conf = cfg.load_config(None, [f"train.threads={value}"])
    assert conf.train.threads == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "train.threads: must be 'auto' or a positive integer, got 0"),
        ("many", "train.threads: must be 'auto' or a positive integer, got 'many'"),
        ("1.5", "train.threads: expected an integer or a string, got float 1.5"),
    ],
)
def test_train_threads_config_key_is_checked(value: str, message: str):
    with pytest.raises(ConfigError) as info:
        cfg.load_config(None, [f"train.threads={value}"])
    assert info.value.problems == [message + " (from --set)"]


class Logs(SilentReporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


@pytest.mark.parametrize(
    ("setting", "line"),
    [
        ("auto", "BLAS threads: 1 (auto: products of "),  # configs/adam.yaml's are small
        ("1", "BLAS threads: 1 (1: as configured)"),
    ],
)
def test_training_prints_and_records_its_thread_choice(
    tmp_path: Path, setting: str, line: str, monkeypatch: pytest.MonkeyPatch
):
    for name in th.THREAD_VARIABLES:  # a user's OPENBLAS_NUM_THREADS=1 would decide it instead
        monkeypatch.delenv(name, raising=False)
    logs = Logs()
    overrides = [*embedded_overrides(), "train.epochs=1", f"train.threads={setting}"]
    summary = train(ROOT / "configs/adam.yaml", overrides, out_dir=tmp_path / "run", reporter=logs)
    assert any(x.startswith(line) for x in logs.lines), logs.lines
    record = json.loads((Path(summary["run_dir"]) / "metrics.jsonl").read_text())
    assert record["threads"] == 1
    assert "threads" not in strip_timing(record)


def embedded_overrides() -> list[str]:
    """``embedded_data()``'s --set arguments as plain overrides."""
    return [a for a in embedded_data() if a != "--set"]


def test_predict_refuses_a_bad_threads_option_before_loading_anything(tmp_path: Path):
    result = CliRunner().invoke(app, ["predict", "--threads", "0", "--model", tmp_path, "Paris"])
    assert result.exit_code == 2
    assert "--threads: expected 'auto' or a positive whole number, got '0'" in strip_ansi(
        result.output
    )


def test_scoring_threads_tells_the_choice_only_when_it_was_measured(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    monkeypatch.setattr(th, "measure_others", lambda: (1.0, "fake"))
    monkeypatch.setattr(th.ThreadPolicy, "_apply", lambda self, n: None)
    spec = SimpleNamespace(hidden=300, input_dim=275)
    told: list[str] = []
    with th.scoring_threads("auto", spec, 100_000, told.append) as choice:
        assert choice.threads == 1 and choice.adaptive  # 4096-window chunks; one core busy
    assert told == ["BLAS threads: 1 (auto: 2 usable cores, 1.0 busy with other processes)"]
    with th.scoring_threads("auto", spec, th.SCORE_CHUNK - 1, told.append) as choice:
        assert choice.threads == 1 and choice.adaptive  # measured, but a small input: quiet
    with th.scoring_threads("auto", spec, 10, told.append) as choice:
        assert choice.threads == 1 and not choice.adaptive
    assert len(told) == 1


def test_recheck_waits_min_seconds_between_readings(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    monkeypatch.setattr(th, "measure_others", lambda: (0.0, "fake"))
    monkeypatch.setattr(th.ThreadPolicy, "_apply", lambda self, n: None)
    policy = th.ThreadPolicy("auto", batch_size=1024, hidden=300, input_dim=275)
    with policy:
        policy._meter = FakeMeter([1.0], since=0.5)
        assert policy.recheck(min_seconds=2.0) is None  # too soon: not read
        assert policy._meter.readings == [1.0]
        policy._meter.since = 2.5
        assert policy.recheck(min_seconds=2.0).threads == 1


def test_load_meter_counts_seconds_since_its_last_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    clocks = FakeClocks()
    monkeypatch.setattr(th, "time", clocks)
    meter = th.LoadMeter(write_stat(tmp_path / "stat", user=0, idle=0))
    clocks.wall += 3.0
    assert meter.seconds_since() == 3.0
    meter.others()
    assert meter.seconds_since() == 0.0


def test_threads_come_back_only_when_the_last_minute_was_quiet_too(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    monkeypatch.setattr(th, "measure_others", lambda: (1.0, "fake"))
    monkeypatch.setattr(th.ThreadPolicy, "_apply", lambda self, n: None)
    policy = th.ThreadPolicy("auto", batch_size=1024, hidden=300, input_dim=275)
    with policy as choice:
        assert choice.threads == 1
        policy._meter = FakeMeter([0.0, 0.0])
        monkeypatch.setattr(th.os, "getloadavg", lambda: (2.0, 2.0, 2.0))  # 1 besides ours
        assert policy.recheck() is None
        monkeypatch.setattr(th.os, "getloadavg", lambda: (1.1, 2.0, 2.0))
        assert policy.recheck().threads == 2


def test_measure_others_takes_the_larger_of_now_and_the_last_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(th, "LoadMeter", lambda: FakeMeter([0.25]))
    monkeypatch.setattr(th.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(th.os, "getloadavg", lambda: (2.5, 1.0, 1.0))
    assert th.measure_others()[0] == 1.5  # the minute: 2.5 less our one thread
    monkeypatch.setattr(th, "LoadMeter", lambda: FakeMeter([1.75]))
    assert th.measure_others()[0] == 1.75  # now


def probing_policy(monkeypatch: pytest.MonkeyPatch, applied: list[int]) -> th.ThreadPolicy:
    """An auto policy that chose 2 threads on an idle 2-core machine (nothing applied)."""
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    monkeypatch.setattr(th, "measure_others", lambda: (0.0, "fake"))
    monkeypatch.setattr(th.os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    monkeypatch.setattr(th.ThreadPolicy, "_apply", lambda self, n: applied.append(n))
    return th.ThreadPolicy("auto", batch_size=1024, hidden=300, input_dim=275)


def feed(policy: th.ThreadPolicy, seconds: list[float]) -> list:
    return [policy.observe(s) for s in seconds]


def test_one_thread_is_kept_when_the_steps_measure_as_fast(monkeypatch: pytest.MonkeyPatch):
    applied: list[int] = []
    policy = probing_policy(monkeypatch, applied)
    n = th.PROBE_STEPS
    with policy as choice:
        assert choice.threads == 2
        changes = feed(policy, [0.050] + [0.010] * (n - 1) + [0.050] + [0.009] * (n - 1))
        assert changes[:-1] == [None] * (2 * n - 1)
        assert changes[-1].threads == 1
        assert "one thread measured as fast: 9.00 ms a step against 10.00 ms on 2" in (
            changes[-1].describe()
        )
        assert applied == [2, 1]
        policy._meter = FakeMeter([0.0])  # idle again: still one thread, no new probe
        assert policy.recheck() is None
        assert feed(policy, [0.001] * 2 * n) == [None] * 2 * n
    assert applied == [2, 1]


def test_more_threads_are_kept_when_they_measure_faster(monkeypatch: pytest.MonkeyPatch):
    applied: list[int] = []
    policy = probing_policy(monkeypatch, applied)
    n = th.PROBE_STEPS
    with policy as choice:
        assert feed(policy, [0.005] * n + [0.008] * n) == [None] * 2 * n
        assert policy.choice == choice and choice.threads == 2
    assert applied == [2, 1, 2]


def test_a_fixed_number_is_never_probed(monkeypatch: pytest.MonkeyPatch):
    applied: list[int] = []
    monkeypatch.setattr(th.ThreadPolicy, "_apply", lambda self, n: applied.append(n))
    policy = th.ThreadPolicy(2, batch_size=1024, hidden=300, input_dim=275)
    with policy as choice:
        steps = [0.05] * th.PROBE_STEPS + [0.01] * th.PROBE_STEPS
        assert feed(policy, steps) == [None] * len(steps)
        assert policy.choice == choice and choice.threads == 2
    assert applied == [2]


def test_usable_cores_respect_the_environments_thread_variables(monkeypatch: pytest.MonkeyPatch):
    for name in th.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(th.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(th, "cgroup_cpu_limit", lambda: None)
    assert th.env_thread_limit() is None
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    monkeypatch.setenv("MKL_NUM_THREADS", "junk")
    assert th.env_thread_limit() == 2
    assert th.usable_cores() == 2
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "0")  # not a limit
    assert th.usable_cores() == 3

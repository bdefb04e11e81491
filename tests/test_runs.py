"""Run directories (windowner.runs) and the ``train()`` library function: a run never writes
into a used directory, ``latest`` never replaces a real file, and ``on_epoch`` can stop."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from windowner import config as cfg
from windowner import runs
from windowner.cli import app
from windowner.errors import ConfigError, DataError, ModelFileError, UsageError
from windowner.train import SilentReporter, strip_timing, train

from .conftest import strip_ansi
from .tiny_runs import write_config

runner = CliRunner()


# ----------------------------------------------------------------------------- claiming


def test_claim_adds_a_suffix_and_never_reuses_a_directory(tmp_path):
    base = tmp_path / "runs" / "adam-20260101-000000"
    first = runs.claim_run_dir(base, exact=False)
    (first / "model.npz").write_bytes(b"the first run's model")
    second = runs.claim_run_dir(base, exact=False)
    third = runs.claim_run_dir(base, exact=False)
    assert (first, second, third) == (base, base.with_name(base.name + "-2"),
                                      base.with_name(base.name + "-3"))  # fmt: skip
    assert (first / "model.npz").read_bytes() == b"the first run's model"
    assert not any(second.iterdir()) and not any(third.iterdir())


def test_claim_skips_a_file_of_the_same_name(tmp_path):
    base = tmp_path / "run"
    base.write_text("not a directory")
    assert runs.claim_run_dir(base, exact=False) == tmp_path / "run-2"
    assert base.read_text() == "not a directory"


def test_exact_out_is_created_or_must_be_empty(tmp_path):
    new = tmp_path / "deep" / "new"
    assert runs.claim_run_dir(new, exact=True) == new and new.is_dir()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runs.claim_run_dir(empty, exact=True) == empty
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="is not empty"):
        runs.claim_run_dir(used, exact=True)
    (used / "last.npz").write_bytes(b"x")
    with pytest.raises(UsageError, match="already holds a run; resume it with"):
        runs.check_out_dir(used)
    afile = tmp_path / "afile"
    afile.write_text("data")
    with pytest.raises(UsageError, match="is not a directory"):
        runs.claim_run_dir(afile, exact=True)
    assert (used / "notes.txt").read_text() == "mine" and afile.read_text() == "data"


def test_exclusive_claim_refuses_any_existing_directory(tmp_path):
    """A sweep's new trial: the directory must not exist at all, not even empty."""
    new = tmp_path / "sweep" / "trial-0000"
    assert runs.claim_run_dir(new, exact=True, exclusive=True) == new and new.is_dir()
    with pytest.raises(runs.RunDirTaken, match="trial-0000 exists; a run never writes"):
        runs.claim_run_dir(new, exact=True, exclusive=True)
    assert isinstance(runs.RunDirTaken("x"), UsageError) and list(new.iterdir()) == []


def test_no_file_is_allowed_in_a_directory_before_its_run(tmp_path):
    """Nothing written before the run starts: a sweep keeps its trial record beside the run."""
    used = tmp_path / "trial-0000"
    used.mkdir()
    (used / "trial.json").write_text("{}")
    with pytest.raises(UsageError, match="is not empty"):
        runs.check_out_dir(used)


def test_check_resumable(tmp_path):
    with pytest.raises(UsageError, match=r"not a run directory \(no config.yaml\)"):
        runs.check_resumable(tmp_path)
    (tmp_path / "config.yaml").write_text("seed: 1\n")
    with pytest.raises(UsageError, match="no last.npz to resume from"):
        runs.check_resumable(tmp_path)
    (tmp_path / "last.npz").write_bytes(b"")
    assert runs.check_resumable(tmp_path) == tmp_path / "config.yaml"


# ----------------------------------------------------------------------------- latest


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_latest_is_a_relative_symlink_replaced_atomically(tmp_path):
    warnings: list[str] = []
    a = runs.claim_run_dir(tmp_path / "a", exact=True)
    b = runs.claim_run_dir(tmp_path / "b", exact=True)
    runs.point_latest(a, warnings.append)
    assert os.readlink(tmp_path / "latest") == "a"
    runs.point_latest(b, warnings.append)
    assert os.readlink(tmp_path / "latest") == "b"
    assert (tmp_path / "latest").resolve() == b.resolve()
    assert warnings == [] and leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_latest_never_replaces_a_real_file_or_directory(tmp_path, kind):
    latest = tmp_path / "latest"
    if kind == "file":
        latest.write_text("my notes")
    else:
        latest.mkdir()
        (latest / "keep.txt").write_text("my notes")
    run = runs.claim_run_dir(tmp_path / "run", exact=True)
    warnings: list[str] = []
    runs.point_latest(run, warnings.append)
    assert len(warnings) == 1 and f"{latest} is a {kind}, not a symlink" in warnings[0]
    assert not latest.is_symlink()
    kept = latest if kind == "file" else latest / "keep.txt"
    assert kept.read_text() == "my notes"
    assert leftovers(tmp_path) == []


def test_latest_failure_is_a_warning_and_leaves_no_temporary(tmp_path, monkeypatch):
    run = runs.claim_run_dir(tmp_path / "run", exact=True)

    def refuse(src, dst):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(runs.os, "replace", refuse)
    warnings: list[str] = []
    runs.point_latest(run, warnings.append)
    assert len(warnings) == 1 and "could not point" in warnings[0]
    assert "Read-only file system" in warnings[0]
    assert not (tmp_path / "latest").exists() and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- finders


def test_default_run_messages(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="no trained model at runs/latest; train one first"):
        runs.resolve_model(None)
    with pytest.raises(UsageError, match="no run at runs/latest; train one first"):
        runs.find_run(None)
    with pytest.raises(ModelFileError, match="no such model file or run directory"):
        runs.resolve_model(tmp_path / "nowhere")
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "model.npz").write_bytes(b"")
    (run / "metrics.jsonl").write_text("{}\n")
    (tmp_path / "runs" / "latest").symlink_to("r")
    assert runs.resolve_model(None) == runs.DEFAULT_RUN / "model.npz"
    assert runs.find_run(None) == runs.DEFAULT_RUN
    assert runs.find_run(run / "model.npz") == run


# ----------------------------------------------------------------------------- train()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("tiny") / "data", **{"train__epochs": 3})


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_on_epoch_sees_each_saved_record_and_can_stop(tiny, tmp_path):
    seen: list[dict] = []

    def on_epoch(record: dict) -> bool:
        assert read_metrics(run)[-1] == record  # recorded and saved before the call
        seen.append(record)
        return record["epoch"] == 2

    run = tmp_path / "runs" / "stopped"
    summary = train(tiny, out_dir=run, reporter=SilentReporter(), on_epoch=on_epoch)
    assert [r["epoch"] for r in seen] == [1, 2]
    assert read_metrics(run) == seen
    assert summary["epochs"] == 2 and summary["stopped_early"] is True
    assert summary["run_dir"] == str(run)
    assert json.loads((run / "summary.json").read_text()) == summary
    assert "dev" in summary and "test" in summary
    assert (tmp_path / "runs" / "latest").resolve() == run.resolve()


def test_on_epoch_returning_none_changes_nothing(tiny, tmp_path):
    plain = train(tiny, out_dir=tmp_path / "plain")
    hooked = train(tiny, out_dir=tmp_path / "hooked", on_epoch=lambda record: None)
    assert plain["epochs"] == hooked["epochs"] == 3
    assert [strip_timing(r) for r in read_metrics(tmp_path / "plain")] == [
        strip_timing(r) for r in read_metrics(tmp_path / "hooked")
    ]


def test_overrides_as_mapping_or_strings_and_a_config_object(tiny, tmp_path):
    train(tiny, {"train.epochs": 1, "model.hidden": 7}, out_dir=tmp_path / "mapping")
    train(tiny, ["train.epochs=1", "model.hidden=7"], out_dir=tmp_path / "strings")
    conf = cfg.load_config(tiny)
    train(conf, {"train.epochs": 1, "model.hidden": 7}, out_dir=tmp_path / "object")
    texts = {(tmp_path / n / "config.yaml").read_text() for n in ("mapping", "strings", "object")}
    assert len(texts) == 1
    assert cfg.load_config(tmp_path / "mapping" / "config.yaml").model.hidden == 7
    with pytest.raises(ConfigError, match="model.hidden"):
        train(conf, {"model.hidden": -1}, out_dir=tmp_path / "bad")
    with pytest.raises(DataError, match="missing.conll"):
        train(conf, {"data.train": str(tmp_path / "missing.conll")}, out_dir=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # nothing is made before the data is read


def test_generated_names_never_collide(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "run_dir_name", lambda parent, stem: Path(parent) / "same")
    overrides = {"train.epochs": 1, "out_dir": str(tmp_path)}
    first = train(tiny, overrides)["run_dir"]
    second = train(tiny, overrides)["run_dir"]
    assert (first, second) == (str(tmp_path / "same"), str(tmp_path / "same-2"))
    assert os.readlink(tmp_path / "latest") == "same-2"


def test_resume_refuses_another_config(tiny, tmp_path):
    run = tmp_path / "run"
    train(tiny, {"train.epochs": 1}, out_dir=run)
    with pytest.raises(UsageError, match="--resume takes the run's own config.yaml"):
        train(tiny, resume=run)
    with pytest.raises(UsageError, match="--resume takes the run's own config.yaml"):
        train(run / "config.yaml", {"seed": 5}, resume=run)


def test_cli_refuses_a_used_out_directory(tiny, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "precious.txt").write_text("keep me")
    result = runner.invoke(app, ["train", "--config", str(tiny), "--out", str(used)])
    text = strip_ansi(result.output)
    assert result.exit_code == 2 and "is not empty" in text, text
    assert sorted(p.name for p in used.iterdir()) == ["precious.txt"]

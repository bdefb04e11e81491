"""Messy data, training faults, signals, kill -9, awkward predict input, and memory at scale."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from windowner.cli import app
from windowner.config import load_config
from windowner.corpus import read_conll
from windowner.nn.model import WindowScorer
from windowner.optim.optimizers import Optimizer
from windowner.tagger import Tagger
from windowner.train import SilentReporter, Trainer

from .conftest import ROOT, strip_ansi, write
from .helpers import outcome
from .tiny_runs import (
    check_run_files,
    kill_at_random,
    resume_command,
    start,
    train_command,
    wait_for_line,
    write_config,
)

runner = CliRunner()


def cli(*args) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    text = strip_ansi(result.output)
    assert "Traceback" not in text
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"unexpected {result.exception!r}:\n{text}")
    return result.exit_code, text


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny config (60 training sentences) in its own directory."""
    return write_config(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def model(tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "run"
    code, text = cli("train", "--config", tiny, "--set", "train.epochs=2", "--out", out)
    assert code == 0, text
    return out / "model.npz"


# ----------------------------------------------------------------------------- data


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("missing.conll", None, "missing.conll: no such file"),
        ("empty.conll", b"", "empty.conll:1: file is empty"),
        ("blank.conll", b"\n \n\t\n", "blank.conll:1: file is empty"),
        ("docstart.conll", b"-DOCSTART- -X- O O\n\n", "docstart.conll:1: file holds no sentence"),
        ("bytes.conll", b"UNESCO B-ORG\nmeets\xff O\n", "bytes.conll:2: undecodable bytes"),
        ("latin1.conll", "a O\n\nZoë B-PER\n".encode("latin-1"), "latin1.conll:3: undecodable"),
        ("one.conll", b"UNESCO B-ORG\nmeets\n", "one.conll:2: too few columns"),
        ("tag.conll", b"EU B-ORG\n\nrejects X-MISC\n", "tag.conll:3: invalid tag 'X-MISC'"),
        ("dash.conll", b"EU B-\n", "dash.conll:1: invalid tag 'B-'"),
        ("lower.conll", b"EU b-org\n", "lower.conll:1: invalid tag 'b-org'"),
    ],
)
def test_bad_training_data_exits_2_with_file_and_line(tmp_path, tiny, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "run"
    code, text = cli("train", "--config", tiny, "--set", f"data.train={path}", "--out", out)
    assert code == 2, text
    assert f"error: {tmp_path}/{message}" in text
    assert not out.exists()  # no half-made run directory


def test_bad_dev_data_and_a_directory(tmp_path, tiny):
    bad = write(tmp_path / "dev.conll", "Paris B-LOC\nis\n")
    code, text = cli("train", "--config", tiny, "--set", f"data.dev={bad}", "--out", tmp_path / "r")
    assert code == 2 and f"{bad}:2: too few columns" in text
    code, text = cli("train", "--config", tiny, "--set", f"data.test={tmp_path}")
    assert code == 2 and "is a directory, not a CoNLL file" in text


def test_unseen_dev_and_test_tags_are_warned_about_and_scored_as_errors(tmp_path, tiny):
    dev = write(
        tmp_path / "dev.conll",
        "Museums O\nin O\nParis B-LOC\n\nZorg B-ALIEN\nprime I-ALIEN\nsaid O\n\nGlorp B-ALIEN\n",
    )
    out = tmp_path / "run"
    args = ["train", "--config", tiny, "--set", f"data.dev={dev}", "--set", f"data.test={dev}"]
    code, text = cli(*args, "--set", "train.epochs=1", "--out", out, "--json")
    assert code == 0, text
    warning = "has tags never seen in training (B-ALIEN ×2, I-ALIEN ×1); they are scored as errors"
    assert f"warning: dev {warning}" in text and f"warning: test {warning}" in text
    summary = json.loads((out / "summary.json").read_text())
    alien = summary["dev"]["per_type"]["ALIEN"]
    assert alien["n_gold"] == 2 and alien["n_correct"] == 0 and alien["recall"] == 0.0
    code, text = cli("eval", "--model", out, "--data", dev, "--json")
    assert code == 0 and f"warning: {dev} {warning}" in text


def test_two_and_four_column_files_with_tabs_or_spaces_read_alike(tmp_path):
    sents = read_conll(ROOT / "data/train.conll")[:40]
    two_tab = "".join(
        "".join(f"{w}\t{t}\n" for w, t in zip(s.tokens, s.tags, strict=True)) + "\n" for s in sents
    )
    four_space = "-DOCSTART- -X- -X- O\n\n" + "".join(
        "".join(f"{w} NNP I-NP {t}\n" for w, t in zip(s.tokens, s.tags, strict=True)) + "\n"
        for s in sents
    )
    mixed = two_tab.replace("\t", " \t  ").replace("\n", "\r\n")
    for name, text in (("two", two_tab), ("four", four_space), ("mixed", mixed)):
        (tmp_path / name).write_bytes(text.encode("utf-8"))
        back = read_conll(tmp_path / name)
        assert [(s.tokens, s.tags) for s in back] == [(s.tokens, s.tags) for s in sents], name


def test_a_conll2003_style_file_trains(tmp_path, tiny):
    sents = read_conll(ROOT / "data/train.conll")[:60]
    lines = ["-DOCSTART- -X- -X- O", ""]
    for s in sents:
        lines += [f"{w} NNP B-NP {t}" for w, t in zip(s.tokens, s.tags, strict=True)] + [""]
    path = write(tmp_path / "train.txt", "\n".join(lines))
    args = ["--set", f"data.train={path}", "--set", "train.epochs=1"]
    code, text = cli("train", "--config", tiny, *args, "--out", tmp_path / "r")
    assert code == 0, text


# ----------------------------------------------------------------------------- training faults


def poison_loss_at(monkeypatch, step_number: int, value=float("nan")) -> None:
    original = WindowScorer.loss_and_grads_fast  # what the trainer calls each step
    calls = {"n": 0}

    def loss_and_grads(self, batch, rng):
        loss, grads = original(self, batch, rng)
        calls["n"] += 1
        return (value if calls["n"] == step_number else loss), grads

    monkeypatch.setattr(WindowScorer, "loss_and_grads_fast", loss_and_grads)


def test_nan_loss_stops_training_exit_1_and_keeps_the_best_model(tmp_path, tiny, monkeypatch):
    out = tmp_path / "run"
    code, text = cli("train", "--config", tiny, "--out", out)  # to learn the steps per epoch
    steps_per_epoch = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["step"]
    out = tmp_path / "nan"
    poison_loss_at(monkeypatch, 2 * steps_per_epoch + 3)
    code, text = cli("train", "--config", tiny, "--out", out)
    assert code == 1, text
    step = 2 * steps_per_epoch + 3
    assert f"training diverged at step {step} (epoch 3): the loss became nan" in text
    assert "Try a lower learning rate, e.g. --set optimizer.lr=0.001" in text
    assert f"the best model so far is in {out / 'model.npz'}" in text
    found = check_run_files(out)
    assert len(found["metrics.jsonl"]) == 2 and found["model.npz"]["epoch"] in (1, 2)
    assert "RuntimeWarning" not in text
    # The suggested override is itself a valid config value.
    code, text = cli("train", "--config", tiny, "--set", "optimizer.lr=1e-3", "--set", "x=1")
    assert code == 2 and "optimizer.lr" not in text


def test_inf_loss_in_the_first_epoch_says_no_model_was_saved(tmp_path, tiny, monkeypatch):
    poison_loss_at(monkeypatch, 1, float("inf"))
    code, text = cli("train", "--config", tiny, "--out", tmp_path / "run")
    assert code == 1
    assert "training diverged at step 1 (epoch 1): the loss became inf" in text
    assert "no epoch finished, so no model was saved" in text


def test_inf_parameters_stop_training_before_they_are_saved(tmp_path, tiny, monkeypatch):
    steps_per_epoch = Trainer(load_config(tiny), tmp_path, SilentReporter()).n_batches
    original = Optimizer.step

    def step(self, params, grads, lr):
        original(self, params, grads, lr)
        if self.t == steps_per_epoch:  # the last step of epoch 1: no later loss to notice it
            params["W"][0, 0] = np.inf

    monkeypatch.setattr(Optimizer, "step", step)
    out = tmp_path / "run"
    code, text = cli("train", "--config", tiny, "--out", out)
    assert code == 1, text
    assert f"diverged at step {steps_per_epoch} (epoch 1): parameter W holds NaN or inf" in text
    assert not (out / "model.npz").exists()


# ----------------------------------------------------------------------------- signals and kill -9


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_real_process_stops_on_a_signal_and_resumes_identically(tmp_path, signum, code):
    config = write_config(tmp_path / "data", train__epochs=6)
    proc = start(train_command("--config", config, "--out", "run"), tmp_path)
    wait_for_line(proc, "epoch   2")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert f"{name}: stopped at step" in err and "saved run/last.npz" in err
    command = resume_command(err)
    assert command == ["windowner", "train", "--resume", "run"]
    check_run_files(tmp_path / "run")
    done = subprocess.run(
        [sys.executable, "-m", *command], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    # The same run in one go, in another directory.
    proc = start(train_command("--config", config, "--out", "one-go"), tmp_path)
    proc.communicate(timeout=300)
    assert proc.returncode == 0
    a, b = outcome(tmp_path / "run"), outcome(tmp_path / "one-go")
    assert a["metrics"] == b["metrics"] and a["summary"] == b["summary"]


@pytest.mark.slow
def test_kill_9_at_random_moments_never_leaves_a_partial_file(tmp_path):
    """SIGKILL a real training process at random moments; every file left must load.
    (tests/tiny_runs.py kill9 N does the same N times, by hand.)"""
    reports = kill_at_random(tmp_path, kills=4)
    assert len(reports) == 4
    assert any("last.npz" in r["files"] for r in reports), reports
    # A killed run resumes from what it left.
    run = next(tmp_path / f"run{i}" for i, r in enumerate(reports) if "last.npz" in r["files"])
    before = len(check_run_files(run)["metrics.jsonl"])
    proc = start(train_command("--resume", run), tmp_path)
    wait_for_line(proc, f"epoch {before + 2:>3}")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert len(check_run_files(run)["metrics.jsonl"]) >= before + 2
    assert not list(run.glob(".*.tmp"))


# ----------------------------------------------------------------------------- predict


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"])
def test_empty_or_whitespace_text_exits_2(model, text, tmp_path):
    code, out = cli("predict", "--model", model, text)
    assert code == 2 and "nothing to tag: the input is empty or only whitespace" in out
    path = write(tmp_path / "blank.txt", text)
    for fmt in ("text", "conll"):
        code, out = cli("predict", "--model", model, "--input", path, "--input-format", fmt)
        assert code == 2 and "nothing to tag" in out


def test_unicode_unknown_words_and_a_single_token(model):
    code, out = cli("predict", "--model", model, "-f", "json", "Zoë met 李小龙 in Ürümqi 🎉 today")
    assert code == 0, out
    (record,) = json.loads(out)
    assert record["tokens"] == ["Zoë", "met", "李小龙", "in", "Ürümqi", "🎉", "today"]
    assert len(record["tags"]) == 7
    for text in ("Xyzzyplugh", "Paris", "!"):
        code, out = cli("predict", "--model", model, "-f", "json", text)
        assert code == 0 and json.loads(out)[0]["tokens"] == [text]
    code, out = cli("predict", "--model", model, "Zoë")
    assert code == 0 and "Zoë" in out and "entities:" in out


@pytest.mark.slow
def test_a_100k_token_line(model, tmp_path):
    words = ("Museums in Paris are amazing and Angela Merkel visited Berlin , " * 10000).split()
    assert len(words) >= 100_000
    path = write(tmp_path / "long.txt", " ".join(words[:100_000]) + "\n")
    code, out = cli("predict", "--model", model, "--input", path, "-f", "conll")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 100_001 and lines[-1] == ""
    assert [ln.split("\t")[0] for ln in lines[:5]] == words[:5]
    code, out = cli("predict", "--model", model, "--input", path)  # the table falls back
    assert code == 0 and out.startswith("100000 tokens") and "entities:" in out
    tagger = Tagger.load(model)
    assert len(tagger.tag([words[:100_000]])[0]) == 100_000


# ----------------------------------------------------------------------------- scale


def probe(*args) -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests/rss_probe.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.startswith("{") else done.stdout


@pytest.mark.slow
def test_10x_training_data_grows_peak_memory_by_the_index_arrays_only(tmp_path):
    """1x ≈ CoNLL-2003's training set (14k sentences, 200k windows), 10x ≈ 2M windows; the
    training loop gathers each batch's windows from index arrays, so the peak may grow by
    those arrays (and the streamed reading's constant buffers), never by materialised windows
    or the corpus as Python objects. About 15 s."""
    probe("synth", tmp_path / "x1.conll", 14041, 1)
    (tmp_path / "x10.conll").write_bytes((tmp_path / "x1.conll").read_bytes() * 10)
    probe("synth", tmp_path / "dev.conll", 200, 1)
    one = probe("train", tmp_path / "x1.conll", tmp_path / "dev.conll", tmp_path / "r1", 30)
    ten = probe("train", tmp_path / "x10.conll", tmp_path / "dev.conll", tmp_path / "r10", 30)
    assert ten["windows"] == 10 * one["windows"] >= 2_000_000
    growth = ten["peak_rss"] - one["peak_rss"]
    index_growth = ten["index_bytes"] - one["index_bytes"]
    slack = 40 * 2**20  # numpy's 16 MiB write buffer for .npz members, allocator slack
    assert growth <= index_growth + slack, (growth / 2**20, index_growth / 2**20)

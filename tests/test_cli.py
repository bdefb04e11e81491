"""The command line through typer's CliRunner, on tmp_path files."""

import json
from pathlib import Path

import pytest
from seqeval.metrics import f1_score, precision_score, recall_score
from typer.testing import CliRunner

from windowner.cli import app
from windowner.corpus import read_conll
from windowner.nn.activations import ACTIVATIONS
from windowner.nn.losses import OBJECTIVES

from .conftest import ROOT, embedded_data, strip_ansi

runner = CliRunner()


def run(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, strip_ansi(result.output)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One quick run of configs/adam.yaml on the embedded data."""
    out = tmp_path_factory.mktemp("runs") / "adam"
    code, text = run(
        "train",
        "--config",
        ROOT / "configs/adam.yaml",
        *embedded_data(),
        "--set",
        "train.epochs=12",
        "--out",
        out,
    )
    assert code == 0, text
    return out


def test_train_writes_a_tidy_run_directory(trained):
    for name in ("config.yaml", "model.npz", "last.npz", "metrics.jsonl", "summary.json"):
        assert (trained / name).is_file(), name
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, 13))
    for key in (
        "epoch",
        "step",
        "lr",
        "train_loss",
        "dev_precision",
        "dev_recall",
        "dev_f1",
        "seconds",
        "windows_per_s",
    ):
        assert key in records[0]
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["dev"]["f1"] > 70
    assert (trained.parent / "latest").resolve() == trained.resolve()


def test_predict_museums_in_paris(trained):
    code, text = run("predict", "--model", trained, "Museums in Paris are amazing")
    assert code == 0, text
    assert "Paris (LOC)" in text
    code, text = run("predict", "--model", trained, "-f", "json", "Museums in Paris are amazing")
    (record,) = json.loads(text)
    assert record["sentences"][0]["tokens"][2]["tag"] == "B-LOC"
    (paris,) = record["entities"]
    score = paris.pop("score")
    assert paris == {
        "text": "Paris",
        "label": "LOC",
        "start_char": 11,
        "end_char": 16,
        "sentence": 0,
        "start_token": 2,
        "end_token": 3,
    }
    assert score == record["sentences"][0]["tokens"][2]["score"] and 0 < score <= 1


def test_predict_conll_output_keeps_every_token_in_order(trained, tmp_path):
    src = tmp_path / "in.conll"
    src.write_text("Museums\nin\nParis\n\nNot\nall\nmuseums\n", encoding="utf-8")
    code, text = run(
        "predict",
        "--model",
        trained,
        "--input",
        src,
        "--input-format",
        "conll",
        "--output-format",
        "conll",
    )
    assert code == 0, text
    lines = text.splitlines()
    assert [ln.split("\t")[0] for ln in lines if ln] == [
        "Museums",
        "in",
        "Paris",
        "Not",
        "all",
        "museums",
    ]
    assert lines[3] == ""


def test_eval_json_agrees_with_seqeval(trained, tmp_path):
    data = ROOT / "data/test.conll"
    code, text = run("eval", "--model", trained, "--data", data, "--json")
    assert code == 0, text
    result = json.loads(text)
    for key in ("precision", "recall", "f1", "per_type", "token_accuracy", "n_sentences"):
        assert key in result
    # The same predictions, scored by seqeval.
    out = tmp_path / "pred.conll"
    code, pred_text = run(
        "predict",
        "--model",
        trained,
        "--input",
        data,
        "--input-format",
        "conll",
        "--output-format",
        "conll",
    )
    out.write_text(pred_text, encoding="utf-8")
    gold = [list(s.tags) for s in read_conll(data)]
    pred = [list(s.tags) for s in read_conll(out)]
    assert result["f1"] == pytest.approx(100 * f1_score(gold, pred))
    assert result["precision"] == pytest.approx(100 * precision_score(gold, pred))
    assert result["recall"] == pytest.approx(100 * recall_score(gold, pred))
    assert result["n_sentences"] == len(gold)


def test_eval_defaults_to_the_runs_dev_set(trained):
    code, text = run("eval", "--model", trained)
    assert code == 0, text
    assert "overall" in text and "token accuracy" in text


@pytest.mark.slow
def test_gradcheck_json_covers_every_activation_and_objective():
    code, text = run("gradcheck", "--json")
    assert code == 0, text
    rows = json.loads(text)
    combos = {(r["activation"], r["objective"]) for r in rows}
    fast_path = {("tanh", f"fast {o}") for o in OBJECTIVES}  # the path training runs
    assert combos == {(a, o) for a in ACTIVATIONS for o in OBJECTIVES} | fast_path  # 6 × 5 + 5
    sentence_level = {r["param"] for r in rows if r["objective"] in ("crf", "structured")}
    assert {"A", "start", "end"} <= sentence_level
    tables = {"E_affix", "E_shape", "E_doccase", "E_docseq"}
    with_tables = {r["objective"] for r in rows if r["param"] in tables}
    assert with_tables == set(OBJECTIVES) - {"ranking"}  # ranking takes no extra features
    assert all(r["max_rel_error"] < 1e-6 for r in rows)
    assert {"activation", "objective", "param", "max_rel_error"} <= set(rows[0])


def test_gradcheck_config(tmp_path):
    code, text = run("gradcheck", "--config", ROOT / "configs/seed.yaml")
    assert code == 0, text
    assert "ranking" in text and "sigmoid" in text


def test_seed_config_trains_and_predicts(tmp_path):
    out = tmp_path / "seed"
    code, text = run(
        "train",
        "--config",
        ROOT / "configs/seed.yaml",
        *embedded_data(test=False),
        "--set",
        "train.epochs=3",
        "--out",
        out,
    )
    assert code == 0, text
    assert "ENT" in text
    code, text = run("predict", "--model", out, "Museums in Paris are amazing")
    assert code == 0 and "Paris" in text


def test_version_and_help():
    code, text = run("--version")
    assert code == 0 and text.startswith("windowner ")
    for cmd in ("train", "eval", "predict", "gradcheck"):
        code, text = run(cmd, "--help")
        assert code == 0 and "Example:" in text, cmd


def test_no_model_yet_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, text = run("predict", "Museums in Paris")
    assert code == 2
    assert "windowner train --config configs/adam.yaml" in text

"""``windowner compare``: config differences, best epochs, curves, a sweep's parameter table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import strip_ansi
from tests.tiny_runs import write_config
from windowner import compare as cp
from windowner.cli import app
from windowner.train import train


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> list[Path]:
    """Two tiny runs that differ in hidden size and learning rate only."""
    base = write_config(tmp_path_factory.mktemp("base"), n_train=40, n_dev=15)
    root = tmp_path_factory.mktemp("runs")
    runs = []
    for name, hidden, lr in (("small", 6, 0.01), ("large", 16, 0.02)):
        overrides = {"model.hidden": hidden, "optimizer.lr": lr, "train.epochs": 3}
        runs.append(Path(train(base, overrides, out_dir=root / name)["run_dir"]))
    return runs


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_only_differing_keys_and_the_best_epoch(two_runs):
    result = cp.collect(two_runs)
    assert result["differing_keys"] == ["model.hidden", "optimizer.lr"]
    for row in result["runs"]:
        records = metrics(Path(row["path"]))
        best = max(records, key=lambda r: r["dev_f1"])
        assert row["best_dev_f1"] == best["dev_f1"] and row["best_epoch"] == best["epoch"]
        assert row["seconds"] == pytest.approx(sum(r["seconds"] for r in records))
        assert row["dev_f1"] == [r["dev_f1"] for r in records]
    scores = [r["best_dev_f1"] for r in result["runs"]]
    assert scores == sorted(scores, reverse=True)


def test_cli_table_chart_and_json(two_runs):
    shown = CliRunner().invoke(app, ["compare", *map(str, two_runs)])
    text = strip_ansi(shown.output)
    assert shown.exit_code == 0, text
    assert "hidden" in text and "lr" in text and "small" in text and "large" in text
    assert "keep_prob" not in text  # the same in both runs
    assert "epoch 1" in text and "│" in text
    as_json = CliRunner().invoke(app, ["compare", *map(str, two_runs), "--json"])
    assert [r["run"] for r in json.loads(as_json.output)["runs"]] == [
        r["run"] for r in cp.collect(two_runs)["runs"]
    ]


def test_overlay_chart_puts_each_curve_at_its_extremes():
    runs = [{"dev_f1": [10.0, 50.0, 90.0]}, {"dev_f1": [90.0, 50.0, 10.0]}]
    lines = cp.overlay_chart(runs, width=21, height=5)
    grid = [line.split("│", 1)[1].ljust(21) for line in lines[:5]]
    assert grid[0][0] == "B" and grid[0][20] == "A"
    assert grid[4][0] == "A" and grid[4][20] == "B"
    assert grid[2][10] == "*"  # both curves pass through the middle point
    assert lines[0].startswith(" 90.00") and lines[4].startswith("≤ 10.0")


def test_overlay_chart_range_ignores_a_low_first_epoch():
    lines = cp.overlay_chart([{"dev_f1": [5.0, 80.0, 90.0]}], width=3, height=3)
    grid = [line.split("│", 1)[1].ljust(3) for line in lines[:3]]
    assert lines[2].startswith("≤ 80.0") and grid == ["  A", "   ", "AA "]


def test_png(two_runs, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    shown = CliRunner().invoke(app, ["compare", *map(str, two_runs), "--png", str(png)])
    assert shown.exit_code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_dir_gets_a_parameter_table(two_runs, tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text(json.dumps({"source": "x.yaml", "spec": {}}))
    for number, run in enumerate(two_runs):
        copy = shutil.copytree(run, sweep / f"trial-{number:04d}")
        best = max(r["dev_f1"] for r in metrics(run))
        params = {"model.hidden": [6, 16][number]}
        trial = {"number": number, "params": params, "state": "COMPLETE", "value": best}
        (sweep / f"{copy.name}.json").write_text(json.dumps(trial))  # beside the run
    result = cp.collect([sweep])
    table = result["sweep"]["parameters"]
    assert [row["param"] for row in table] == ["model.hidden"]
    means = {g["value"]: g["mean"] for g in table[0]["groups"]}
    by_hidden = {str(r["config"]["model.hidden"]): r["best_dev_f1"] for r in result["runs"]}
    assert means == by_hidden
    assert table[0]["spread"] == pytest.approx(max(means.values()) - min(means.values()))
    assert result["sweep"]["states"] == {"COMPLETE": 2}


def test_not_a_run_dir_is_a_usage_error(tmp_path):
    shown = CliRunner().invoke(app, ["compare", str(tmp_path)])
    assert shown.exit_code == 2 and "not a run directory" in strip_ansi(shown.output)

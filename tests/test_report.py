"""``report``, ``predict --explain`` and ``gradcheck --trace``: on tiny runs, through the CLI."""

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from windowner import report as rp
from windowner.cli import app
from windowner.corpus import Sentence
from windowner.explain import explain
from windowner.gradcheck import dense_grad
from windowner.render import bar, sparkline, window_text
from windowner.tagger import Tagger, load_checkpoint
from windowner.trace import ROW, notes_batch, notes_trace, trace_lines

from .conftest import ROOT, strip_ansi

runner = CliRunner()
MUSEUMS = "Museums in Paris are amazing"


def run(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, strip_ansi(result.output), result.stdout


def train_run(out: Path, config: str, *overrides: str) -> Path:
    data = [f"data.{s}={ROOT}/data/{s}.conll" for s in ("train", "dev", "test")]
    sets = [arg for o in (*data, *overrides) for arg in ("--set", o)]
    code, text, _ = run("train", "--config", ROOT / config, *sets, "--out", out)
    assert code == 0, text
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """configs/adam.yaml, smaller and for 3 epochs."""
    out = tmp_path_factory.mktemp("runs") / "adam"
    return train_run(
        out, "configs/adam.yaml", "train.epochs=3", "model.hidden=32", "embeddings.dim=16"
    )


@pytest.fixture(scope="module")
def ranking_run(tmp_path_factory) -> Path:
    """configs/seed.yaml (the notes' ranking model, untyped ENT spans) for 2 epochs."""
    return train_run(
        tmp_path_factory.mktemp("runs") / "seed", "configs/seed.yaml", "train.epochs=2"
    )


# ----------------------------------------------------------------------------- gradcheck --trace


def test_trace_numbers_are_the_models_own_gradients():
    t = notes_trace()
    model = t.model
    loss, grads = model.loss_and_grads(notes_batch())
    assert abs(t.J - loss) < 1e-15 and t.J > 0  # the hinge is active
    for name, param in model.params.items():
        np.testing.assert_allclose(
            dense_grad(t.grads[name], param.shape), dense_grad(grads[name], param.shape), atol=1e-14
        )
    assert t.w14_analytic == grads["W"][0, 3]  # the notes count from 1: W₁₄ is W[0, 3]


def test_trace_w14_follows_the_notes_and_matches_a_central_difference():
    t = notes_trace()
    model, batch = t.model, notes_batch()
    U1 = model.params["U"][ROW, 0]
    # the notes' ⑧: ∂/∂W₁₄ = a₄⁽¹⁾ f′(z₁⁽²⁾) W₁⁽²⁾ δ⁽³⁾, once for s (δ⁽³⁾ = −1), once for s_c (+1)
    by_hand = sum(w.x[3] * w.a[0] * (1 - w.a[0]) * U1 * w.ds for w in (t.true, t.corrupt))
    assert t.w14_analytic == pytest.approx(by_hand, rel=1e-12)
    W, eps = model.params["W"], 1e-6
    W[0, 3] += eps
    plus = model.loss_and_grads(batch)[0]
    W[0, 3] -= 2 * eps
    minus = model.loss_and_grads(batch)[0]
    W[0, 3] += eps
    assert t.w14_numeric == pytest.approx((plus - minus) / (2 * eps), rel=1e-6)
    assert t.w14_analytic == pytest.approx(t.w14_numeric, rel=1e-6)
    # δ at the hidden layer is f′(z) ∘ U δ; ∇b = δ + δ_c; ∇W = δ xᵀ + δ_c x_cᵀ
    for w in (t.true, t.corrupt):
        np.testing.assert_allclose(w.delta, w.a * (1 - w.a) * model.params["U"][:, 0] * w.ds)
    np.testing.assert_allclose(t.grads["b"], t.true.delta + t.corrupt.delta)
    expected_w = np.outer(t.true.delta, t.true.x) + np.outer(t.corrupt.delta, t.corrupt.x)
    np.testing.assert_allclose(t.grads["W"], expected_w, atol=1e-15)


def test_trace_has_the_notes_shapes_and_words():
    t = notes_trace()
    p = t.model.params
    assert (p["W"].shape, p["b"].shape, p["U"].shape) == ((8, 20), (8,), (8, 1))
    assert t.true.x.shape == (20,) and t.model.spec.activation == "sigmoid"
    assert t.model.spec.margin == 1.0 and t.model.spec.objective == "ranking"
    assert set(t.word_grads()) == {"museums", "in", "paris", "are", "amazing", "not", "all"}
    assert all(len(line) <= 80 for line in trace_lines(t))


def test_gradcheck_trace_prints_every_step_the_notes_walk():
    t = notes_trace()
    code, text, _ = run("gradcheck", "--trace")
    assert code == 0, text
    for step in (
        "Museums in [Paris] are amazing",
        "Not all [museums] in Paris",
        "z = W x + b",
        "a = f(z) = σ(z)",
        "s = Uᵀ a",
        "s_c = Uᵀ a_c",
        "J = max(0, Δ + s_c − s)",
        "δ⁽³⁾ = ∂J/∂s = -1",
        "δ⁽²⁾ = f′(z) ∘ U δ⁽³⁾",
        "∇W = δ xᵀ + δ_c x_cᵀ",
        "∇b = δ + δ_c",
        "∇e(paris)",
        "⑦⑧",
    ):
        assert step in text, step
    assert f"analytic {t.w14_analytic:+.12f}" in text
    assert f"numeric  {t.w14_numeric:+.12f}" in text
    assert f"= {t.J:.6f} > 0" in text


def test_gradcheck_trace_json_and_misuse():
    code, _, stdout = run("gradcheck", "--trace", "--json")
    assert code == 0
    data = json.loads(stdout)
    t = notes_trace()
    assert data["W14"]["analytic"] == t.w14_analytic and data["ok"] is True
    assert data["grad_W"][0][3] == t.w14_analytic and data["J"] == t.J
    code, text, _ = run("gradcheck", "--trace", "--config", ROOT / "configs/seed.yaml")
    assert code == 2 and "--trace" in text


# ----------------------------------------------------------------------------- report


def test_report_terminal_shows_curves_types_confusion_and_errors(tiny_run):
    code, text, _ = run("report", tiny_run)
    assert code == 0, text
    records = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    best = json.loads((tiny_run / "summary.json").read_text())["best_epoch"]
    for r in records:  # one row per epoch: number, loss, dev F1 and lr
        star = " ★" if r["epoch"] == best else ""
        cells = (f"{r['train_loss']:.2e}", f"{r['dev_f1']:.2f}", f"{r['lr']:.2e}")
        row = rf"^\s*{r['epoch']}{star}\s+" + " .*".join(re.escape(c) for c in cells)
        assert re.search(row, text, re.M), row
    for kind in ("LOC", "MISC", "ORG", "PER", "overall"):
        assert re.search(rf"│ {kind}\s+│", text), kind
    assert "train loss" in text and "dev F1" in text and f"best epoch {best}" in text
    assert "tag confusion on dev" in text and re.search(r"^ B-LOC\s+\d", text, re.M)
    assert "most frequent token errors" in text


def test_report_fits_80_columns(tiny_run):
    console = Console(width=80, file=io.StringIO(), record=True)
    rp.render(console, rp.collect(tiny_run))
    lines = console.export_text().splitlines()
    assert len(lines) > 20
    assert max(len(line) for line in lines) <= 80


def test_report_json_is_consistent_with_the_run(tiny_run):
    code, _, stdout = run("report", tiny_run, "--json", "--top", "3")
    assert code == 0
    data = json.loads(stdout)
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert [r["epoch"] for r in data["epochs"]] == [1, 2, 3]
    assert data["best_epoch"] == summary["best_epoch"]
    assert data["dev"]["f1"] == pytest.approx(summary["dev"]["f1"])
    assert set(data["dev"]["per_type"]) == {"LOC", "MISC", "ORG", "PER"}
    m = np.array(data["confusion"]["matrix"])
    assert data["confusion"]["labels"][0] == "O" and m.sum() == data["errors"]["n_tokens"]
    assert m.sum() - np.trace(m) == data["errors"]["n_errors"] > 0
    top = data["errors"]["top"]
    assert 0 < len(top) <= 3 and top[0]["count"] >= top[-1]["count"]
    for e in top:
        assert e["gold"] != e["pred"] and e["window"][2] == e["token"] and len(e["window"]) == 5


def test_report_png_is_a_png(tiny_run, tmp_path):
    image = pytest.importorskip("matplotlib.image")
    path = tmp_path / "out" / "report.png"
    code, text, _ = run("report", tiny_run, "--png", path)
    assert code == 0, text
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(path)
    assert pixels.shape[0] > 400 and pixels.shape[1] > 600


def test_report_png_without_matplotlib_names_the_extra(tiny_run, tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # makes ``import name`` fail
    code, text, _ = run("report", tiny_run, "--png", tmp_path / "r.png")
    assert code == 2
    assert "windowner[plot]" in text and "make plot" in text
    assert not (tmp_path / "r.png").exists()


def test_report_on_a_ranking_run(ranking_run):
    code, text, stdout = run("report", ranking_run, "--json")
    assert code == 0, text
    data = json.loads(stdout)
    assert data["objective"] == "ranking"
    assert data["confusion"]["labels"] == ["O", "B-ENT", "I-ENT"]
    assert set(data["dev"]["per_type"]) <= {"ENT"}
    code, text, _ = run("report", ranking_run)
    assert code == 0 and re.search(r"│ ENT\s+│", text) and re.search(r"^ I-ENT\s+\d", text, re.M)


def test_report_without_a_run_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, text, _ = run("report")
    assert code == 2 and "windowner train --config configs/adam.yaml" in text
    (tmp_path / "empty").mkdir()
    code, text, _ = run("report", tmp_path / "empty")
    assert code == 2 and "metrics.jsonl" in text


def test_report_without_a_dev_set_shows_the_curves(tiny_run, tmp_path):
    tagger, _, meta = load_checkpoint(tiny_run / "model.npz")
    tagger.config = {**tagger.config, "data": {**tagger.config["data"], "dev": None}}
    tagger.save(tmp_path / "model.npz", {"epoch": meta["epoch"]})
    (tmp_path / "metrics.jsonl").write_bytes((tiny_run / "metrics.jsonl").read_bytes())
    code, text, _ = run("report", tmp_path)
    assert code == 0, text
    assert "per epoch" in text and "give --data FILE" in text and "confusion" not in text
    code, text, _ = run("report", tmp_path, "--data", ROOT / "data/dev.conll")
    assert code == 0 and "tag confusion on dev" in text


def test_core_imports_stay_light():
    code = "import sys, windowner.cli, windowner.report, windowner.explain, windowner.trace; "
    code += "print(sorted(m for m in ('matplotlib', 'plotext') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_report_help_has_an_example():
    code, text, _ = run("report", "--help")
    assert code == 0 and "Example:" in text


# ----------------------------------------------------------------------------- predict --explain


def test_explain_scores_and_margins_are_the_models(tiny_run):
    tagger = Tagger.load(tiny_run / "model.npz")
    tokens = MUSEUMS.split()
    tags, (explained,) = explain(tagger, [tokens])
    assert tags == tagger.tag([tokens])
    scores = tagger.scores(tagger.encode([Sentence(tuple(tokens), ("O",) * len(tokens))]))
    for e, row in zip(explained, scores, strict=True):
        assert list(e.scores) == tagger.output_tags
        np.testing.assert_allclose(list(e.scores.values()), row, rtol=1e-6)
        top2 = np.sort(row)[::-1][:2]
        assert e.best == tagger.output_tags[int(np.argmax(row))]
        assert e.margin == pytest.approx(top2[0] - top2[1], rel=1e-5) and e.margin >= 0
    assert [e.window[2] for e in explained] == ["museums", "in", "paris", "are", "<unk>"]
    assert explained[0].window[:2] == ["<s>", "<s>"]


def test_predict_explain_table_shows_windows_scores_and_margins(tiny_run):
    code, text, _ = run("predict", "--model", tiny_run, "--explain", MUSEUMS)
    assert code == 0, text
    assert "museums in [paris] are" in text  # Paris's window as the model sees it
    assert "margin: best − 2nd" in text and "scores of every tag" in text
    assert re.search(r"^ Paris\s+-?\d+\.\d\d(\s+-?\d+\.\d\d){8}\s*$", text, re.M)  # 9 tag scores
    assert re.search(r"^ Paris .*\S+ − \S+\s+\d+\.\d\d\s*$", text, re.M)
    assert "entities:" in text


def test_predict_explain_json_and_conll(tiny_run, ranking_run):
    code, _, stdout = run("predict", "--model", tiny_run, "--explain", "-f", "json", MUSEUMS)
    assert code == 0
    (record,) = json.loads(stdout)
    assert record["tokens"] == MUSEUMS.split() and len(record["explain"]) == 5
    paris = record["explain"][2]
    assert paris["window"] == ["museums", "in", "paris", "are", "<unk>"]
    assert len(paris["scores"]) == 9 and paris["tag"] == record["tags"][2]
    ranked = sorted(paris["scores"].values(), reverse=True)
    assert paris["margin"] == pytest.approx(ranked[0] - ranked[1])
    code, _, stdout = run("predict", "--model", ranking_run, "--explain", "-f", "json", MUSEUMS)
    e = json.loads(stdout)[0]["explain"][2]
    assert set(e["scores"]) == {"s"} and e["margin"] == pytest.approx(
        abs(e["scores"]["s"] - e["threshold"])
    )
    code, text, _ = run("predict", "--model", tiny_run, "--explain", "-f", "conll", MUSEUMS)
    assert code == 2 and "--explain" in text


# ----------------------------------------------------------------------------- helpers


def test_render_helpers():
    assert window_text(["in", "paris", "are"]) == "in [paris] are"
    assert sparkline([0, 1, 2, 3]) == "▁▃▆█" and len(sparkline(list(range(100)), 30)) == 30
    assert bar(1.0, 0.0, 1.0, 4) == "████" and bar(0.5, 0.0, 1.0, 4) == "██  "
    assert bar(0.0, 0.0, 1.0, 4) == "    "

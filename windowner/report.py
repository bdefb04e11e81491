"""``windowner report``: what a finished (or interrupted) run did, at a glance.

``collect`` reads a run directory — ``metrics.jsonl`` (one record per epoch), ``model.npz``
(the best dev-F1 model, with its config) — runs the model on the run's dev set and returns one
JSON-ready dict: the learning curves, the best epoch, per-type P/R/F1, the tag confusion matrix
and the most frequent token errors with an example window each. ``render`` draws it with rich
in 80 columns; ``write_png`` draws the curves and the confusion matrix with matplotlib (the
optional ``plot`` extra, imported only there).

Where to change what: which run is read is windowner.runs.find_run; the numbers are
``collect`` (and ``dev_analysis``/``top_errors``); the terminal layout is ``render`` and its
tables; the PNG is ``write_png``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from windowner.corpus import Sentence, decode_bytes, read_conll
from windowner.errors import DataError, UsageError
from windowner.evaluate import gold_tags
from windowner.metrics import evaluate
from windowner.render import bar, scores_table, sparkline, window_text
from windowner.runs import find_run
from windowner.tagger import Tagger, load_checkpoint

MAX_ROWS = 30  # per-epoch table rows; longer runs show evenly spaced epochs plus best and last
PLOT_EXTRA = "pip install 'windowner[plot]' (or make plot)"


# ----------------------------------------------------------------------------- collect


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The per-epoch records of ``metrics.jsonl``."""
    records = []
    for n, line in enumerate(read_metrics_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            raise DataError(f"{path}:{n}: not JSON ({reason})") from None
        problem = record_problem(record)
        if problem:
            raise DataError(f"{path}:{n}: not an epoch record ({problem})")
        records.append(record)
    if not records:
        raise UsageError(f"{path}: no epochs recorded yet")
    return records


def record_problem(record: Any) -> str | None:
    """What keeps ``record`` from being a metrics.jsonl epoch record (None if nothing)."""
    if not isinstance(record, dict):
        return "not a JSON object"
    epoch = record.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        return "epoch is not a number ≥ 1"
    for key in ("train_loss", "lr", "dev_f1"):
        value = record.get(key, 0.0 if key == "dev_f1" else None)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"{key} is not a number"
    return None


MAX_METRICS_BYTES = 64 << 20  # one short line per epoch; more is not a metrics file


def read_metrics_text(path: Path) -> str:
    """The text of ``metrics.jsonl``, at most ``MAX_METRICS_BYTES``; DataError if it is
    larger, binary or not UTF-8."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_METRICS_BYTES + 1)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if len(raw) > MAX_METRICS_BYTES:
        raise DataError(f"{path}: larger than {MAX_METRICS_BYTES} bytes; not a metrics file")
    if b"\0" in raw:
        raise DataError(f"{path}: NUL byte (a binary file, not metrics.jsonl)")
    return decode_bytes(raw, path)


def dev_sentences(tagger: Tagger, data: Path | None) -> tuple[Path, list[Sentence]] | None:
    """The dev set named by ``data`` or by the model's stored config (None if it has none)."""
    if data is None:
        dev = tagger.config.get("data", {}).get("dev")
        if not dev:
            return None
        data = Path(dev)
        if not data.exists():
            raise UsageError(f"the run's dev set {data} is not found from here; give --data FILE")
    return data, read_conll(data, tagger.config.get("data", {}).get("scheme", "iob2"))


def confusion_matrix(pairs: dict[tuple[str, str], int], labels: list[str]) -> dict[str, Any]:
    """{(gold, pred): count} → {"labels": L, "matrix": (L, L) counts, rows gold, cols pred}.
    Tags outside ``labels`` (e.g. a dev tag never seen in training) are appended."""
    extra = sorted({t for pair in pairs for t in pair} - set(labels))
    labels = list(labels) + extra
    index = {t: i for i, t in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for (g, p), n in pairs.items():
        matrix[index[g], index[p]] += n
    return {"labels": labels, "matrix": matrix.tolist()}


def padded_window(tokens: tuple[str, ...], i: int, window: int) -> list[str]:
    """The ``window`` words around token i, ``<s>``/``</s>`` past the sentence's ends."""
    half = window // 2
    padded = ["<s>"] * half + list(tokens) + ["</s>"] * half
    return padded[i : i + window]


def top_errors(
    sents: list[Sentence], gold: list[list[str]], pred: list[list[str]], window: int, top: int
) -> dict[str, Any]:
    """Token errors (gold tag ≠ predicted tag) grouped by (token, gold, pred): the ``top``
    most frequent with the first window each occurs in, and the totals."""
    counts: Counter[tuple[str, str, str]] = Counter()
    example: dict[tuple[str, str, str], list[str]] = {}
    for sent, gs, ps in zip(sents, gold, pred, strict=True):
        for i, (token, g, p) in enumerate(zip(sent.tokens, gs, ps, strict=True)):
            if g != p:
                key = (token, g, p)
                counts[key] += 1
                example.setdefault(key, padded_window(sent.tokens, i, window))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return {
        "n_errors": sum(counts.values()),
        "n_tokens": sum(len(g) for g in gold),
        "top": [
            {"token": t, "gold": g, "pred": p, "count": n, "window": example[(t, g, p)]}
            for (t, g, p), n in ranked
        ],
    }


def dev_analysis(tagger: Tagger, sents: list[Sentence], top: int) -> dict[str, Any]:
    """Scores, confusion matrix and top errors of the model on ``sents``."""
    pred = tagger.tag_encoded(tagger.encode(sents))
    gold = gold_tags(tagger, sents)
    result = evaluate(gold, pred)
    return {
        "scores": result.to_dict(),
        "confusion": confusion_matrix(result.confusion, tagger.output_tags),
        "errors": top_errors(sents, gold, pred, tagger.model.spec.window, top),
    }


def collect(run: Path | None = None, data: Path | None = None, top: int = 10) -> dict[str, Any]:
    """Everything the report shows, as one JSON-ready dict."""
    if top < 0:
        raise UsageError("--top must be ≥ 0")
    path = find_run(run)
    epochs = read_metrics(path / "metrics.jsonl")
    tagger, _, meta = load_checkpoint(path / "model.npz")
    best = int(meta.get("epoch", 0)) or None
    best_record = next((r for r in epochs if r["epoch"] == best), {})
    report: dict[str, Any] = {
        "run": str(path),
        "objective": tagger.objective,
        "epochs": epochs,
        "best_epoch": best,
        "best_dev_f1": best_record.get("dev_f1"),
        "dev": None,
        "confusion": None,
        "errors": None,
    }
    dev = dev_sentences(tagger, data)
    if dev is not None:
        analysis = dev_analysis(tagger, dev[1], top)
        report["dev"] = {"data": str(dev[0]), **analysis.pop("scores")}
        report.update(analysis)
    return report


# ----------------------------------------------------------------------------- terminal


def shown_epochs(epochs: list[dict[str, Any]], best: int | None) -> list[dict[str, Any]]:
    """At most MAX_ROWS records: all of them, or evenly spaced ones plus the best and last."""
    if len(epochs) <= MAX_ROWS:
        return epochs
    keep = {round(i * (len(epochs) - 1) / (MAX_ROWS - 3)) for i in range(MAX_ROWS - 2)}
    keep |= {len(epochs) - 1} | {i for i, r in enumerate(epochs) if r["epoch"] == best}
    return [epochs[i] for i in sorted(keep)]


def summary_lines(report: dict[str, Any]) -> list[str]:
    """One sparkline per curve, with its first, last and extreme values."""
    ep = report["epochs"]
    loss = [r["train_loss"] for r in ep]
    lr = [r["lr"] for r in ep]
    lines = [
        f"train loss  {sparkline(loss, 30):<30}  {loss[0]:.3g} → {loss[-1]:.3g}, "
        f"min {min(loss):.3g}",
    ]
    f1 = [r["dev_f1"] for r in ep if "dev_f1" in r]
    if f1:
        best = report["best_epoch"]
        lines.append(
            f"dev F1      {sparkline(f1, 30):<30}  {f1[0]:.2f} → {f1[-1]:.2f}, "
            f"best {report['best_dev_f1'] or max(f1):.2f} @ {best}"
        )
    lines.append(f"lr (end)    {sparkline(lr, 30):<30}  {lr[0]:.3g} → {lr[-1]:.3g}")
    return lines


def curves_table(report: dict[str, Any]) -> Table:
    """Per epoch: train loss and dev F1 as numbers and bars, the learning rate at its end."""
    ep, best = report["epochs"], report["best_epoch"]
    loss = [r["train_loss"] for r in ep]
    f1 = [r["dev_f1"] for r in ep if "dev_f1" in r]
    shown = shown_epochs(ep, best)
    title = "per epoch" + ("" if len(shown) == len(ep) else f" ({len(shown)} of {len(ep)} shown)")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("epoch", justify="right")
    table.add_column("train loss", no_wrap=True)
    if f1:
        table.add_column("dev F1", no_wrap=True)
    table.add_column("lr (end)", justify="right")
    for r in shown:
        cells = [f"{r['train_loss']:.2e} {bar(r['train_loss'], 0.0, max(loss), 14)}"]
        if f1:
            value = r.get("dev_f1")
            lo = min(f1) - 0.1 * (max(f1) - min(f1))  # the worst epoch still shows a sliver
            cells.append("" if value is None else f"{value:6.2f} {bar(value, lo, max(f1), 14)}")
        star = " ★" if r["epoch"] == best else "  "
        table.add_row(f"{r['epoch']}{star}", *cells, f"{r['lr']:.2e}",
                      style="bold" if r["epoch"] == best else None)  # fmt: skip
    return table


def confusion_table(conf: dict[str, Any]) -> Table:
    """Rows gold tags, columns predicted tags; the diagonal (right) in green, errors in red."""
    labels, matrix = conf["labels"], conf["matrix"]
    table = Table(
        title="tag confusion on dev (rows gold, columns predicted, tokens)", title_justify="left",
        box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0, 0, 1),
    )  # fmt: skip
    table.add_column("gold", no_wrap=True)
    for label in labels:
        table.add_column(label, justify="right")
    for i, (label, row) in enumerate(zip(labels, matrix, strict=True)):
        cells = [
            Text("·" if n == 0 else str(n), style="green" if i == j else ("red" if n else "dim"))
            for j, n in enumerate(row)
        ]
        table.add_row(label, *cells)
    return table


def errors_table(errors: dict[str, Any]) -> Table:
    """The most frequent (token, gold, predicted) errors with one example window each."""
    rate = 100.0 * errors["n_errors"] / max(errors["n_tokens"], 1)
    table = Table(
        title=f"most frequent token errors ({errors['n_errors']} of {errors['n_tokens']} "
        f"dev tokens, {rate:.1f}%)",
        title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
    )  # fmt: skip
    for col in ("n", "token", "gold", "predicted", "example window"):
        table.add_column(col, justify="right" if col == "n" else "left", overflow="fold")
    for e in errors["top"]:
        table.add_row(str(e["count"]), Text(e["token"]), e["gold"], e["pred"],
                      Text(window_text(e["window"])))  # fmt: skip
    return table


def render(console: Console, report: dict[str, Any]) -> None:
    """The whole report on ``console`` (readable at 80 columns)."""
    ep = report["epochs"]
    best = report["best_epoch"]
    console.print(
        Text(f"run {report['run']}: {report['objective']}, {len(ep)} epochs, best epoch {best}")
    )
    console.print()
    for line in summary_lines(report):
        console.print(Text(line))
    console.print()
    console.print(curves_table(report))
    console.print()
    dev = report["dev"]
    if dev is None:
        console.print(Text("the run has no dev set: give --data FILE for scores and errors"))
        return
    console.print(scores_table(dev, f"dev {dev['data']} (model of epoch {best})"))
    console.print(Text(f"token accuracy {dev['token_accuracy']:.2f}%"))
    console.print()
    console.print(confusion_table(report["confusion"]))
    if report["errors"]["top"]:
        console.print()
        console.print(errors_table(report["errors"]))


# ----------------------------------------------------------------------------- PNG


def write_png(report: dict[str, Any], path: Path) -> None:
    """The curves (train loss, dev F1, learning rate) and the confusion matrix as one PNG.

    Needs matplotlib (the ``plot`` extra); without it a UsageError names the extra."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError(f"report --png needs matplotlib: {PLOT_EXTRA}") from None
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    plot_curves(report, axes[0, 0], axes[0, 1], axes[1, 0])
    plot_confusion(report["confusion"], axes[1, 1], fig)
    fig.suptitle(f"windowner report: {Path(report['run']).name} ({report['objective']})")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=90)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write ({exc.strerror})") from None


def plot_curves(report: dict[str, Any], ax_loss, ax_f1, ax_lr) -> None:
    """Three line plots against the epoch; the best epoch as a dashed line."""
    from matplotlib.ticker import MaxNLocator

    ep = report["epochs"]
    x = [r["epoch"] for r in ep]
    best = report["best_epoch"]
    loss = [r["train_loss"] for r in ep]
    ax_loss.plot(x, loss, marker="o", ms=3)
    ax_loss.set(title="train loss", xlabel="epoch")
    positive = [v for v in loss if v > 0]
    if positive and max(loss) > 100 * min(positive):  # a hinge loss can reach exactly 0
        ax_loss.set_yscale("symlog", linthresh=min(positive))
        ax_loss.set_title(f"train loss (log scale above {min(positive):.1e})")
    dev = [(r["epoch"], r["dev_f1"]) for r in ep if "dev_f1" in r]
    if dev:
        ax_f1.plot(*zip(*dev, strict=True), marker="o", ms=3, color="tab:green")
    ax_f1.set(title=f"dev F1 (best {report['best_dev_f1'] or 0:.2f} at epoch {best})",
              xlabel="epoch")  # fmt: skip
    lr = [r["lr"] for r in ep]
    ax_lr.plot(x, lr, marker="o", ms=3, color="tab:orange")
    ax_lr.set(title="learning rate (end of epoch)", xlabel="epoch", ylim=(0, 1.15 * max(lr)))
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    for ax in (ax_loss, ax_f1, ax_lr):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best:
            ax.axvline(best, color="grey", ls="--", lw=1)
        ax.grid(alpha=0.3)


def plot_confusion(conf: dict[str, Any], ax, fig) -> None:
    """Row-normalised colours (share of each gold tag), raw counts written in the cells."""
    labels, m = conf["labels"], np.asarray(conf["matrix"], dtype=float)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the gold tag")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(title="dev tag confusion (counts)", xlabel="predicted", ylabel="gold")
    for (i, j), n in np.ndenumerate(m):
        if n:
            color = "white" if share[i, j] > 0.6 else "black"
            ax.text(j, i, f"{int(n)}", ha="center", va="center", fontsize=7, color=color)

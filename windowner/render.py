"""Rich rendering: results and predictions (stdout), training progress (stderr).

Where to change what: the scores table is ``scores_table``/``print_evaluation``; predictions
(table, JSON, CoNLL) are ``render_predictions``; the training progress bar and per-epoch line
are ``ConsoleReporter``/``epoch_line``; the report's sparklines and bars are at the end.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from windowner.evaluate import entity_records

if TYPE_CHECKING:
    from rich.progress import Progress


def scores_table(result: dict[str, Any], title: str) -> Table:
    """Per-type and overall precision/recall/F1 (conlleval semantics) as a rich table."""
    table = Table(title=title, title_justify="left")
    for col in ("type", "precision", "recall", "F1", "gold", "predicted"):
        table.add_column(col, justify="left" if col == "type" else "right")
    for kind, s in result["per_type"].items():
        table.add_row(
            kind,
            f"{s['precision']:.2f}",
            f"{s['recall']:.2f}",
            f"{s['f1']:.2f}",
            str(s["n_gold"]),
            str(s["n_pred"]),
        )
    table.add_row(
        "overall",
        f"{result['precision']:.2f}",
        f"{result['recall']:.2f}",
        f"{result['f1']:.2f}",
        str(result["n_gold"]),
        str(result["n_pred"]),
        style="bold",
    )
    return table


def print_evaluation(console: Console, result: dict[str, Any], title: str) -> None:
    console.print(scores_table(result, title))
    extra = f"token accuracy {result['token_accuracy']:.2f}%"
    if "ranking_accuracy" in result:
        extra += f", pairwise ranking accuracy {result['ranking_accuracy']:.2f}%"
    console.print(f"{extra} ({result['n_sentences']} sentences, {result['n_tokens']} tokens)")


# ----------------------------------------------------------------------------- predictions

TABLE_MAX_TOKENS = 2000  # a rich table that long is slow and unreadable: plain lines instead


def render_predictions(
    console: Console, sentences: list[list[str]], tags: list[list[str]], output_format: str
) -> None:
    """Print predictions as a table (default), JSON (one object per sentence) or CoNLL."""
    if output_format == "conll":
        lines = []
        for tokens, sent_tags in zip(sentences, tags, strict=True):
            lines += [f"{t}\t{g}" for t, g in zip(tokens, sent_tags, strict=True)] + [""]
        sys.stdout.write("\n".join(lines) + "\n")
        return
    records = [
        {"tokens": list(tok), "tags": list(tg), "entities": entity_records(tok, tg)}
        for tok, tg in zip(sentences, tags, strict=True)
    ]
    if output_format == "json":
        import json

        sys.stdout.write(json.dumps(records, ensure_ascii=False, indent=2) + "\n")
        return
    if sum(len(rec["tokens"]) for rec in records) > TABLE_MAX_TOKENS:
        sys.stdout.write(plain_predictions(records))  # thousands of tables take minutes
        return
    for i, rec in enumerate(records, 1):
        title = f"sentence {i}" if len(records) > 1 else None
        if len(rec["tokens"]) > TABLE_MAX_TOKENS:
            print_long_sentence(console, rec, title)
        else:
            console.print(predictions_table(rec, title))
        ents = ", ".join(f"{e['text']} ({e['type']})" for e in rec["entities"]) or "none"
        console.print(f"entities: {ents}", highlight=False, markup=False)


def plain_predictions(records: list[dict[str, Any]]) -> str:
    """Many sentences as plain text: per sentence a header, ``token  tag`` lines and the
    entities line (what the tables show, without the tables)."""
    out: list[str] = []
    for i, rec in enumerate(records, 1):
        width = min(max(map(len, rec["tokens"]), default=1), 40)
        title = f"sentence {i}: " if len(records) > 1 else ""
        out.append(f"{title}{len(rec['tokens'])} tokens")
        out += [f"{t:<{width}}  {g}" for t, g in zip(rec["tokens"], rec["tags"], strict=True)]
        ents = ", ".join(f"{e['text']} ({e['type']})" for e in rec["entities"]) or "none"
        out.append(f"entities: {ents}")
    return "\n".join(out) + "\n"


def print_long_sentence(console: Console, rec: dict[str, Any], title: str | None) -> None:
    """A sentence too long for a table: a header line, then one ``token  tag`` line each."""
    width = max(len(t) for t in rec["tokens"][:TABLE_MAX_TOKENS])
    lines = [f"{t:<{width}}  {g}" for t, g in zip(rec["tokens"], rec["tags"], strict=True)]
    header = f"{title}: " if title else ""
    console.print(f"{header}{len(lines)} tokens", highlight=False, markup=False)
    sys.stdout.write("\n".join(lines) + "\n")


def predictions_table(rec: dict[str, Any], title: str | None) -> Table:
    """One sentence's tokens and tags; entity tokens in bold."""
    table = Table(title=title, title_justify="left")
    table.add_column("token")
    table.add_column("tag")
    for token, tag in zip(rec["tokens"], rec["tags"], strict=True):
        table.add_row(token, tag, style=None if tag == "O" else "bold")
    return table


# ----------------------------------------------------------------------------- training progress


class ConsoleReporter:
    """Training events on stderr: a live progress bar on a terminal, else one line per epoch."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self._bar: Progress | None = None
        self.task = None

    def log(self, message: str) -> None:
        self.console.print(message, highlight=False, markup=False)

    def epoch_start(self, epoch: int, epochs: int, n_batches: int, done: int) -> None:
        if not self.live:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  "
                "{task.fields[wps]:,.0f} win/s"
            ),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._bar.start()
        self.task = self._bar.add_task(
            "train", total=n_batches, completed=done, loss=0.0, lr=0.0, wps=0.0
        )

    def batch_progress(self, batches_done: int, loss: float, lr: float, wps: float) -> None:
        if self._bar is not None:
            self._bar.update(self.task, completed=batches_done, loss=loss, lr=lr, wps=wps)

    def epoch_end(self, record: dict[str, Any]) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        self.console.print(epoch_line(record), highlight=False, markup=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def epoch_line(record: dict[str, Any]) -> str:
    """One plain line per epoch."""
    line = (
        f"epoch {record['epoch']:>3}  step {record['step']:>7}  "
        f"loss {record['train_loss']:.4f}  lr {record['lr']:.3g}"
    )
    if "dev_f1" in record:
        line += (
            f"  dev P {record['dev_precision']:.2f} R {record['dev_recall']:.2f} "
            f"F1 {record['dev_f1']:.2f}"
        )
    return line + f"  {record['seconds']:.1f}s  {record['windows_per_s']:,.0f} win/s"


def gradcheck_table(results: list) -> Table:
    """One row per (activation, objective, parameter) with the worst relative error."""
    table = Table(
        title="gradient check (float64, central differences, ε = 1e-5)", title_justify="left"
    )
    for col in ("activation", "objective", "param", "entries", "max |a−n|", "max rel error", "ok"):
        table.add_column(
            col, justify="right" if col in ("entries", "max |a−n|", "max rel error") else "left"
        )
    for r in results:
        table.add_row(
            r.activation,
            r.objective,
            r.param,
            str(r.n_checked),
            f"{r.max_abs_diff:.1e}",
            f"{r.max_rel_error:.1e}",
            "ok" if r.ok else "FAIL",
            style=None if r.ok else "bold red",
        )
    return table


# ----------------------------------------------------------------------------- report helpers

BLOCKS = " ▁▂▃▄▅▆▇█"
EIGHTHS = " ▏▎▍▌▋▊▉█"


def window_text(words: list[str], center: int | None = None) -> str:
    """A window's words as text with the center word in brackets: ``in [paris] are``."""
    center = len(words) // 2 if center is None else center
    return " ".join(f"[{w}]" if i == center else w for i, w in enumerate(words))


def scale(value: float, lo: float, hi: float) -> float:
    """``value`` mapped to [0, 1] between ``lo`` and ``hi`` (1 when they coincide)."""
    return 1.0 if hi <= lo else min(max((value - lo) / (hi - lo), 0.0), 1.0)


def sparkline(values: list[float], width: int = 40) -> str:
    """Values as one line of block characters (min → ▁, max → █), at most ``width`` long:
    longer series are resampled by taking evenly spaced points (first and last kept)."""
    if not values:
        return ""
    if len(values) > width:
        picks = [round(i * (len(values) - 1) / (width - 1)) for i in range(width)]
        values = [values[i] for i in picks]
    lo, hi = min(values), max(values)
    return "".join(BLOCKS[1 + round(scale(v, lo, hi) * 7)] for v in values)


def bar(value: float, lo: float, hi: float, width: int = 12) -> str:
    """A horizontal bar of ``width`` cells in eighths: ``lo`` → an empty bar, ``hi`` → full."""
    eighths = round(scale(value, lo, hi) * width * 8)
    full, rest = divmod(eighths, 8)
    return ("█" * full + (EIGHTHS[rest] if rest else "")).ljust(width)

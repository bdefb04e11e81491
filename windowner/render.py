"""Rich rendering: results and predictions (stdout), training progress (stderr).

Where to change what: the scores table is ``scores_table``/``print_evaluation``; the training
progress bar and per-epoch line are ``ConsoleReporter``/``epoch_line``; the report's sparklines
and bars are at the end. Predictions are written by windowner.output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

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

"""``windowner compare``: several runs (or every trial of a sweep) side by side.

``collect`` reads each run directory — ``config.yaml``, ``metrics.jsonl`` and, for a sweep's
trials, the trial record beside it (``trial-NNNN.json``) — and returns one JSON-ready dict: a row
per run with only the config keys that differ between the runs, best dev F1 and its epoch, epochs
run, training time and windows/s; the dev F1 curves; and for a sweep a per-parameter table (mean
and best of the sweep's metric for each value or range of each searched parameter) plus Optuna's
PED-ANOVA importance when the sweep extra is installed. ``render`` draws it in the terminal (the
curves overlaid in one character chart); ``write_png`` draws the curves with matplotlib (the
``plot`` extra).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from windowner.config import flatten, read_yaml
from windowner.errors import ConfigError, UsageError
from windowner.report import PLOT_EXTRA, read_metrics
from windowner.sweep import SWEEP_FILE, trial_record  # the files a sweep writes

MARKERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
CHART_RUNS = 5  # curves overlaid in the terminal chart (the best runs); more would blur it
PNG_RUNS = 8


# ----------------------------------------------------------------------------- collect


def run_dirs(paths: list[Path]) -> tuple[list[Path], Path | None]:
    """The run directories to compare and the sweep directory if one was given."""
    if not paths:
        raise UsageError("give run directories, or one sweep directory")
    if len(paths) == 1 and (paths[0] / SWEEP_FILE).is_file():
        runs = sorted(
            p for p in paths[0].iterdir() if not p.is_symlink() and (p / "metrics.jsonl").is_file()
        )
        if not runs:
            raise UsageError(f"{paths[0]}: no trial has finished an epoch yet")
        return runs, paths[0]
    for p in paths:
        if not (p / "metrics.jsonl").is_file():
            raise UsageError(f"{p}: not a run directory (no metrics.jsonl) nor a sweep directory")
    return list(paths), None


def read_run(path: Path) -> dict[str, Any]:
    """One run's config (flattened), epoch records and, for a trial, its outcome."""
    try:
        config = flatten(read_yaml(path / "config.yaml"))
    except ConfigError:
        config = {}
    records = read_metrics(path / "metrics.jsonl")
    trial_path = trial_record(path)
    trial = json.loads(trial_path.read_text(encoding="utf-8")) if trial_path.is_file() else None
    curve = [r.get("dev_f1") for r in records]
    scored = [(f1, r["epoch"]) for f1, r in zip(curve, records, strict=True) if f1 is not None]
    best_f1, best_epoch = max(scored, key=lambda s: s[0]) if scored else (None, None)
    speeds = [r["windows_per_s"] for r in records if "windows_per_s" in r]
    return {
        "run": path.name,
        "path": str(path),
        "config": config,
        "best_dev_f1": best_f1,
        "best_epoch": best_epoch,
        "epochs": len(records),
        "seconds": sum(r.get("seconds", 0.0) for r in records),
        "windows_per_s": sum(speeds) / len(speeds) if speeds else None,
        "dev_f1": curve,
        "train_loss": [r.get("train_loss") for r in records],
        "trial": trial,
    }


def differing_keys(runs: list[dict[str, Any]]) -> list[str]:
    """Config keys whose value is not the same in every run (in config order)."""
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run["config"]))
    missing = object()
    return [k for k in keys if len({repr(r["config"].get(k, missing)) for r in runs}) > 1]


def collect(paths: list[Path]) -> dict[str, Any]:
    """Everything ``render``, ``write_png`` and ``--json`` show."""
    dirs, sweep_dir = run_dirs(paths)
    runs = [read_run(p) for p in dirs]
    runs.sort(key=lambda r: -1.0 if r["best_dev_f1"] is None else r["best_dev_f1"], reverse=True)
    keys = differing_keys(runs)
    for run in runs:
        run["differs"] = {k: run["config"].get(k) for k in keys}
    result: dict[str, Any] = {"runs": runs, "differing_keys": keys, "sweep": None}
    if sweep_dir is not None:
        result["sweep"] = sweep_analysis(sweep_dir, runs)
    return result


# ----------------------------------------------------------------------------- sweeps


def objective_of(run: dict[str, Any]) -> float | None:
    """The sweep's value of a trial (its metric), else the run's best dev F1."""
    trial = run["trial"] or {}
    value = trial.get("value")
    return value if value is not None else run["best_dev_f1"]


def parameter_table(runs: list[dict[str, Any]], bins: int = 3) -> list[dict[str, Any]]:
    """For each searched parameter, over the completed trials: the metric's mean and best per
    value (numbers with more than ``bins`` distinct values are cut into ``bins`` equal-count
    ranges), and the spread of those means, a simple importance (largest first)."""
    values: dict[str, list[tuple[Any, float]]] = {}
    for run in runs:
        trial = run["trial"] or {}
        score = objective_of(run)
        if score is None or trial.get("state") != "COMPLETE":
            continue  # a pruned trial's value is an early epoch's, not comparable
        params = trial.get("params", {})
        for name, value in params.items():
            values.setdefault(name, []).append((value, score))
    table = [_parameter_row(name, pairs, bins) for name, pairs in values.items()]
    return sorted(table, key=lambda row: -row["spread"])


def _parameter_row(name: str, pairs: list[tuple[Any, float]], bins: int) -> dict[str, Any]:
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v, _ in pairs)
    groups: dict[str, list[float]] = {}
    if numeric and len({v for v, _ in pairs}) > bins:
        pairs = sorted(pairs, key=lambda p: p[0])
        for i in range(bins):
            part = pairs[i * len(pairs) // bins : (i + 1) * len(pairs) // bins]
            if part:
                groups[f"{part[0][0]:.3g}–{part[-1][0]:.3g}"] = [s for _, s in part]
    else:
        for value, score in pairs:
            groups.setdefault(_cell(value), []).append(score)
    rows = [
        {"value": k, "n": len(s), "mean": sum(s) / len(s), "best": max(s)}
        for k, s in groups.items()
    ]
    means = [r["mean"] for r in rows]
    return {"param": name, "groups": rows, "spread": max(means) - min(means)}


def optuna_importance(sweep_dir: Path) -> dict[str, float] | None:
    """Optuna's PED-ANOVA parameter importance of the sweep's study (None without the sweep
    extra, with a storage other than the sweep's SQLite file, or with too few trials)."""
    db = sweep_dir / "study.db"
    if not db.is_file():
        return None
    try:
        from windowner.sweep import quiet_optuna

        optuna = quiet_optuna()
        spec = json.loads((sweep_dir / SWEEP_FILE).read_text(encoding="utf-8"))
        name = spec.get("spec", {}).get("study") or Path(spec["source"]).stem
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{db.resolve()}")
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        with warnings.catch_warnings():  # "few trials in a regime": the table shows the counts
            warnings.simplefilter("ignore")
            return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except Exception:  # noqa: BLE001 (importance is a bonus: any failure just leaves it out)
        return None


def sweep_analysis(sweep_dir: Path, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Trial states, total epochs, the per-parameter table and Optuna's importance."""
    states: dict[str, int] = {}
    for run in runs:
        state = (run["trial"] or {}).get("state", "RUNNING")
        states[state] = states.get(state, 0) + 1
    return {
        "dir": str(sweep_dir),
        "states": states,
        "epochs": sum(r["epochs"] for r in runs),
        "parameters": parameter_table(runs),
        "importance": optuna_importance(sweep_dir),
    }


# ----------------------------------------------------------------------------- terminal


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)


def short_labels(keys: list[str]) -> dict[str, str]:
    """Each key's last part (``optimizer.lr`` → ``lr``) unless two keys share it."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: part if last.count(part) == 1 else k for k, part in zip(keys, last, strict=True)}


def runs_table(result: dict[str, Any]) -> Table:
    """One row per run, best first: the differing config values, then the scores and speed."""
    keys = result["differing_keys"]
    table = Table(box=box.SIMPLE_HEAD, title="runs (config differences only)")
    table.add_column("run", no_wrap=True)
    for key, label in short_labels(keys).items():
        longest = max(len(_cell(r["differs"][key])) for r in result["runs"])
        table.add_column(label, overflow="fold", min_width=min(max(len(label), longest), 16))
    sweep = result["sweep"] is not None
    if sweep:
        table.add_column("state", min_width=8)
    for name in ("best dev F1", "epoch", "epochs", "time", "windows/s"):
        table.add_column(name, justify="right", no_wrap=True)
    for run in result["runs"]:
        cells = [run["run"]] + [_cell(run["differs"][k]) for k in keys]
        if sweep:
            cells.append(((run["trial"] or {}).get("state") or "running").lower())
        f1 = run["best_dev_f1"]
        cells += [
            "-" if f1 is None else f"{f1:.2f}",
            _cell(run["best_epoch"]),
            str(run["epochs"]),
            f"{run['seconds']:.1f}s",
            "-" if run["windows_per_s"] is None else f"{run['windows_per_s']:,.0f}",
        ]
        table.add_row(*cells)
    return table


def overlay_chart(runs: list[dict[str, Any]], width: int = 60, height: int = 12) -> list[str]:
    """Dev F1 against epoch for each run, overlaid in one character grid (a letter per run,
    ``*`` where curves meet), with the y range and the epoch axis labelled. The range starts
    at the lowest value after epoch 1; lower first epochs sit on the bottom row."""
    curves = [[v for v in r["dev_f1"] if v is not None] for r in runs]
    values = [v for c in curves for v in c]
    if not values:
        return ["(no dev F1 recorded)"]
    later = [v for c in curves for v in c[1:]]
    lo, hi = min(later or values), max(values)  # epoch 1 alone would squash the rest
    hi = hi if hi > lo else lo + 1.0
    n_epochs = max(len(c) for c in curves)
    grid = [[" "] * width for _ in range(height)]
    for marker, curve in zip(MARKERS, curves, strict=False):
        for epoch, value in enumerate(curve):
            x = round(epoch * (width - 1) / max(n_epochs - 1, 1))
            y = height - 1 - round((max(value, lo) - lo) / (hi - lo) * (height - 1))
            grid[y][x] = marker if grid[y][x] in (" ", marker) else "*"
    lines = []
    for i, row in enumerate(grid):
        label = f"{hi:6.2f} " if i == 0 else f"≤{lo:5.1f} " if i == height - 1 else " " * 7
        lines.append(f"{label}│{''.join(row).rstrip()}")
    lines.append(" " * 7 + "└" + "─" * width)
    lines.append(f"{'':8}epoch 1{'':>{max(width - 14, 0)}}{n_epochs:>7}")
    return lines


def parameter_tables(sweep: dict[str, Any]) -> Table:
    """The per-parameter table of a sweep, with Optuna's importance beside each name."""
    table = Table(
        box=box.SIMPLE_HEAD, title="parameters (the sweep's metric per value, completed trials)"
    )
    for name in ("parameter", "value", "trials", "mean", "best"):
        table.add_column(name, justify="left" if name in ("parameter", "value") else "right")
    importance = sweep["importance"] or {}
    for row in sweep["parameters"]:
        label = row["param"]
        if row["param"] in importance:
            label += f" (importance {importance[row['param']]:.2f})"
        for i, g in enumerate(row["groups"]):
            table.add_row(
                label if i == 0 else "",
                g["value"],
                str(g["n"]),
                f"{g['mean']:.2f}",
                f"{g['best']:.2f}",
            )
    return table


def render(console: Console, result: dict[str, Any]) -> None:
    """The runs table, the overlaid dev F1 chart and, for a sweep, its parameter table."""
    console.print(runs_table(result))
    shown = result["runs"][:CHART_RUNS]
    console.print(f"dev F1 by epoch (the best {len(shown)} runs):", highlight=False)
    for line in overlay_chart(shown):
        console.print(line, highlight=False, markup=False)
    legend = "  ".join(f"{m} {r['run']}" for m, r in zip(MARKERS, shown, strict=False))
    console.print(f"        {legend}", highlight=False, markup=False)
    sweep = result["sweep"]
    if sweep is not None:
        states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(sweep["states"].items()))
        console.print(
            f"sweep {sweep['dir']}: {states}; {sweep['epochs']} epochs in all", highlight=False
        )
        if sweep["parameters"]:
            console.print(parameter_tables(sweep))


# ----------------------------------------------------------------------------- png


def write_png(result: dict[str, Any], path: Path) -> None:
    """The dev F1 and training-loss curves of the best runs, overlaid, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(f"--png needs matplotlib: {PLOT_EXTRA}") from None
    shown = result["runs"][:PNG_RUNS]
    fig, (ax_f1, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2 + 0.18 * len(shown)))
    labels = short_labels(result["differing_keys"])
    for run in shown:
        epochs = list(range(1, run["epochs"] + 1))
        label = run["run"] + "".join(f" {labels[k]}={_cell(v)}" for k, v in run["differs"].items())
        ax_f1.plot(
            epochs,
            [float("nan") if v is None else v for v in run["dev_f1"]],
            marker=".",
            label=label,
        )
        ax_loss.plot(epochs, run["train_loss"], marker=".")
    ax_f1.set(xlabel="epoch", ylabel="dev entity F1 (%)", title="dev F1")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="training loss", yscale="log")
    fig.legend(loc="lower center", ncol=2, fontsize=7, frameon=False)
    for ax in (ax_f1, ax_loss):
        ax.grid(alpha=0.3)
    fig.tight_layout(rect=(0, 0.035 * -(-len(shown) // 2) + 0.02, 1, 1))
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write ({exc.strerror})") from None
    finally:
        plt.close(fig)

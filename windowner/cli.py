"""The ``windowner`` command line: parse, load, call one function, print. No math here.

Results go to stdout, progress and logs to stderr. Usage, config and data errors exit with 2,
runtime failures with 1, an interrupted training run with 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from windowner import __version__
from windowner.errors import ModelFileError, UsageError, WindownerError

app = typer.Typer(
    help="Window-based named-entity recognition with hand-written backprop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

DEFAULT_RUN = Path("runs/latest")


def handle_errors(command: Callable) -> Callable:
    """Known errors → one line on stderr and their exit code; never a traceback (set
    WINDOWNER_DEBUG=1 to see one for an unexpected error)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except WindownerError as exc:
            err.print(f"error: {exc}", markup=False, highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted", markup=False)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if os.environ.get("WINDOWNER_DEBUG"):
                raise
            err.print(
                f"error: unexpected {type(exc).__name__}: {exc} "
                "(set WINDOWNER_DEBUG=1 for a traceback)",
                markup=False,
                highlight=False,
            )
            raise typer.Exit(1) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        print(f"windowner {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Train and run the classic window-based NER model (Collobert & Weston / CS224n)."""


# ----------------------------------------------------------------------------- helpers


def resolve_model(model: Path | None) -> Path:
    """A run directory or model file → the model file; a clear message when there is none."""
    path = model or DEFAULT_RUN
    if path.is_dir():
        path = path / "model.npz"
    if not path.exists():
        if model is None:
            raise UsageError(
                "no trained model at runs/latest; train one first: "
                "windowner train --config configs/adam.yaml"
            )
        raise ModelFileError(f"{path}: no such model file or run directory")
    return path


def new_run_dir(config_path: Path, out_dir: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(out_dir) / f"{config_path.stem}-{stamp}"
    run, n = base, 1
    while run.exists():
        n += 1
        run = base.with_name(f"{base.name}-{n}")
    return run


def point_latest(run_dir: Path) -> None:
    """Make ``<parent>/latest`` a relative symlink to the run directory."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / ".latest.tmp"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        tmp.replace(link)
    except OSError as exc:
        err.print(f"note: could not point {link} at the run ({exc})", markup=False)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------- train


@app.command()
@handle_errors
def train(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: key.path=value (repeatable)."),
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run directory to create.")] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue the run in this directory.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Train a model and write a run directory.

    Example: windowner train --config configs/adam.yaml --set train.epochs=5
    """
    from windowner import config as cfg
    from windowner.checkpoint import atomic_write_text
    from windowner.render import ConsoleReporter, print_evaluation
    from windowner.train import Trainer

    if resume is not None:
        if config is not None or set_:
            raise UsageError("--resume takes the run's own config.yaml; drop --config/--set")
        if not (resume / "config.yaml").is_file():
            raise UsageError(f"{resume}: not a run directory (no config.yaml)")
        conf = cfg.load_config(resume / "config.yaml")
        if not (resume / "last.npz").exists():
            raise UsageError(f"{resume}: no last.npz to resume from")
        run_dir = resume
    else:
        if config is None:
            raise UsageError("give --config FILE (e.g. configs/adam.yaml) or --resume RUN_DIR")
        conf = cfg.resolved(cfg.load_config(config, set_ or []))
        run_dir = out_dir or new_run_dir(config, conf.out_dir)
        if (run_dir / "last.npz").exists():
            raise UsageError(
                f"{run_dir} already holds a run; resume it with "
                f"windowner train --resume {run_dir}, or pick another --out"
            )
    reporter = ConsoleReporter(err)
    try:
        # Data and checkpoint problems surface here, before a new run directory is made.
        trainer = Trainer(conf, run_dir, reporter, resume=resume is not None)
        if resume is None:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / "config.yaml", cfg.dump_yaml(conf))
        reporter.log(f"run directory: {run_dir}")
        summary = trainer.run()
    finally:
        reporter.close()
    point_latest(run_dir)
    if as_json:
        emit_json(summary)
        return
    for split in ("dev", "test"):
        if split in summary:
            print_evaluation(out, summary[split], f"{split} (best epoch {summary['best_epoch']})")
    out.print(f"model: {run_dir / 'model.npz'}", highlight=False)
    err.print(f"see the learning curves and errors: windowner report {run_dir}", highlight=False)


# ----------------------------------------------------------------------------- eval


@app.command("eval")
@handle_errors
def eval_(
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Run directory or model file.")
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="CoNLL file (default: the run's dev set).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Entity-level precision, recall and F1 (conlleval semantics) of a model on a CoNLL file.

    Example: windowner eval --model runs/latest --data data/test.conll --json
    """
    from windowner.corpus import read_conll
    from windowner.predict import Tagger
    from windowner.render import print_evaluation
    from windowner.train import evaluate_split, unseen_tags_message

    tagger, _, _ = Tagger.load(resolve_model(model))
    if data is None:
        dev = tagger.config.get("data", {}).get("dev")
        if not dev:
            raise UsageError("the model's run has no dev set; give --data FILE")
        data = Path(dev)
    sents = read_conll(data, tagger.config.get("data", {}).get("scheme", "iob2"))
    warning = unseen_tags_message(str(data), sents, tagger.tags)
    if warning and tagger.objective != "ranking":
        err.print(warning, markup=False, highlight=False)
    result = evaluate_split(tagger, sents, tagger.encode(sents))
    result["data"] = str(data)
    if as_json:
        emit_json(result)
    else:
        print_evaluation(out, result, f"{data}")


# ----------------------------------------------------------------------------- predict


class InputFormat(StrEnum):
    text = "text"
    conll = "conll"


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    conll = "conll"


@app.command()
@handle_errors
def predict(
    text: Annotated[str | None, typer.Argument(help="Text to tag (or use --input).")] = None,
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Run directory or model file.")
    ] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", "-i", help="Read text or CoNLL from a file.")
    ] = None,
    input_format: Annotated[
        InputFormat, typer.Option("--input-format", help="text: raw text; conll: token per line.")
    ] = InputFormat.text,
    output_format: Annotated[
        OutputFormat, typer.Option("--output-format", "-f", help="table, json or conll.")
    ] = OutputFormat.table,
    explain: Annotated[
        bool,
        typer.Option("--explain", help="Show each token's window, every tag's score, the margin."),
    ] = False,
) -> None:
    """Tag text and list its entities.

    Example: windowner predict "Museums in Paris are amazing"
    """
    from windowner.predict import Tagger, read_input, render_predictions

    sentences = read_input(text, input_file, input_format.value)
    tagger, _, _ = Tagger.load(resolve_model(model))
    if explain:
        from windowner.explain import print_explanations

        print_explanations(out, tagger, sentences, output_format.value)
        return
    tags = tagger.tag(sentences)
    render_predictions(out, sentences, tags, output_format.value)


# ----------------------------------------------------------------------------- gradcheck


@app.command()
@handle_errors
def gradcheck(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Check this config's model instead.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of results.")] = False,
    trace: Annotated[
        bool,
        typer.Option("--trace", help="Walk the notes' example forward and backward, step by step."),
    ] = False,
) -> None:
    """Check every backward pass against central differences (float64, ε = 1e-5).

    Without --config: the notes' example (5-word windows of 4-dim vectors, 8 hidden units) for
    every activation × objective, with L2 and a fixed dropout mask. Exits 1 if any relative
    error is ≥ 1e-6. --trace prints the notes' backprop walk-through (s, s_c, J, δ, ∇W, ∇b, the
    word vectors, W₁₄ analytic vs numeric) instead.

    Example: windowner gradcheck --json
    """
    from windowner import gradcheck as gc

    if trace:
        from windowner.trace import notes_trace, print_trace

        if config is not None:
            raise UsageError("--trace follows the notes' fixed example; drop --config")
        result = notes_trace()
        if as_json:
            emit_json(result.to_dict())
        else:
            print_trace(out, result)
        if not result.ok:
            raise typer.Exit(1)
        return
    results = gc.run_default() if config is None else gc.run_for_config(config)
    if as_json:
        emit_json(
            [
                {
                    "activation": r.activation,
                    "objective": r.objective,
                    "param": r.param,
                    "max_rel_error": r.max_rel_error,
                    "max_abs_diff": r.max_abs_diff,
                    "n_checked": r.n_checked,
                    "ok": r.ok,
                }
                for r in results
            ]
        )
    else:
        from windowner.render import gradcheck_table

        out.print(gradcheck_table(results))
    if not all(r.ok for r in results):
        raise typer.Exit(1)


# ----------------------------------------------------------------------------- report


@app.command()
@handle_errors
def report(
    run: Annotated[
        Path | None, typer.Argument(help="Run directory (default: runs/latest).")
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="CoNLL file (default: the run's dev set).")
    ] = None,
    top: Annotated[int, typer.Option("--top", help="How many frequent errors to list.")] = 10,
    png: Annotated[
        Path | None, typer.Option("--png", help="Also draw the curves as a PNG (needs matplotlib).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Learning curves, best epoch, per-type scores, tag confusion and frequent errors of a run.

    Example: windowner report runs/latest --png report.png
    """
    from windowner import report as rp

    result = rp.collect(run, data, top)
    if png is not None:
        rp.write_png(result, png)
        err.print(f"wrote {png}", highlight=False, markup=False)
    if as_json:
        emit_json(result)
    else:
        rp.render(out, result)


# --- sweep/compare commands ---


@app.command()
@handle_errors
def sweep(
    space: Annotated[
        Path,
        typer.Argument(metavar="SWEEP_FILE", help="Base config, search space, method, trials."),
    ],
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", "-w", help="Trials at once (default 1; with --dask, all threads)."
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Sweep directory (default runs/sweeps/NAME).")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="Study storage URL (default: SQLite in the sweep dir)."),
    ] = None,
    dask: Annotated[
        str | None, typer.Option("--dask", help="Run trials on a Dask cluster: tcp://HOST:8786.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Search hyperparameters with Optuna; every trial is a run directory. Run the same
    command again to continue an interrupted sweep. Needs the sweep extra (make sweep).

    Example: windowner sweep sweeps/optimizers.yaml --workers 2
    """
    from windowner.sweep import run_sweep

    def log(message: str) -> None:
        err.print(message, markup=False, highlight=False)

    summary = run_sweep(space, out_dir, workers, storage, dask, log)
    if as_json:
        emit_json(summary)
        return
    best = summary["best"]
    out.print(
        f"{summary['finished']} trials finished ({summary['pruned']} pruned, "
        f"{summary['epochs']} epochs) in {summary['sweep_dir']}",
        highlight=False,
    )
    if best is not None:
        out.print(
            f"best: trial {best['number']}, {summary['metric']} {best['value']:.2f}",
            highlight=False,
        )
        out.print(f"  {best['params']}\n  {best['run_dir']}", highlight=False, markup=False)
    err.print(f"compare the trials: windowner compare {summary['sweep_dir']}", highlight=False)


@app.command()
@handle_errors
def compare(
    runs: Annotated[
        list[Path],
        typer.Argument(metavar="RUN", help="Run directories, or one sweep directory."),
    ],
    png: Annotated[
        Path | None, typer.Option("--png", help="Also draw the curves as a PNG (needs matplotlib).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Runs side by side: config differences, best dev F1, epochs, time, speed, learning
    curves; for a sweep also what each parameter did.

    Example: windowner compare runs/sweeps/optimizers --png compare.png
    """
    from windowner import compare as cp

    result = cp.collect(runs)
    if png is not None:
        cp.write_png(result, png)
        err.print(f"wrote {png}", highlight=False, markup=False)
    if as_json:
        emit_json(result)
    else:
        cp.render(out, result)


# --- end sweep/compare commands ---


# ----------------------------------------------------------------------------- entry point


def main() -> None:
    """Console-script entry point."""
    app()

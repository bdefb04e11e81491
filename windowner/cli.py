"""The ``windowner`` command line: each command parses, calls one library function, prints.

Results go to stdout, progress and logs to stderr. Usage, config and data errors exit with 2,
runtime failures with 1, an interrupted training run with 130 (SIGINT) or 143 (SIGTERM).

Where to change what: train → windowner.train.train; eval → windowner.evaluate.evaluate_file;
predict → windowner.tagger (+ textio for input, render for output); gradcheck →
windowner.gradcheck; report → windowner.report. Run directories and the default ``runs/latest``
are windowner.runs. Library modules are imported inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from windowner import __version__
from windowner.errors import UsageError, WindownerError

app = typer.Typer(
    help="Window-based named-entity recognition with hand-written backprop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


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


def log(message: str) -> None:
    """A plain line on stderr (warnings, notes)."""
    err.print(message, markup=False, highlight=False)


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
    from windowner.render import ConsoleReporter
    from windowner.train import train as train_run

    if resume is not None and (config is not None or set_):
        raise UsageError("--resume takes the run's own config.yaml; drop --config/--set")
    if resume is None and config is None:
        raise UsageError("give --config FILE (e.g. configs/adam.yaml) or --resume RUN_DIR")
    reporter = ConsoleReporter(err)
    try:
        summary = train_run(
            resume / "config.yaml" if resume is not None else config,
            set_ or [],
            out_dir=out_dir,
            resume=resume,
            reporter=reporter,
        )
    finally:
        reporter.close()
    print_summary(summary, as_json)


def print_summary(summary: dict[str, Any], as_json: bool) -> None:
    """The training summary: JSON, or the dev/test tables and where the model is."""
    from windowner.render import print_evaluation

    if as_json:
        emit_json(summary)
        return
    run_dir = Path(summary["run_dir"])
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
        list[Path] | None,
        typer.Option(
            "--model", "-m", help="Run directory or model file (repeat it for an ensemble)."
        ),
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="CoNLL file (default: the run's dev set).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Entity-level precision, recall and F1 (conlleval semantics) of a model on a CoNLL file.

    Example: windowner eval --model runs/latest --data data/test.conll --json
    (--model A --model B …: the ensemble of the models, their scores averaged per token)
    """
    from windowner.evaluate import evaluate_file
    from windowner.render import print_evaluation

    result = evaluate_file(resolve_models(model), data, warn=log)
    if as_json:
        emit_json(result)
    else:
        print_evaluation(out, result, result["data"])


def resolve_models(models: list[Path] | None) -> list[Path]:
    """The model files of ``--model`` options (none: the latest run's model)."""
    from windowner.runs import resolve_model

    return [resolve_model(m) for m in models] if models else [resolve_model(None)]


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
        list[Path] | None,
        typer.Option(
            "--model", "-m", help="Run directory or model file (repeat it for an ensemble)."
        ),
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
    from windowner.ensemble import load_tagger
    from windowner.render import render_predictions
    from windowner.textio import read_input

    paths = resolve_models(model)
    if explain and len(paths) > 1:
        raise UsageError("--explain shows one model's scores: give a single --model")
    sentences = read_input(text, input_file, input_format.value)
    tagger = load_tagger(paths)
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
    if trace:
        if config is not None:
            raise UsageError("--trace follows the notes' fixed example; drop --config")
        notes_walkthrough(as_json)
        return
    from windowner import gradcheck as gc

    results = gc.run_default() if config is None else gc.run_for_config(config)
    if as_json:
        emit_json([r.to_dict() for r in results])
    else:
        from windowner.render import gradcheck_table

        out.print(gradcheck_table(results))
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def notes_walkthrough(as_json: bool) -> None:
    """``gradcheck --trace``: the notes' backprop example step by step; exit 1 if it fails."""
    from windowner.trace import notes_trace, print_trace

    result = notes_trace()
    if as_json:
        emit_json(result.to_dict())
    else:
        print_trace(out, result)
    if not result.ok:
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


# --- serve command ---


@app.command()
@handle_errors
def serve(
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Run directory or model file.")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Server processes.")] = 1,
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", min=1, help="Larger request bodies get 413.")
    ] = 1 << 20,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
) -> None:
    """Serve the model over HTTP: POST /ner (JSON records), a page at /, /health, /model,
    /openapi.json. Needs the serve extra: pip install 'windowner[serve]'.

    Example: windowner serve --model runs/latest --port 8000
    """
    from windowner.runs import resolve_model

    try:
        from windowner.serve import run
    except ImportError as exc:
        raise UsageError(
            f"windowner serve needs the serve extra ({exc.name} is missing): "
            "pip install 'windowner[serve]'"
        ) from None
    run(resolve_model(model), host, port, workers, max_body_bytes, access_log)


# --- serve command ---


# ----------------------------------------------------------------------------- entry point


def main() -> None:
    """Console-script entry point."""
    app()

"""The ``windowner`` command line: each command parses, calls one library function, prints.

Results go to stdout, progress and logs to stderr. Usage, config and data errors exit with 2,
runtime failures with 1, an interrupted training run with 130 (SIGINT) or 143 (SIGTERM).

Where to change what: train → windowner.train.train; eval → windowner.evaluate.evaluate_file;
predict → windowner.tagger (+ textio for input, render for output); gradcheck →
windowner.gradcheck; report → windowner.report. Run directories and the default ``runs/latest``
are windowner.runs. Library modules are imported inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperArgument, TyperCommand

from windowner import __version__
from windowner.entry import reported
from windowner.errors import Terminated, UsageError, WindownerError, signal_behind

# Every (sub-)app: plain help, -h as --help, help when called without a command.
APP_SETTINGS: dict[str, Any] = {
    "no_args_is_help": True,
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "rich_markup_mode": None,
    "context_settings": {"help_option_names": ["-h", "--help"]},
}

if TYPE_CHECKING:
    from windowner.api import NER

app = typer.Typer(
    help="Window-based named-entity recognition with hand-written backprop.", **APP_SETTINGS
)


class PlainArguments(TyperCommand):
    """A command whose --help lists arguments by their metavar alone, without Typer's type
    label (``TEXT <str>`` → ``TEXT``)."""

    def get_params(self, ctx: Any) -> list:
        params = super().get_params(ctx)
        for param in params:
            if isinstance(param, TyperArgument):
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
        return params


err = Console(stderr=True, soft_wrap=True)
# errors of a write to standard output (a closed pipe, a full disk, a dead terminal)
STDOUT_ERRORS = frozenset({errno.EPIPE, errno.ENOSPC, errno.EIO, errno.EBADF, errno.EDQUOT})


class ResultConsole(Console):
    """stdout for results: a closed pipe is an error with a message (rich would exit 1
    silently), reported by ``handle_errors``."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


out = ResultConsole(soft_wrap=True)


def handle_errors(command: Callable) -> Callable:
    """Known errors → one line on stderr and their exit code; never a traceback (set
    WINDOWNER_DEBUG=1 to see one for an unexpected error)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except WindownerError as exc:
            err.print(f"error: {exc}", markup=False, highlight=False)
            reported.append(type(exc).__name__)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:  # Terminated (SIGTERM) is one too
            return stopped_by(exc)
        except (typer.Exit, typer.Abort):
            raise
        except OSError as exc:
            if exc.filename is not None or exc.errno not in STDOUT_ERRORS:
                return unexpected(exc)
            from windowner.entry import with_devnull_stdout

            with_devnull_stdout()
            err.print(f"error: cannot write the results to standard output: {exc.strerror}")
            raise typer.Exit(1) from None
        except Exception as exc:
            if (signal := signal_behind(exc)) is not None:
                return stopped_by(signal)  # a signal while a module was being imported
            return unexpected(exc)

    return wrapper


def stopped_by(signal: KeyboardInterrupt) -> None:
    """Ctrl-C or SIGTERM: one word and exit 130 or 143."""
    terminated = isinstance(signal, Terminated)
    err.print("terminated" if terminated else "interrupted", markup=False)
    reported.append("interrupted")
    raise typer.Exit(143 if terminated else 130) from None


def unexpected(exc: Exception) -> None:
    """An error windowner did not foresee: one line and exit 1 (a traceback with
    WINDOWNER_DEBUG=1)."""
    if os.environ.get("WINDOWNER_DEBUG"):
        raise exc
    err.print(
        f"error: unexpected {type(exc).__name__}: {exc} (set WINDOWNER_DEBUG=1 for a traceback)",
        markup=False,
        highlight=False,
    )
    raise typer.Exit(1) from None


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


def check_threads(setting: str) -> str:
    """``--threads`` as given, after checking it is auto or a positive number."""
    from windowner.threads import parse_setting

    try:
        parse_setting(setting)
    except ValueError as exc:
        raise UsageError(f"--threads: {exc}") from None
    return setting


ThreadsOption = Annotated[
    str,
    typer.Option(
        "--threads",
        metavar="auto|N",
        help="BLAS threads: auto (by input size and machine load) or N.",
    ),
]


def show_result(module: Any, result: dict[str, Any], png: Path | None, as_json: bool) -> None:
    """``report``/``compare`` output: ``module.write_png`` if asked, then JSON or
    ``module.render`` in the terminal."""
    if png is not None:
        module.write_png(result, png)
        err.print(f"wrote {png}", highlight=False, markup=False)
    if as_json:
        emit_json(result)
    else:
        module.render(out, result)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------- train

# Options that train and config show share.
ConfigFile = Annotated[
    Path | None, typer.Option("--config", "-c", metavar="FILE", help="YAML config file.")
]
Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set", metavar="KEY=VALUE", help="Override a config key: key.path=value (repeatable)."
    ),
]


class InputFormat(StrEnum):
    text = "text"
    conll = "conll"


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    conll = "conll"
    html = "html"


TextArgument = Annotated[
    str | None, typer.Argument(metavar="TEXT", help="Text to tag (or use --input).")
]

ModelPath = Annotated[
    Path | None,
    typer.Option("--model", "-m", metavar="PATH", help="Run directory or model file."),
]

ModelPaths = Annotated[
    list[Path] | None,
    typer.Option(
        "--model",
        "-m",
        metavar="PATH",
        help="Run directory or model file (repeat it for an ensemble).",
    ),
]

InputFile = Annotated[
    Path | None,
    typer.Option(
        "--input",
        "-i",
        metavar="FILE",
        help="Read a file (- = stdin; piped stdin is read too).",
    ),
]

InputFormatOption = Annotated[
    InputFormat,
    typer.Option(
        "--input-format",
        metavar="text|conll",
        help="text: raw text; conll: token per line.",
    ),
]

OutputFormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--output-format",
        "-f",
        metavar="table|json|jsonl|conll|html",
        help="table, json, jsonl (streams), conll or html (one page, small inputs).",
    ),
]

PerLineOption = Annotated[
    bool,
    typer.Option("--per-line", help="Each input line is a document (default: paragraphs)."),
]

TokenizerOption = Annotated[
    str,
    typer.Option("--tokenizer", metavar="NAME", help="default (CoNLL-style), whitespace, spacy."),
]

JobsOption = Annotated[
    int,
    typer.Option("--jobs", "-j", min=1, metavar="N", help="Worker processes for big inputs."),
]

ExplainOption = Annotated[
    bool,
    typer.Option("--explain", help="Show each token's window, every tag's score, the margin."),
]


@app.command()
@handle_errors
def train(
    config: ConfigFile = None,
    set_: Overrides = None,
    out_dir: Annotated[
        str | None, typer.Option("--out", metavar="DIR", help="Run directory to create.")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", metavar="RUN_DIR", help="Continue the run in this directory."),
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
    if resume is not None and out_dir is not None:
        raise UsageError("--resume continues the run in its own directory; drop --out")
    if out_dir is not None and not out_dir.strip():
        raise UsageError("--out is empty; give the run directory to create")
    reporter = ConsoleReporter(err)
    try:
        summary = train_run(
            resume / "config.yaml" if resume is not None else config,
            set_ or [],
            out_dir=None if out_dir is None else Path(out_dir),
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
    model: ModelPaths = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", "-d", metavar="FILE", help="CoNLL file (default: the run's dev set)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    threads: ThreadsOption = "auto",
) -> None:
    """Entity-level precision, recall and F1 (conlleval semantics) of a model on a CoNLL file.

    Example: windowner eval --model runs/latest --data data/test.conll --json
    (--model A --model B …: the ensemble of the models, their scores averaged per token)
    """
    from windowner.evaluate import evaluate_file
    from windowner.render import print_evaluation

    result = evaluate_file(resolve_models(model), data, warn=log, threads=check_threads(threads))
    if as_json:
        emit_json(result)
    else:
        print_evaluation(out, result, result["data"])


def resolve_models(models: list[Path] | None) -> list[Path]:
    """The model files of ``--model`` options (none: the latest run's model)."""
    from windowner.runs import resolve_model

    return [resolve_model(m) for m in models] if models else [resolve_model(None)]


# ----------------------------------------------------------------------------- predict


@app.command(cls=PlainArguments)
@handle_errors
def predict(
    text: TextArgument = None,
    model: ModelPaths = None,
    input_file: InputFile = None,
    input_format: InputFormatOption = InputFormat.text,
    output_format: OutputFormatOption = OutputFormat.table,
    per_line: PerLineOption = False,
    tokenizer: TokenizerOption = "default",
    jobs: JobsOption = 1,
    explain: ExplainOption = False,
    threads: ThreadsOption = "auto",
) -> None:
    """Tag text and list its entities, with character offsets and scores.

    A file or stdin is read lazily, one document per paragraph (--per-line: per line); -f jsonl
    writes one record per document as it goes, for inputs of any size.

    Example: windowner predict "Museums in Paris are amazing"
    """
    from windowner.api import load, tagging_gc
    from windowner.threads import SCORE_CHUNK, scoring_threads

    check_threads(threads)
    paths = resolve_models(model)
    if explain and len(paths) > 1:
        raise UsageError("--explain shows one model's scores: give a single --model")
    if input_file is not None and str(input_file) == "-":
        input_file = None
    if input_file is not None and input_format == InputFormat.text:
        from windowner.conllio import conll_warning

        if warning := conll_warning(input_file):
            log(warning)
    ner = load(paths if len(paths) > 1 else paths[0], tokenizer=tokenizer)
    raw_text = input_format == InputFormat.text  # tokenised and written between the products
    policy = scoring_threads(threads, ner.tagger.model.spec, SCORE_CHUNK, interleaved=raw_text)
    with tagging_gc(), policy:
        predict_docs(ner, (text, input_file, input_format, per_line), output_format, explain, jobs)


def predict_docs(
    ner: NER, source: tuple, output_format: OutputFormat, explain: bool, jobs: int
) -> None:
    """predict's tagging and output, under the thread policy (``predict`` applies it: the
    pipes here leave the threads as they are); everything streams (constant
    memory) but html, which is one page. ``source``: (TEXT, --input, --input-format,
    --per-line)."""
    text, input_file, input_format, per_line = source
    if explain and output_format == OutputFormat.conll:
        raise UsageError("--explain prints a table, JSON or HTML; drop --output-format conll")
    if input_format == InputFormat.conll:
        predict_conll(ner, (text, input_file), output_format.value, explain)
        return
    from windowner.textio import iter_documents

    documents = iter_documents(text, input_file, per_line)
    if output_format == OutputFormat.html:
        from windowner.html import write_page

        records = map(ner.explain, documents) if explain else ner.pipe(documents, threads=None)
        write_page(sys.stdout.write, records)
    elif explain:
        from windowner.tokenizer import iter_sentences

        sentences = (s.words for d in documents for s in iter_sentences(d, ner.tokenizer))
        write_explanations(ner, sentences, output_format.value)
    else:
        from windowner.output import write_docs

        write_docs(out, ner.pipe(documents, jobs=jobs, threads=None), output_format.value, log)


def predict_conll(ner: NER, source: tuple, output_format: str, explain: bool) -> None:
    """predict on CoNLL input (TEXT, a file or stdin), read lazily: ``-f conll`` writes it back
    line for line with a predicted column; other formats see one document per ``-DOCSTART-``
    document. A model with document features sees each document whole (cut only past
    ``conllio.MAX_DOC_SENTENCES`` sentences); others get parts of ``BATCH_SENTENCES``."""
    from windowner import conllio
    from windowner.features import reads_documents
    from windowner.textio import text_pieces

    text, input_file = source
    whole = reads_documents(ner.tagger)  # document features: tag whole documents
    scheme = None  # a file (or TEXT) is scanned for its tag scheme first; stdin: its head
    rereadable = text is not None or (input_file is not None and input_file.is_file())
    if output_format == "conll" and not explain and rereadable:
        with text_pieces(text, input_file) as (name, pieces, _):
            scheme = conllio.file_scheme(pieces, name)
    with text_pieces(text, input_file) as (name, pieces, bom):
        if output_format == "conll" and not explain:
            sys.stdout.write(conllio.BOM if bom else "")
            for chunk in conllio.stream_conll(pieces, name, ner.tag_tokens, scheme, whole):
                sys.stdout.write(chunk)
            return
        blocks = conllio.iter_blocks(conllio.iter_lines(pieces, name), name)
        parts = conllio.iter_documents(blocks, whole)
        token_lists = ([b.tokens for b in bs if b.tokens] for bs in parts)
        documents = check_not_empty(doc for doc in token_lists if doc)
        if explain:
            write_explanations(ner, (s for doc in documents for s in doc), output_format)
        elif output_format == "html":
            from windowner.html import write_page

            write_page(sys.stdout.write, map(ner.doc_from_tokens, documents))
        else:
            from windowner.output import write_docs

            write_docs(out, map(ner.doc_from_tokens, documents), output_format, log)


def check_not_empty(items: Iterator) -> Iterator:
    """``items``, or UsageError ("nothing to tag") when there is none."""
    first = next(items, None)
    if first is None:
        raise UsageError("nothing to tag: the input is empty or only whitespace")
    yield first
    yield from items


def write_explanations(ner: NER, sentences: Iterable[list[str]], output_format: str) -> None:
    """``--explain`` over a stream of token lists, ``EXPLAIN_BATCH`` sentences at a time:
    tables, a JSON list written as it goes, or JSON Lines (one sentence per line)."""
    from itertools import islice

    from windowner.explain import explanation_records, print_explanations

    stream, first, json_list = iter(sentences), 1, output_format == "json"
    while batch := list(islice(stream, EXPLAIN_BATCH)):
        if output_format in ("json", "jsonl"):
            for record in explanation_records(ner.tagger, batch):
                if json_list:  # indented as json.dumps(whole list, indent=2) would be
                    line = json.dumps(record, ensure_ascii=False, indent=2).replace("\n", "\n  ")
                    sys.stdout.write(("[\n  " if first == 1 else ",\n  ") + line)
                else:
                    sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
                first += 1
        else:
            print_explanations(out, ner.tagger, batch, output_format, first=first)
            first += len(batch)
    if json_list:
        sys.stdout.write("[]\n" if first == 1 else "\n]\n")


EXPLAIN_BATCH = 256


# ----------------------------------------------------------------------------- gradcheck


@app.command()
@handle_errors
def gradcheck(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", metavar="FILE", help="Check this config's model instead."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of results.")] = False,
    trace: Annotated[
        bool,
        typer.Option("--trace", help="Walk the notes' example forward and backward, step by step."),
    ] = False,
) -> None:
    """Check every backward pass against central differences (float64, ε = 1e-5).

    Without --config: the notes' example (5-word windows of 4-dim vectors, 8 hidden units) for
    every activation × objective, with L2 and a fixed dropout mask, then a small model with
    every extra feature table (affix, shape, doccase, docseq) per objective but ranking. Exits 1
    if any relative error is ≥ 1e-6. --trace prints the notes' backprop walk-through (s, s_c,
    J, δ, ∇W, ∇b, the word vectors, W₁₄ analytic vs numeric) instead.

    Example: windowner gradcheck --json
    """
    if trace:
        if config is not None:
            raise UsageError("--trace follows the notes' fixed example; drop --config")
        notes_walkthrough(as_json)
        return
    from windowner import gradcheck as gc

    results = gc.run_default(features=True) if config is None else gc.run_for_config(config)
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


@app.command(cls=PlainArguments)
@handle_errors
def report(
    run: Annotated[
        Path | None,
        typer.Argument(metavar="RUN_DIR", help="Run directory (default: runs/latest)."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", "-d", metavar="FILE", help="CoNLL file (default: the run's dev set)."
        ),
    ] = None,
    top: Annotated[
        int, typer.Option("--top", metavar="N", help="How many frequent errors to list.")
    ] = 10,
    png: Annotated[
        Path | None,
        typer.Option(
            "--png", metavar="FILE", help="Also draw the curves as a PNG (needs matplotlib)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Learning curves, best epoch, per-type scores, tag confusion and frequent errors of a run.

    Example: windowner report runs/latest --png report.png
    """
    from windowner import report as rp

    show_result(rp, rp.collect(run, data, top), png, as_json)


# --- serve command ---


@app.command()
@handle_errors
def serve(
    model: ModelPath = None,
    host: Annotated[
        str, typer.Option("--host", metavar="ADDRESS", help="Address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", "-p", min=0, max=65535, metavar="PORT", help="TCP port.")
    ] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, metavar="N", help="Server processes.")
    ] = 1,
    max_body_bytes: Annotated[
        int,
        typer.Option(
            "--max-body-bytes", min=1, metavar="BYTES", help="Larger request bodies get 413."
        ),
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


# ----------------------------------------------------------------------------- config

config_app = typer.Typer(
    help="Inspect configs: every key, its value, default and meaning.", **APP_SETTINGS
)
app.add_typer(config_app, name="config")


@config_app.command("show")
@handle_errors
def config_show(
    config: ConfigFile = None,
    set_: Overrides = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the README's config reference table.")
    ] = False,
) -> None:
    """Print the resolved config (defaults ← --config ← --set): every key with its value,
    default and meaning.

    Example: windowner config show --config configs/adam.yaml --set model.hidden=50
    """
    from windowner import confdoc
    from windowner.config import load_config, resolved

    if markdown:
        if config is not None or set_ or as_json:
            raise UsageError(
                "--markdown prints the defaults' reference; drop --config/--set/--json"
            )
        sys.stdout.write(confdoc.markdown())
        return
    conf = resolved(load_config(config, set_ or []))
    if as_json:
        emit_json({"config": conf.to_dict(), "keys": [r.to_dict() for r in confdoc.rows(conf)]})
    else:
        sys.stdout.write(confdoc.text(conf))


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

    show_result(cp, cp.collect(runs), png, as_json)


# --- end sweep/compare commands ---


# ----------------------------------------------------------------------------- entry point


def main() -> None:
    """Console-script entry point."""
    app()

"""End-to-end speed on CoNLL-2003: training epochs, prediction, cold start, peak memory.

    python benchmarks/bench_e2e.py [TRAIN_FILE] [--dev FILE] [--config FILE] [--json] [--quick]
        [--rows f1 contention threads] [--target-f1 91.0] [--f1-seeds 0 1 2]
        [--torch-threads N]

TRAIN_FILE defaults to ../shared/data/conll2003/train.txt (relative to the working
directory), the dev file to valid.txt beside it. The config (default
configs/conll03-multiclass.yaml, the window-level model the PyTorch twin also trains; a
built-in equivalent when the file is missing) is run three ways, each training run in a fresh
process so its peak RSS (resource.getrusage) is its own:

    config          the config as it is (GloVe 6B 50d when it asks for it): epoch seconds, RSS
    target shape    the config at batch 256, hidden 100: epoch seconds (the issue's target)
    random init     the config without pretrained vectors: RSS without GloVe

Epoch seconds are the trainer's own (metrics.jsonl "seconds": the batch loop, after data
loading and without dev evaluation). Then, with the config run's model:

    predict         tokens/s tagging the dev file: from encoded windows (model + Viterbi), and
                    from token lists (also encoding)
    cold start      wall seconds of ``windowner predict --model FILE "…"`` in a new process
                    (median of 5; windowner's bytecode written first, as pip install does)

Then the comparison rows of e2e_rows.py (``--rows``; all by default, none with --quick): time
to dev F1 ≥ ``--target-f1`` against the same model in eager PyTorch trained by the same
Trainer, epochs with 0/1/2 busy neighbours, and threads auto against 1 (training, predict).
The parent imports nothing heavy before starting a child: a child's peak RSS includes what
its parent held when it was started.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import e2e_rows  # noqa: E402
from blas_env import KEEP_FLAG, describe, run_with_users_blas  # noqa: E402

DEFAULT_TRAIN = Path("../shared/data/conll2003/train.txt")
DEFAULT_CONFIG = Path("configs/conll03-multiclass.yaml")
SENTENCE = "Museums in Paris are amazing ."

# The shape of configs/conll03-multiclass.yaml, for when that file is not there.
BUILTIN_CONFIG = """\
seed: 0
features: {window: 5, caps_dim: 5}
embeddings: {dim: 50, init: random}
model: {hidden: 100, activation: tanh, objective: multiclass, margin: 1.0}
optimizer: {name: adam, lr: 0.001}
train: {epochs: 1, batch_size: 256}
"""


# ----------------------------------------------------------------------------- child process


def child(spec: dict) -> dict:
    """Train in this process (a fresh one) and report epoch times, dev F1s and peak RSS.

    spec["engine"] "torch" swaps the trainer's step for the eager-PyTorch one (same data,
    batches, schedule and evaluation); spec["target_f1"] stops at the first epoch that
    reaches that dev F1, spec["max_seconds"] at the first that ends past that many training
    seconds."""
    import numpy as np

    from windowner import config as cfg
    from windowner.train import SilentReporter, Trainer

    conf = cfg.resolved(cfg.load_config(spec["config"], spec["sets"]))
    run_dir = Path(spec["out"])
    run_dir.mkdir(parents=True, exist_ok=True)
    stop = e2e_rows.stopper(spec.get("target_f1"), spec.get("max_seconds"))
    started = time.perf_counter()
    trainer = Trainer(conf, run_dir, SilentReporter(), on_epoch=stop)
    if spec.get("engine") == "torch":
        from e2e_rows import use_torch_step

        use_torch_step(trainer, spec.get("torch_threads"))
    setup = time.perf_counter() - started
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        trainer.run()
    metrics = trainer.metrics
    return {
        "engine": spec.get("engine", "windowner"),
        "setup_seconds": setup,
        "epoch_seconds": [m["seconds"] for m in metrics],
        "dev_f1s": [m.get("dev_f1") for m in metrics],
        "threads": [m.get("threads") for m in metrics],
        "windows": int(len(trainer.train_idx)),
        "vocab": len(trainer.data.words),
        "dev_f1": metrics[-1].get("dev_f1"),
        "batch_size": conf.train.batch_size,
        "hidden": conf.model.hidden,
        "init": conf.embeddings.init,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "model": str(run_dir / "model.npz"),
    }


def run_child(
    config: Path,
    sets: list[str],
    out: Path,
    engine: str = "windowner",
    target_f1: float | None = None,
    torch_threads: int | None = None,
    max_seconds: float | None = None,
) -> dict:
    spec = {"config": str(config), "sets": sets, "out": str(out), "engine": engine}
    spec["torch_threads"] = torch_threads
    spec["max_seconds"] = max_seconds
    if target_f1 is not None:
        spec["target_f1"] = target_f1
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=os.getcwd(),
    )
    if proc.returncode != 0:
        raise SystemExit(f"training run failed ({' '.join(sets)}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- measurements


def predict_speed(model: Path, dev: Path, repeats: int = 3) -> dict:
    """Tokens/s tagging the dev file with the model, median of ``repeats``."""
    from windowner.corpus import read_conll
    from windowner.tagger import Tagger

    tagger = Tagger.load(model)
    sentences = read_conll(dev)
    tokens = [list(s.tokens) for s in sentences]
    n = sum(len(t) for t in tokens)
    enc = tagger.encode(sentences)
    encoded, from_tokens = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        tagger.tag_encoded(enc)
        encoded.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        tagger.tag(tokens)
        from_tokens.append(time.perf_counter() - t0)
    return {
        "tokens": n,
        "encoded_tokens_per_s": n / statistics.median(encoded),
        "tokens_per_s": n / statistics.median(from_tokens),
    }


def cold_start(model: Path, repeats: int = 5) -> float:
    """Median wall seconds of ``windowner predict`` on one sentence, in a new process, with
    windowner's modules byte-compiled first (``compile_bytecode``)."""
    compile_bytecode()
    cmd = [sys.executable, "-m", "windowner", "predict", "--model", str(model), SENTENCE]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compile_bytecode() -> None:
    """Writes the bytecode of windowner's modules, as ``pip install`` does for an installed
    package. An editable install writes it on first import, unless $PYTHONDONTWRITEBYTECODE
    is set (as on some machines and in many Docker images): then every start compiles the
    whole package again (0.1 s of a one-sentence predict on a 2-core guest), a cost no
    installed windowner pays. Imports nothing: the package is found, not loaded."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("windowner")
    if spec is not None and spec.origin is not None:
        compileall.compile_dir(Path(spec.origin).parent, quiet=1)


def trainer_step() -> str:
    """The step every training run takes: ``windowner.nn.fast.train_step`` (the trainer, the
    tests and bench_train all call that one function), named from the function itself."""
    from windowner.nn.fast import train_step

    return f"{train_step.__module__}.{train_step.__qualname__}"


def blas() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return (
                f"{pool.get('internal_api')} {pool.get('version')} (kernel "
                f"{pool.get('architecture')}, {pool.get('num_threads')} threads)"
            )
    return "not found"


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("train", nargs="?", type=Path, default=DEFAULT_TRAIN)
    ap.add_argument("--dev", type=Path, default=None, help="default: valid.txt beside TRAIN")
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--epochs", type=int, default=2, help="epochs of the target-shape run")
    ap.add_argument("--quick", action="store_true", help="the target-shape run only")
    ap.add_argument(
        "--rows",
        nargs="*",
        choices=ROWS,
        default=list(ROWS),
        help="comparison rows (e2e_rows.py; none with --quick): time to F1 against PyTorch, "
        "busy neighbours, threads auto against 1",
    )
    ap.add_argument("--target-f1", type=float, default=91.0, help="dev F1 of the time-to-F1 row")
    ap.add_argument(
        "--f1-seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="the config's seeds of the time-to-F1 row (medians over them; default 0 1 2)",
    )
    ap.add_argument(
        "--torch-threads", type=int, default=None, help="PyTorch's threads (default: its own)"
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument(
        KEEP_FLAG, action="store_true", help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE if set"
    )
    return ap.parse_args(argv)


def print_predict(predict: dict, cold: float, source: str) -> None:
    """The prediction and cold-start lines of the report (``source``: the run of the model)."""
    print(
        f"\npredict, dev file ({predict['tokens']:,} tokens, model of the {source} run):\n"
        f"  from encoded windows (model + Viterbi): {predict['encoded_tokens_per_s']:>11,.0f}"
        f" tokens/s\n"
        f"  from token lists (encode + model + Viterbi): "
        f"{predict['tokens_per_s']:>7,.0f} tokens/s\n"
        f'cold start, windowner predict "…" (one sentence): {cold:.2f} s'
        " (windowner's modules byte-compiled first, as pip install does)\n"
        "  load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )


def header(train: Path, dev: Path, asked: Path, config: Path) -> str:
    """The report's first lines: data, config (``asked``, or the built-in ``config``), step."""
    return (
        f"bench_e2e: {train} / {dev}\n  config {asked}"
        f"{'' if config == asked else ' (missing: built-in equivalent)'}; trainer step: "
        f"{trainer_step()}; BLAS {blas()}\n  {machine()}\n  load average before: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv if "--child" in argv else run_with_users_blas(argv))
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    train = args.train.resolve()
    dev = (args.dev or args.train.parent / "valid.txt").resolve()
    for path in (train, dev):
        if not path.is_file():
            raise SystemExit(f"{path}: not found (give TRAIN_FILE and/or --dev)")
    tmp = Path(tempfile.mkdtemp(prefix="bench_e2e-"))
    config = args.config
    if not config.is_file():
        config = tmp / "builtin.yaml"
        config.write_text(BUILTIN_CONFIG)
    data = [f"data.train={train}", f"data.dev={dev}", "data.test=null"]
    once = ["train.epochs=1", "train.patience=0"]
    target = ["train.batch_size=256", "model.hidden=100", f"train.epochs={args.epochs}"]
    random_init = ["embeddings.init=random", "embeddings.keep_pretrained=0"]

    err = sys.stderr if args.json else sys.stdout
    print(header(train, dev, args.config, config), file=err, flush=True)
    runs = {}
    plan = [("target shape", data + ["train.patience=0"] + target)]
    if not args.quick:
        plan = [("config", data + once), *plan, ("random init", data + once + random_init)]
    for name, sets in plan:
        runs[name] = run_child(config, sets, tmp / name.replace(" ", "_"))
        if not args.json:
            print_run(name, runs[name], first=len(runs) == 1)
    source = "config" if "config" in runs else "target shape"
    model = Path(runs[source]["model"])
    predict = predict_speed(model, dev)
    cold = cold_start(model)
    result = {
        "machine": machine(),
        "runs": runs,
        "predict": predict,
        "cold_start_seconds": cold,
        "trainer_step": trainer_step(),
    }
    if not args.quick:
        result.update(comparisons(args, config, data, tmp, model, dev))
    result["load_average_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_predict(predict, cold, source)
        e2e_rows.print_rows(result, args.target_f1)
        print_targets(result, args.target_f1)
    return 0


ROWS = ("f1", "contention", "threads")


def comparisons(
    args: argparse.Namespace, config: Path, data: list[str], tmp: Path, model: Path, dev: Path
) -> dict:
    """The rows of e2e_rows.py that ``--rows`` asks for (progress on stderr)."""
    out: dict = {}
    run = functools.partial(run_child, torch_threads=args.torch_threads)
    once = ["train.epochs=1", "train.patience=0"]
    random_init = ["embeddings.init=random", "embeddings.keep_pretrained=0"]
    if "f1" in args.rows:
        print(
            f"time to dev F1 {args.target_f1}, seeds {args.f1_seeds}: windowner, then PyTorch …",
            file=sys.stderr,
        )
        out["time_to_f1"] = e2e_rows.time_to_f1(
            run, config, data, tmp, args.target_f1, args.f1_seeds
        )
    if "contention" in args.rows:
        print("epochs with 0, 1, 2 busy neighbours …", file=sys.stderr)
        out["contention"] = e2e_rows.contention(run, config, data + once, tmp)
    if "threads" in args.rows:
        print("threads auto against 1 …", file=sys.stderr)
        sets = data + once + random_init
        out["threads"] = e2e_rows.threads_rows(run, config, sets, tmp)
        out["predict_threads"] = e2e_rows.predict_threads(model, dev, predict_speed)
    return out


def machine() -> str:
    """CPU, cores, library versions and the environment that changes BLAS speed. Nothing is
    imported here: a child's peak RSS counts what its parent held when it was started."""
    from importlib.metadata import PackageNotFoundError, version

    from windowner.accel import DISABLE_ENV

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    torch_version = installed("torch")
    torch_info = f"torch {torch_version}" if torch_version else "torch not installed"
    numba_version = installed("numba")
    kernels = "numpy"
    if numba_version and os.environ.get(DISABLE_ENV, "") in ("", "0"):
        kernels = f"numba {numba_version}"
    env = f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}; {describe()}"
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    return (
        f"CPU {cpu}, {os.cpu_count()} cores; Python {sys.version.split()[0]}, numpy "
        f"{installed('numpy')}, {torch_info} (threads: its default unless --torch-threads); "
        f"optimizer kernels: {kernels}; {env}"
    )


def print_run(name: str, r: dict, first: bool) -> None:
    if first:
        print(
            f"\n{'run':<13} {'init':<13} {'batch':>5} {'hidden':>6} {'vocab':>7} "
            f"{'windows':>8} {'setup s':>7} {'epoch s':>8} {'windows/s':>10} {'dev F1':>6} "
            f"{'peak RSS':>9}"
        )
    epoch = min(r["epoch_seconds"])
    f1 = "—" if r["dev_f1"] is None else f"{r['dev_f1']:.2f}"
    print(
        f"{name:<13} {r['init']:<13} {r['batch_size']:>5} {r['hidden']:>6} {r['vocab']:>7,} "
        f"{r['windows']:>8,} {r['setup_seconds']:>7.1f} {epoch:>8.2f} "
        f"{r['windows'] / epoch:>10,.0f} {f1:>6} {r['peak_rss_mb']:>6.0f} MB",
        flush=True,
    )


def print_targets(result: dict, target_f1: float) -> None:
    runs = result["runs"]
    lines = []
    epoch = min(runs["target shape"]["epoch_seconds"])
    lines.append((epoch <= 2.0, f"epoch ≤ 2 s at batch 256, hidden 100: {epoch:.2f} s"))
    tps = result["predict"]["encoded_tokens_per_s"]
    lines.append((tps >= 200_000, f"predict ≥ 200k tokens/s in batch: {tps:,.0f}"))
    cold = result["cold_start_seconds"]
    lines.append((cold <= 0.6, f"cold start ≤ 0.6 s: {cold:.2f} s"))
    if "config" in runs and runs["config"]["init"] != "random":
        rss = runs["config"]["peak_rss_mb"]
        lines.append((rss <= 400, f"peak RSS with {runs['config']['init']} ≤ 400 MB: {rss:.0f} MB"))
    lines += e2e_rows.target_lines(result, target_f1)
    print("\ntargets:")
    for ok, text in lines:
        print(f"  {'met   ' if ok else 'MISSED'} {text}")


if __name__ == "__main__":
    sys.exit(main())

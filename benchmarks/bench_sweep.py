"""The two sweep targets of issue 12, measured in one run, each with a met/missed line.

    python benchmarks/bench_sweep.py [--seeds 0 1] [--trials 16] [--epochs 10] [--json]
        [--only workers|pruning] [--one-thread-baseline] [--keep DIR]

1. Workers: ``windowner sweep sweeps/optimizers.yaml`` (the 24-run grid) with ``--workers 1``
   and with ``--workers 2``, each into a fresh sweep directory: wall seconds of the whole
   command and the speedup (target: >= 1.7x), and the trainer's own seconds summed over the
   trials (the same work both times: if it grows with 2 workers, they shared busy cores).
   ``--workers 1`` runs as a user would run it (BLAS threads = cores); ``--one-thread-baseline``
   gives it OPENBLAS_NUM_THREADS=1 instead. Both sweeps should reach the same dev F1 trial by
   trial (each trial is deterministic): the largest difference is printed.
2. Pruning: per seed, a TPE sweep on the embedded data (space below, ``--trials`` trials of
   ``--epochs`` epochs, one worker so the run is deterministic) with the median pruner, and the
   same sweep (same seed, trials and space) unpruned: epochs trained in all and best dev F1
   (target: >= 40% of the epochs saved with the same best dev F1 +- 0.5, on every seed).

The load average is printed before and after: on a shared machine the wall times are noise as
much as signal. Sweeps run as subprocesses (``python -m windowner sweep … --json``); their
directories go to a temporary directory, removed at the end unless ``--keep DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTIMIZERS = ROOT / "sweeps" / "optimizers.yaml"
SPEEDUP_TARGET = 1.7
SAVED_TARGET = 0.40
BEST_TOLERANCE = 0.5
MEDIAN = {"name": "median", "startup_trials": 4, "warmup_epochs": 1}
HALVING = {"name": "halving", "min_epochs": 2, "reduction_factor": 2}
PRUNERS = {"median": MEDIAN, "halving": HALVING}  # --pruner
PRUNING_SPACE = {
    "optimizer.lr": {"float": [0.0002, 0.05], "log": True},
    "model.hidden": {"int": [20, 200], "step": 20},
    "model.keep_prob": {"float": [0.5, 1.0]},
    "train.batch_size": {"choices": [16, 32, 64]},
}


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def shown(loads: list[float]) -> str:
    return " ".join(f"{x:.2f}" for x in loads)


def run_sweep(path: Path, out: Path, workers: int, env: dict[str, str] | None = None) -> dict:
    """``windowner sweep PATH --out OUT --workers N --json`` → its summary plus wall seconds."""
    command = [sys.executable, "-m", "windowner", "sweep", str(path), "--out", str(out)]
    start = time.monotonic()
    done = subprocess.run(
        [*command, "--workers", str(workers), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    wall = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"sweep {path} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout), "wall_s": round(wall, 1)}


def trial_values(sweep_dir: Path) -> dict[str, float]:
    """Each completed trial's value keyed by its overrides (as JSON), from the trial records."""
    values = {}
    for record in sweep_dir.glob("trial-*.json"):
        trial = json.loads(record.read_text(encoding="utf-8"))
        if trial.get("state") == "COMPLETE":
            values[json.dumps(trial["overrides"], sort_keys=True)] = trial["value"]
    return values


def training_seconds(sweep_dir: Path) -> float:
    """The trainer's own seconds (metrics.jsonl), summed over every trial: the same work in
    both sweeps, so a rise with 2 workers means they did not each get a free core."""
    total = 0.0
    for metrics in sweep_dir.glob("trial-*/metrics.jsonl"):
        lines = metrics.read_text(encoding="utf-8").splitlines()
        total += sum(json.loads(line).get("seconds", 0.0) for line in lines if line.strip())
    return total


def largest_difference(a: dict[str, float], b: dict[str, float]) -> float | None:
    """The largest |a - b| over the same trials; None unless both hold the same trials."""
    if a.keys() != b.keys():
        return None
    return max((abs(a[k] - b[k]) for k in a), default=0.0)


def bench_workers(tmp: Path, one_thread_baseline: bool) -> dict:
    """The optimizers grid with 1 worker, then with 2."""
    env = dict(os.environ)
    if one_thread_baseline:
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    one = run_sweep(OPTIMIZERS, tmp / "optimizers-w1", 1, env)
    two = run_sweep(OPTIMIZERS, tmp / "optimizers-w2", 2)
    values = [trial_values(tmp / f"optimizers-w{n}") for n in (1, 2)]
    speedup = one["wall_s"] / two["wall_s"]
    return {
        "trials": one["finished"],
        "workers_1_s": one["wall_s"],
        "workers_2_s": two["wall_s"],
        "speedup": round(speedup, 2),
        "one_thread_baseline": one_thread_baseline,
        "blas_threads_2": max(1, (os.cpu_count() or 1) // 2),
        "training_s": [round(training_seconds(tmp / f"optimizers-w{n}"), 1) for n in (1, 2)],
        "largest_f1_difference": largest_difference(*values),
        "met": speedup >= SPEEDUP_TARGET,
    }


def pruning_file(tmp: Path, seed: int, trials: int, epochs: int, pruner: dict | str) -> Path:
    """A TPE sweep file over the embedded data (configs/adam.yaml)."""
    import yaml

    name = "unpruned" if pruner == "none" else pruner["name"]
    spec = {
        "base": str(ROOT / "configs" / "adam.yaml"),
        "set": {"train.epochs": epochs},
        "method": "tpe",
        "trials": trials,
        "seed": seed,
        "study": f"{name}-{seed}",
        "pruner": pruner,
        "space": PRUNING_SPACE,
    }
    path = tmp / f"tpe-{name}-{seed}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def bench_pruning(
    tmp: Path, seeds: list[int], trials: int, epochs: int, chosen: dict = MEDIAN
) -> dict:
    """Per seed: the TPE sweep unpruned and with the ``chosen`` pruner."""
    rows = []
    for seed in seeds:
        runs = {}
        for pruner in ("none", chosen):
            path = pruning_file(tmp, seed, trials, epochs, pruner)
            runs["none" if pruner == "none" else "pruned"] = run_sweep(path, tmp / path.stem, 1)
        full, pruned = runs["none"], runs["pruned"]
        saved = 1 - pruned["epochs"] / full["epochs"]
        delta = pruned["best"]["value"] - full["best"]["value"]
        rows.append(
            {
                "seed": seed,
                "epochs_unpruned": full["epochs"],
                "epochs_pruned": pruned["epochs"],
                "pruned_trials": pruned["pruned"],
                "saved": round(saved, 3),
                "best_unpruned": round(full["best"]["value"], 2),
                "best_pruned": round(pruned["best"]["value"], 2),
                "best_delta": round(delta, 2),
                "wall_unpruned_s": full["wall_s"],
                "wall_pruned_s": pruned["wall_s"],
                "met": saved >= SAVED_TARGET and abs(delta) <= BEST_TOLERANCE,
            }
        )
    total_full = sum(r["epochs_unpruned"] for r in rows)
    saved_all = 1 - sum(r["epochs_pruned"] for r in rows) / total_full
    return {
        "trials": trials,
        "epochs": epochs,
        "pruner": chosen,
        "seeds": rows,
        "saved_all_seeds": round(saved_all, 3),
        "met": all(r["met"] for r in rows),
    }


def met(flag: bool) -> str:
    return "MET" if flag else "MISSED"


def print_workers(w: dict) -> None:
    baseline = "1 BLAS thread" if w["one_thread_baseline"] else "BLAS threads = cores"
    print(f"workers: sweeps/optimizers.yaml, {w['trials']} trials")
    print(f"  --workers 1 ({baseline}): {w['workers_1_s']:.1f} s")
    print(f"  --workers 2 ({w['blas_threads_2']} BLAS thread(s) each): {w['workers_2_s']:.1f} s")
    w1, w2 = w["training_s"]
    print(f"  training seconds summed over the trials: {w1:.1f} s vs {w2:.1f} s (same work)")
    diff = w["largest_f1_difference"]
    same = "not the same trials!" if diff is None else f"{diff:.2f}"
    print(f"  largest dev F1 difference between the two, trial by trial: {same}")
    print(f"  speedup {w['speedup']:.2f}x; target >= {SPEEDUP_TARGET}x: {met(w['met'])}")


def print_pruning(p: dict) -> None:
    name = p["pruner"]["name"]
    pruner = ", ".join(f"{k} {v}" for k, v in p["pruner"].items() if k != "name")
    print(f"pruning: TPE, {p['trials']} trials x {p['epochs']} epochs, {name} ({pruner}), 1 worker")
    for r in p["seeds"]:
        print(
            f"  seed {r['seed']}: epochs {r['epochs_unpruned']} -> {r['epochs_pruned']} "
            f"({r['saved']:.0%} saved, {r['pruned_trials']} pruned); best dev F1 "
            f"{r['best_unpruned']:.2f} -> {r['best_pruned']:.2f} ({r['best_delta']:+.2f}); "
            f"wall {r['wall_unpruned_s']:.0f} s -> {r['wall_pruned_s']:.0f} s: {met(r['met'])}"
        )
    print(
        f"  all seeds: {p['saved_all_seeds']:.0%} saved; target >= {SAVED_TARGET:.0%} saved with "
        f"best dev F1 +-{BEST_TOLERANCE} on every seed: {met(p['met'])}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--trials", type=int, default=16, help="trials per pruning sweep")
    ap.add_argument("--epochs", type=int, default=10, help="epochs per pruning trial")
    ap.add_argument("--only", choices=("workers", "pruning"))
    ap.add_argument(
        "--pruner", choices=tuple(PRUNERS), default="halving", help="the pruned sweep's"
    )
    ap.add_argument("--one-thread-baseline", action="store_true")
    ap.add_argument("--keep", type=Path, help="keep the sweep directories here")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    result: dict = {"cpus": os.cpu_count(), "load_before": load()}
    if not args.json:
        print(f"{os.cpu_count()} CPUs; load average before: {shown(result['load_before'])}")
    try:
        if args.only != "pruning":
            result["workers"] = bench_workers(tmp, args.one_thread_baseline)
            if not args.json:
                print_workers(result["workers"])
        if args.only != "workers":
            result["pruning"] = bench_pruning(
                tmp, args.seeds, args.trials, args.epochs, PRUNERS[args.pruner]
            )
            if not args.json:
                print_pruning(result["pruning"])
    finally:
        if args.keep:
            shutil.copytree(tmp, args.keep, dirs_exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    result["load_after"] = load()
    after = shown(result["load_after"])
    print(json.dumps(result, indent=2) if args.json else f"load average after: {after}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

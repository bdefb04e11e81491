"""bench_e2e.py's comparison rows: time to a dev F1 against PyTorch, epochs with busy
neighbours, and default threading against one thread (training and predict).

    time to F1     seconds of training (the trainer's epoch seconds, summed) until dev F1
                   reaches the target, windowner and the same model in eager PyTorch trained by
                   the same script: windowner's Trainer with its step swapped for PyTorch's
                   (same data, batches, dropout rates, schedule; evaluated by windowner);
                   medians over three seeds (``--f1-seeds``)
    contention     one epoch with 0, 1 and 2 busy neighbours (``python -c "while True: pass"``
                   processes started here and ended by their pid), each engine against its
                   own idle epoch
    threads        one epoch at batch 32, 256, 1024 with ``train.threads`` auto and 1, and
                   predict tokens/s with ``--threads`` auto and 1 ("not slower" allows 5% of
                   timing noise; when auto chose 1 thread both runs are the same program)
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the parent imports nothing heavy
    import numpy as np

BUSY_LOOP = "while True: pass"


# ----------------------------------------------------------------------------- in the child


def use_torch_step(trainer, threads: int | None = None) -> None:
    """Swap the trainer's step for eager PyTorch on the same parameters (``threads``: torch's
    intra-op threads, None: its default); the trained parameters are copied back before each
    epoch's evaluation and save."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    step = torch_twin(trainer)
    torch_step = step.torch_step  # type: ignore[attr-defined]
    params = trainer.tagger.model.params

    end_epoch = trainer._end_epoch

    def copy_then_end_epoch() -> None:
        torch_step.copy_into(params)
        end_epoch()

    trainer._step = step
    trainer._end_epoch = copy_then_end_epoch


def torch_twin(trainer) -> Callable[[np.ndarray, float], float]:
    """The trainer's ``_step(idx, lr)`` done by PyTorch: windows for the window objectives,
    whole sentences (``idx`` = sentence indices) for ``crf``; ``.torch_step`` is the model."""
    from torch_window import TorchSentenceStep, TorchWindowStep

    from windowner.train import sentence_tokens

    conf = trainer.config
    m = conf.model
    if m.objective not in ("multiclass", "crf") or conf.negatives.k:
        raise SystemExit("the PyTorch twin trains multiclass or crf without negatives only")
    if m.l2 or m.activation != "tanh" or conf.optimizer.name != "adam":
        raise SystemExit("the PyTorch twin has no L2 and uses tanh and Adam")
    params, enc = trainer.tagger.model.params, trainer.data.train_enc
    if m.objective == "crf":
        model = TorchSentenceStep(
            params,
            conf.optimizer.lr,
            m.keep_prob,
            m.input_keep_prob,
            seed=conf.seed,
            constraints=trainer.tagger.model.constraints,
        )
    else:
        model = TorchWindowStep(
            params, conf.optimizer.lr, m.margin, m.keep_prob, m.input_keep_prob, seed=conf.seed
        )

    def step(idx: np.ndarray, lr: float) -> float:
        trainer.state.step += 1
        if m.objective != "crf":
            words, caps = enc.windows(idx)
            return model.step(words, caps, enc.tags[idx], lr)
        tokens, bounds = sentence_tokens(enc.sent_bounds, idx)
        words, caps = enc.windows(tokens)
        return model.step(words, caps, enc.tags[tokens], bounds, lr)

    step.torch_step = model  # type: ignore[attr-defined]
    return step


# ----------------------------------------------------------------------------- in the parent


@contextlib.contextmanager
def busy_neighbours(n: int) -> Iterator[None]:
    """``n`` CPU-bound processes for the length of the block (ended by their own pids)."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(n)]
    try:
        time.sleep(0.5 if n else 0.0)  # let them reach full speed
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def seconds_to_f1(run: dict, target: float) -> tuple[float | None, int | None]:
    """(training seconds, epochs) until the first epoch with dev F1 ≥ target; Nones if never."""
    total = 0.0
    for epoch, (seconds, f1) in enumerate(zip(run["epoch_seconds"], run["dev_f1s"], strict=True)):
        total += seconds
        if f1 is not None and f1 >= target:
            return total, epoch + 1
    return None, None


RunChild = Callable[..., dict]


def stopper(target_f1: float | None, max_seconds: float | None) -> Callable | None:
    """The trainer's on_epoch hook: stop at dev F1 ≥ target_f1 or past max_seconds of
    training (epoch seconds summed); None when neither is set."""
    if target_f1 is None and max_seconds is None:
        return None
    spent = [0.0]

    def stop(record: dict) -> bool:
        spent[0] += record["seconds"]
        reached = target_f1 is not None and record.get("dev_f1", 0.0) >= target_f1
        return reached or (max_seconds is not None and spent[0] > max_seconds)

    return stop


def time_to_f1(
    run_child: RunChild,
    config: Path,
    sets: list[str],
    tmp: Path,
    target: float,
    seeds: list[int],
) -> dict[str, dict]:
    """Both engines trained until the target dev F1 (or the config's epochs), once per seed
    (the config's ``seed``: initial weights, shuffling, dropout), windowner then PyTorch for
    each. How many epochs a run needs moves with the seed (13 to 17 for windowner on
    2026-12-08), so each engine's row is the median over the seeds, a run that never gets
    there counting as the slowest. PyTorch stops once it has trained 2× windowner's time of
    the same seed without reaching it: the ≤ 0.5× target is decided by then, and a
    thread-starved PyTorch on a busy machine could otherwise run for hours."""
    runs: dict[str, list[dict]] = {"windowner": [], "torch": []}
    for seed in seeds:
        seeded = [*sets, f"seed={seed}"]
        ours = f1_run(run_child, config, seeded, tmp, target, "windowner", seed, None)
        limit = None if ours["seconds"] is None else 2.0 * ours["seconds"]
        runs["windowner"].append(ours)
        runs["torch"].append(f1_run(run_child, config, seeded, tmp, target, "torch", seed, limit))
    return {engine: median_run(done) for engine, done in runs.items()}


def f1_run(
    run_child: RunChild,
    config: Path,
    sets: list[str],
    tmp: Path,
    target: float,
    engine: str,
    seed: int,
    limit: float | None,
) -> dict:
    """One engine's run of ``time_to_f1`` (stopped at the target or after ``limit`` seconds
    of training): seconds and epochs to the target, best F1, epoch seconds."""
    out = tmp / f"f1_{engine}_seed{seed}"
    run = run_child(config, sets, out, engine=engine, target_f1=target, max_seconds=limit)
    seconds, epochs = seconds_to_f1(run, target)
    return {
        "seed": seed,
        "seconds": seconds,
        "epochs": epochs,
        "best_f1": max(f for f in run["dev_f1s"] if f is not None),
        "epoch_seconds": run["epoch_seconds"],
        "trained_seconds": sum(run["epoch_seconds"]),
    }


def median_run(runs: list[dict]) -> dict:
    """The seeds' runs of one engine and their medians: seconds and epochs to the target
    (None when the median run did not get there), the median epoch's seconds."""
    never = float("inf")
    seconds = statistics.median(never if r["seconds"] is None else r["seconds"] for r in runs)
    epochs = statistics.median(never if r["epochs"] is None else r["epochs"] for r in runs)
    epoch = statistics.median(min(r["epoch_seconds"]) for r in runs)
    return {
        "seconds": None if seconds == never else seconds,
        "epochs": None if epochs == never else epochs,
        "epoch_seconds": epoch,
        "trained_seconds": statistics.median(r["trained_seconds"] for r in runs),
        "runs": runs,
    }


def contention(run_child: RunChild, config: Path, sets: list[str], tmp: Path) -> dict:
    """Epoch seconds of each engine with 0, 1, 2 busy neighbours."""
    rows: dict[str, dict[int, float]] = {"windowner": {}, "torch": {}}
    for n in (0, 1, 2):
        for engine in rows:
            with busy_neighbours(n):
                run = run_child(config, sets, tmp / f"busy{n}_{engine}", engine=engine)
            rows[engine][n] = min(run["epoch_seconds"])
    return rows


def threads_rows(run_child: RunChild, config: Path, sets: list[str], tmp: Path) -> list[dict]:
    """windowner's epoch seconds at three batch sizes, threads auto against 1."""
    rows = []
    for batch in (32, 256, 1024):
        row = {"batch": batch}
        for setting in ("auto", "1"):
            more = [f"train.batch_size={batch}", f"train.threads={setting}"]
            run = run_child(config, sets + more, tmp / f"threads_{batch}_{setting}")
            row[setting] = min(run["epoch_seconds"])
            row[f"{setting}_threads"] = run["threads"][0]
        rows.append(row)
    return rows


def predict_threads(model: Path, dev: Path, measure: Callable[[Path, Path], dict]) -> dict:
    """Tokens/s tagging the dev file from encoded windows, with threads auto and 1."""
    from windowner.tagger import Tagger
    from windowner.threads import scoring_threads

    spec = Tagger.load(model).model.spec
    out = {}
    for setting in ("auto", "1", "auto"):  # auto twice: before and after, keep the better
        with scoring_threads(setting, spec, 4096) as choice:
            tps = measure(model, dev)["encoded_tokens_per_s"]
        out[setting] = max(out.get(setting, 0.0), tps)
        out[f"{setting}_threads"] = choice.threads
    return out


# ----------------------------------------------------------------------------- printing


def print_rows(result: dict, target_f1: float) -> None:
    f1 = result.get("time_to_f1")
    if f1:
        print(
            f"\ntime to dev F1 ≥ {target_f1} (training seconds, epochs; same script and data; "
            "median over the seeds):"
        )
        for engine, r in f1.items():
            print(f"  {engine:<10} {reached(r)} (epoch {r['epoch_seconds']:.2f} s)")
            for run in r["runs"]:
                per = min(run["epoch_seconds"])
                print(
                    f"    seed {run['seed']}: {reached(run)} (best {run['best_f1']:.2f}; "
                    f"epoch {per:.2f} s)"
                )
    busy = result.get("contention")
    if busy:
        print("\nepoch seconds with busy neighbours (each against its own idle epoch):")
        for engine, r in busy.items():
            cells = ", ".join(f"{n} busy {s:6.2f} s ({s / r[0]:.2f}×)" for n, s in r.items())
            print(f"  {engine:<10} {cells}")
    rows = result.get("threads")
    if rows:
        print("\nthreads auto against 1 (epoch seconds; auto's choice in brackets):")
        for r in rows:
            print(
                f"  batch {r['batch']:>4}: auto {r['auto']:6.2f} s [{r['auto_threads']}], "
                f"1 thread {r['1']:6.2f} s ({r['auto'] / r['1']:.2f}×)"
            )
    p = result.get("predict_threads")
    if p:
        print(
            f"  predict: auto {p['auto']:,.0f} tokens/s [{p['auto_threads']}], 1 thread "
            f"{p['1']:,.0f} tokens/s"
        )


def seed_ratios(f1: dict) -> str:
    """Each seed's ratio of windowner's seconds to PyTorch's: "0.47×, < 0.49×, –" (<: PyTorch
    stopped before it got there; –: windowner never got there)."""
    cells = []
    for ours, theirs in zip(f1["windowner"]["runs"], f1["torch"]["runs"], strict=True):
        if ours["seconds"] is None:
            cells.append("–")
        elif theirs["seconds"] is None:
            cells.append(f"< {ours['seconds'] / theirs['trained_seconds']:.2f}×")
        else:
            cells.append(f"{ours['seconds'] / theirs['seconds']:.2f}×")
    return ", ".join(cells)


def reached(r: dict) -> str:
    """ "55.1 s in 15 epochs", or "not reached in 120.3 s"."""
    if r["seconds"] is None:
        return f"not reached in {r['trained_seconds']:.1f} s"
    return f"{r['seconds']:7.1f} s in {r['epochs']:g} epochs"


def target_lines(result: dict, target_f1: float) -> list[tuple[bool, str]]:
    lines = []
    f1 = result.get("time_to_f1")
    if f1:
        ours, theirs = f1["windowner"]["seconds"], f1["torch"]["seconds"]
        seeds = len(f1["torch"]["runs"])
        what = f"time to dev F1 {target_f1} ≤ 0.5× PyTorch's (median of {seeds} seeds)"
        if ours is None:
            lines.append((False, f"{what}: not reached"))
        elif theirs is None:
            spent = f1["torch"]["trained_seconds"]
            text = f"{what}: {ours:.0f} s, PyTorch not there after {spent:.0f} s"
            lines.append((ours <= 0.5 * spent, f"{text} (seeds: {seed_ratios(f1)})"))
        else:
            ratio, each = ours / theirs, seed_ratios(f1)
            text = f"{what}: {ours:.0f} s / {theirs:.0f} s = {ratio:.2f}× (seeds: {each})"
            lines.append((ratio <= 0.5, text))
    busy = result.get("contention")
    if busy:
        r = busy["windowner"]
        for n, limit in ((1, 1.5), (2, 3.0)):
            slow = r[n] / r[0]
            text = f"{n} busy neighbour(s) slow an epoch ≤ {limit}×: {slow:.2f}×"
            lines.append((slow <= limit, text))
    for r in result.get("threads") or []:
        # auto's choice of 1 thread is the same program as 1 thread: the ratio is noise
        ratio, same = r["auto"] / r["1"], r["auto_threads"] == 1
        text = f"threads auto not slower than 1 at batch {r['batch']}: {ratio:.2f}×"
        lines.append((same or ratio <= 1.05, text + (" (auto chose 1 thread)" if same else "")))
    p = result.get("predict_threads")
    if p:
        ratio, same = p["1"] / p["auto"], p["auto_threads"] == 1
        text = f"predict threads auto not slower than 1: {ratio:.2f}×"
        lines.append((same or ratio <= 1.05, text + (" (auto chose 1 thread)" if same else "")))
    return lines

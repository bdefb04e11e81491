"""Where one training step's time goes: bench_train's model and data, one shape, the fast path's
pieces timed inside real steps (median µs per step over many steps), next to the GEMM limit.

The pieces are the fast path's own functions, wrapped with a timer for this process only
(nothing is copied, so the profile follows nn/fast.py and the optimizer as they change):

    lookups         nn.fast.embed_into                 (word and caps rows into x)
    hidden          nn.fast.hidden_into                (x Wᵀ + b, activation: one of the GEMMs)
    hinge           nn.fast.multiclass_hinge_into      (margins, loss, dJ/ds)
    activation′     nn.fast.activation_backward_into / the numba tanh pass (with db)
    word row sums   nn.fast.sum_window_rows / the numba RowSummer
    caps row sums   nn.fast.sum_window_rows_small / the numba RowSummer
    dense update    Optimizer._update_dense (W, b, U)  [numpy path]
    row update      Optimizer._update_rows (E_word, E_caps) [numpy path]
    fused update    Optimizer._update_fused            [numba kernels]
    rest            the step minus the pieces: scores a U, dU, dW and dx products, db, glue

    python benchmarks/profile_step.py [--batch 1024] [--hidden 100] [--steps 400]
                                      [--kernels numpy|numba] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_train as bt  # noqa: E402
from blas_env import describe, run_with_users_blas  # noqa: E402

from windowner.nn import fast  # noqa: E402
from windowner.optim.optimizers import Optimizer  # noqa: E402

PIECES = {
    "lookups": (fast, "embed_into"),
    "hidden": (fast, "hidden_into"),
    "hinge": (fast, "multiclass_hinge_into"),
    "activation′": (fast, "activation_backward_into"),
    "word row sums": (fast, "sum_window_rows"),
    "caps row sums": (fast, "sum_window_rows_small"),
    "dense update": (Optimizer, "_update_dense"),
    "row update": (Optimizer, "_update_rows"),
    "fused update": (Optimizer, "_update_fused"),
}


def timed(spent: dict[str, float], name: str, fn: Callable) -> Callable:
    """fn, adding its wall time to spent[name]."""

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - t0

    return wrapper


def instrument(spent: dict[str, float], ours: bt.WindownerStep) -> None:
    """Wraps every piece (and the workspace's numba row summers, if any) with a timer."""
    for name, (owner, attr) in PIECES.items():
        setattr(owner, attr, timed(spent, name, getattr(owner, attr)))
    for ws in ours.model.fast_buffers.values():
        if ws.tanh_backward is not None:  # numba: tanh′ and db in one pass
            ws.tanh_backward = timed(spent, "activation′", ws.tanh_backward)
        if ws.row_summer is not None:
            ws.row_summer = timed(spent, "word row sums", ws.row_summer)
        if ws.caps_summer is not None:
            ws.caps_summer = timed(spent, "caps row sums", ws.caps_summer)


def profile(args: argparse.Namespace) -> tuple[dict[str, list[float]], list[float]]:
    """Per-step seconds of each piece (and "step"), and of the GEMM triple, interleaved."""
    data = bt.make_data()
    items = bt.batches(data, args.batch)
    ours = bt.WindownerStep(args.hidden, seed=0, kernels=args.kernels)
    ours.force_kernels(args.batch)
    batches = [ours.prepare(b) for b in items]
    gemm = bt.gemm_step(args.batch, args.hidden)
    for i in range(20):  # warm up (numba compiles here)
        ours(batches[i % len(batches)])
    spent = dict.fromkeys(PIECES, 0.0)
    instrument(spent, ours)
    per_step: dict[str, list[float]] = {name: [] for name in (*PIECES, "step")}
    gemm_times = []
    for i in range(args.steps):
        for name in spent:
            spent[name] = 0.0
        t0 = time.perf_counter()
        ours(batches[i % len(batches)])
        per_step["step"].append(time.perf_counter() - t0)
        for name, seconds in spent.items():
            per_step[name].append(seconds)
        t0 = time.perf_counter()
        gemm(None)
        gemm_times.append(time.perf_counter() - t0)
    return per_step, gemm_times


def main(argv: list[str] | None = None) -> int:
    argv = run_with_users_blas(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--kernels", choices=("numpy", "numba"), default="numpy")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    args = ap.parse_args(argv)
    problem = bt.check_kernels(args.kernels)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    from threadpoolctl import threadpool_limits

    with threadpool_limits(args.threads, user_api="blas"):
        per_step, gemm_times = profile(args)
    medians = {name: statistics.median(v) for name, v in per_step.items()}
    step, gemm = medians.pop("step"), statistics.median(gemm_times)
    rest = step - sum(medians.values())
    print(
        f"batch {args.batch}, hidden {args.hidden}, {args.kernels}, {args.threads} BLAS "
        f"thread(s), median of {args.steps} steps; {describe()}; load {bt.load_average()}"
    )
    for name, seconds in (*medians.items(), ("rest", rest)):
        if seconds:
            print(f"  {name:14s} {1e6 * seconds:8.1f} µs  {100 * seconds / step:4.1f}%")
    print(f"  {'step':14s} {1e6 * step:8.1f} µs")
    print(f"  GEMM triple alone {1e6 * gemm:.1f} µs: {100 * gemm / step:.0f}% of the step")
    return 0


if __name__ == "__main__":
    sys.exit(main())

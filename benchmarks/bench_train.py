"""Training-step throughput: windowner against PyTorch on the same model, shapes and data.

Both sides train the same network from the same initial parameters on the same batches:
5-word windows over a 30k vocabulary (50-dim word vectors, 5-dim caps vectors), a tanh hidden
layer, 9 tags, the multi-class hinge (Weston–Watkins, margin 1), Adam (lr 1e-3) with a sparse
(lazy) update of the word table. One step = forward, loss, backward and the optimizer update.

    windowner   nn.fast.train_step, the trainer's step: the numpy fast path + Optimizer.step
    torch       eager PyTorch, two variants timed, the faster one reported per shape:
                  sparse  word table as a sparse gradient + SparseAdam, the rest fused Adam
                  dense   everything dense, fused Adam
    GEMM limit  the three big matrix products of a step alone (x Wᵀ, δᵀ x, δ W) in numpy:
                the speed windowner would have if nothing but those products cost time

windowner's kernels (``--kernels``): ``default`` is what a user gets (the numba kernels of
``make accel`` when numba is installed and $WINDOWNER_NO_NUMBA unset, else numpy); ``numpy``
or ``numba`` force one; ``both`` times the numpy path and the numba kernels in the same
rotation and reports the GEMM share of each (the targets are checked on the numpy path).

Each shape is timed in alternating blocks (windowner, torch sparse, torch dense, GEMMs, in
rotating order, with a pause before each so that no library's idle threads still spin) and
the median block is reported, so a load that comes and goes hits all sides alike.
OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE, which this machine sets, are unset for the benchmark's own
process (benchmarks/blas_env.py; ``--keep-openblas-env`` keeps them) and the header says so.
windowner runs under its own thread policy (``--threads auto``: windowner.threads, chosen per
shape from the product size and the machine's load, as training does), torch with its
default threads (``--torch-threads``); the GEMM limit uses windowner's thread count. Where
the trainer would update W in a second process (windowner.optim.worker: small products,
two free cores, the numpy kernels), windowner's step does too, after the same probe, and the
threads column says ``1+w``.
``--runs N`` repeats the whole measurement and reports medians with the ratio's range.

    python benchmarks/bench_train.py [--json] [--runs 4] [--repeats 7] [--threads auto|N]
                                      [--kernels default|numpy|numba|both] [--keep-openblas-env]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from blas_env import KEEP_FLAG, describe, run_with_users_blas  # noqa: E402

from windowner.nn.fast import train_step, workspace  # noqa: E402
from windowner.nn.model import Batch, ModelSpec, WindowScorer  # noqa: E402
from windowner.optim.optimizers import Optimizer, OptimizerSettings  # noqa: E402

VOCAB, WINDOW, WORD_DIM, CAPS_DIM, N_TAGS, CAPS_CLASSES = 30_000, 5, 50, 5, 9, 6
INPUT_DIM = WINDOW * (WORD_DIM + CAPS_DIM)
LR = 1e-3
BATCHES = (32, 256, 1024)
HIDDENS = (100, 300)
POOL = 1 << 16  # windows in the data pool; batches cycle through it
ZIPF = 1.12  # word-frequency exponent, fitted to CoNLL-2003 (see make_data)


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Data:
    """One pool of windows, as numpy (windowner) and as torch tensors (made once, untimed)."""

    words: np.ndarray  # (POOL, WINDOW) int32
    caps: np.ndarray  # (POOL, WINDOW) int32
    tags: np.ndarray  # (POOL,) int32


def make_data(zipf: float = ZIPF, seed: int = 0) -> Data:
    """Word ids with a Zipf–Mandelbrot distribution, p(rank r) ∝ (r + 2.7)^−zipf, as in running
    text: a few ids repeat a lot within a batch, most appear once. The default exponent is
    fitted to CoNLL-2003's training windows: a batch of 1024 windows holds about 1,860
    distinct word ids of its 5,120 in both (zipf 1.0 would give 2,440, and more work for the
    sparse update). Caps classes and tags are skewed like CoNLL-2003's (83% of tokens O)."""
    rng = np.random.default_rng(seed)
    p_word = 1.0 / (np.arange(VOCAB) + 3.7) ** zipf
    words = rng.choice(VOCAB, size=(POOL, WINDOW), p=p_word / p_word.sum()).astype(np.int32)
    p_caps = np.array([0.60, 0.03, 0.26, 0.01, 0.10, 0.0])
    caps = rng.choice(CAPS_CLASSES, size=(POOL, WINDOW), p=p_caps).astype(np.int32)
    p_tag = np.r_[0.83, np.full(N_TAGS - 1, 0.17 / (N_TAGS - 1))]
    tags = rng.choice(N_TAGS, size=POOL, p=p_tag).astype(np.int32)
    return Data(words, caps, tags)


def batches(data: Data, batch: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    n = POOL // batch
    return [
        (data.words[i * batch : (i + 1) * batch], data.caps[i * batch : (i + 1) * batch],
         data.tags[i * batch : (i + 1) * batch])
        for i in range(n)
    ]  # fmt: skip


# ----------------------------------------------------------------------------- the contenders


KERNELS = ("default", "numpy", "numba", "both")


class WindownerStep:
    """windowner's training step; ``kernels`` "numpy" or "numba" forces the optimizer's and
    the row sums' kernels (None: what ``windowner.accel`` picks, as for a user)."""

    name = "windowner"

    def __init__(self, hidden: int, seed: int, kernels: str | None = None) -> None:
        spec = ModelSpec(
            vocab_size=VOCAB,
            n_out=N_TAGS,
            window=WINDOW,
            word_dim=WORD_DIM,
            caps_dim=CAPS_DIM,
            hidden=hidden,
            activation="tanh",
            objective="multiclass",
        )
        self.model = WindowScorer.create(spec, np.random.default_rng(seed))
        fused = None if kernels is None else kernels == "numba"
        self.optimizer = Optimizer(OptimizerSettings("adam"), fused=fused)
        self.kernels = kernels

    def force_kernels(self, batch: int) -> None:
        """Makes the row sums and the tanh backward pass of ``batch`` windows use the kernels
        asked for."""
        if self.kernels is None:
            return
        from windowner.nn.fused import RowSummer
        from windowner.nn.fused_passes import tanh_backward

        ws, numba = workspace(self.model, batch), self.kernels == "numba"
        ws.row_summer = RowSummer(VOCAB) if numba else None
        ws.caps_summer = RowSummer(CAPS_CLASSES) if numba else None
        ws.tanh_backward = tanh_backward if numba else None

    def initial_params(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.model.params.items()}

    def prepare(self, batch: tuple) -> Batch:
        return Batch(*batch)

    def __call__(self, batch: Batch) -> float:
        return train_step(self.model, batch, self.optimizer, LR)

    def start_worker(self, choice, items: list) -> bool:
        """What the trainer does with W's update (optim/worker.py's WorkerPolicy: a second
        process where it can pay), including its probe of steps with and without the
        worker, run here on ``items``. Returns whether a worker was kept."""
        from windowner.optim.worker import PROBE_BLOCKS, PROBE_STEPS, WARMUP_STEPS, WorkerPolicy

        self.worker = WorkerPolicy(self.optimizer, lambda line: None)
        self.worker.start(self.model.params, choice, self.optimizer.kernels, 0.0)
        for i in range(WARMUP_STEPS + PROBE_BLOCKS * PROBE_STEPS):
            if self.worker.worker is None:
                break
            t0 = time.perf_counter()
            self(items[i % len(items)])
            self.worker.observe(time.perf_counter() - t0)
        return self.worker.worker is not None

    def stop_worker(self) -> None:
        if getattr(self, "worker", None) is not None:
            self.worker.stop()


class TorchStep:
    """The same network in eager PyTorch; ``variant`` is "sparse" or "dense"."""

    def __init__(self, params: dict[str, np.ndarray], variant: str) -> None:
        import torch
        import torch.nn.functional as F  # noqa: N812

        self.torch, self.F, self.variant = torch, F, variant
        self.name = f"torch {variant}"

        def param(a: np.ndarray) -> torch.nn.Parameter:
            return torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(a).copy()))

        self.E_word, self.E_caps = param(params["E_word"]), param(params["E_caps"])
        self.W, self.b = param(params["W"]), param(params["b"])
        self.Ut = param(params["U"].T)  # scores = a U = F.linear(a, Uᵀ)
        dense = [self.E_caps, self.W, self.b, self.Ut]
        if variant == "sparse":
            self.optimizers = [
                torch.optim.SparseAdam([self.E_word], lr=LR),
                torch.optim.Adam(dense, lr=LR, fused=True),
            ]
        else:
            self.optimizers = [torch.optim.Adam([self.E_word, *dense], lr=LR, fused=True)]
        self.sparse = variant == "sparse"

    def prepare(self, batch: tuple) -> tuple:
        torch = self.torch
        words, caps, tags = batch
        return tuple(torch.from_numpy(a.astype(np.int64)) for a in (words, caps, tags))

    def __call__(self, batch: tuple) -> float:
        F = self.F
        words, caps, tags = batch
        n = words.shape[0]
        x = self.torch.cat(
            (
                F.embedding(words, self.E_word, sparse=self.sparse).view(n, -1),
                F.embedding(caps, self.E_caps).view(n, -1),
            ),
            dim=1,
        )
        scores = F.linear(self.torch.tanh(F.linear(x, self.W, self.b)), self.Ut)
        # multi_margin_loss averages over the C classes too; × C gives Σ_{c≠y} like windowner
        loss = F.multi_margin_loss(scores, tags, margin=1.0) * N_TAGS
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in self.optimizers:
            opt.step()
        return loss.item()


def gemm_step(batch: int, hidden: int, seed: int = 0) -> Callable[[None], None]:
    """The three big products of one step, in float32 with preallocated outputs."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, INPUT_DIM), dtype=np.float32)
    W = rng.standard_normal((hidden, INPUT_DIM), dtype=np.float32)
    dz = rng.standard_normal((batch, hidden), dtype=np.float32)
    z = np.empty((batch, hidden), np.float32)
    dW, dx = np.empty_like(W), np.empty_like(x)

    def run(_: None) -> None:
        np.matmul(x, W.T, out=z)
        np.matmul(dz.T, x, out=dW)
        np.matmul(dz, W, out=dx)

    return run


# ----------------------------------------------------------------------------- timing


def time_block(step: Callable, items: list, start: int, n_steps: int) -> float:
    """Seconds per step over ``n_steps`` consecutive items (cycling)."""
    t0 = time.perf_counter()
    for i in range(start, start + n_steps):
        step(items[i % len(items)])
    return (time.perf_counter() - t0) / n_steps


def measure(
    contenders: list[tuple[str, Callable, list]], repeats: int, block_seconds: float, pause: float
) -> dict[str, float]:
    """Median seconds per step of each contender, timed in alternating blocks.

    Before each block the process sleeps ``pause`` seconds: OpenBLAS's and OpenMP's worker
    threads spin for a while after their last parallel region, and the spinning threads of
    the previous contender would otherwise steal the cores from the next one.
    """
    n_steps = {}
    position = dict.fromkeys((name for name, _, _ in contenders), 0)
    for name, step, items in contenders:  # warm up, and size the blocks
        time.sleep(pause)
        time_block(step, items, 0, 3)
        per_step = time_block(step, items, 3, 5)
        n_steps[name] = max(3, int(block_seconds / per_step))
        position[name] = 8
    times: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
    for r in range(repeats):
        k = r % len(contenders)
        for name, step, items in contenders[k:] + contenders[:k]:
            time.sleep(pause)
            times[name].append(time_block(step, items, position[name], n_steps[name]))
            position[name] += n_steps[name]
    return {name: statistics.median(t) for name, t in times.items()}


# ----------------------------------------------------------------------------- environment


def blas_info() -> tuple[str, int | None]:
    """numpy's BLAS as threadpoolctl reports it, and its thread count."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed: pip install -e '.[bench]')", None
    for pool in threadpool_info():
        if pool.get("user_api") == "blas" and "numpy" in pool.get("filepath", ""):
            arch = pool.get("architecture") or "?"
            return (
                f"{pool.get('internal_api')} {pool.get('version')} (kernel {arch}, "
                f"{pool.get('num_threads')} threads, {pool.get('threading_layer', '?')})",
                int(pool.get("num_threads")),
            )
    return "not found by threadpoolctl", None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print the results as a JSON list")
    ap.add_argument("--repeats", type=int, default=7, help="timed blocks per contender (median)")
    ap.add_argument("--block-seconds", type=float, default=0.3, help="length of a timed block")
    ap.add_argument("--pause", type=float, default=0.3, help="idle seconds before each block")
    ap.add_argument(
        "--threads",
        default="auto",
        help="windowner's BLAS threads: auto (windowner.threads, per shape, the default) or N",
    )
    ap.add_argument(
        "--torch-threads", type=int, default=None, help="torch's threads (default: its own)"
    )
    ap.add_argument("--runs", type=int, default=1, help="whole measurements; medians reported")
    ap.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    ap.add_argument("--hiddens", type=int, nargs="+", default=list(HIDDENS))
    ap.add_argument("--no-torch", action="store_true", help="time windowner and GEMMs only")
    ap.add_argument("--zipf", type=float, default=ZIPF, help="word-frequency exponent")
    ap.add_argument(
        "--kernels",
        choices=KERNELS,
        default="default",
        help="windowner's kernels: what a user gets (default), numpy, numba, or both side by side",
    )
    ap.add_argument("--save", type=Path, help="also write the JSON list to this file")
    ap.add_argument(
        KEEP_FLAG, action="store_true", help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE if set"
    )
    return ap.parse_args(argv)


def import_torch(args: argparse.Namespace):
    """(torch or None, one line about it)."""
    if args.no_torch:
        return None, "torch not timed (--no-torch)"
    try:
        import torch
    except ImportError:
        return None, "torch not installed (pip install -e '.[bench]'): torch columns empty"
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    return torch, (
        f"torch {torch.__version__} ({torch.get_num_threads()} threads, "
        f"BLAS {torch.backends.mkl.is_available() and 'MKL' or 'not MKL'}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()})"
    )


def measure_shape(args, torch, data: Data, batch: int, hidden: int) -> dict:
    """One shape: windowner under its thread policy, torch, and the GEMMs at windowner's
    thread count (the limit of the products windowner runs)."""
    from windowner.threads import ThreadPolicy

    items = batches(data, batch)
    ours = WindownerStep(hidden, seed=0, kernels=primary_kernels(args.kernels))
    contenders = [("windowner", ours, [ours.prepare(b) for b in items])]
    if args.kernels == "both":
        numba_step = WindownerStep(hidden, seed=0, kernels="numba")
        contenders.append(("windowner numba", numba_step, contenders[0][2]))
    for _, step, _ in contenders:
        step.force_kernels(batch)
    if torch is not None:
        for variant in ("sparse", "dense"):
            theirs = TorchStep(ours.initial_params(), variant)
            contenders.append((theirs.name, theirs, [theirs.prepare(b) for b in items]))
    contenders.append(("gemm", gemm_step(batch, hidden), [None]))
    with ThreadPolicy(args.threads, batch, hidden, INPUT_DIM) as choice:
        worker = ours.start_worker(choice, contenders[0][2])
        try:
            sec = measure(contenders, args.repeats, args.block_seconds, args.pause)
        finally:
            ours.stop_worker()
    wps = {name: batch / s for name, s in sec.items()}
    torch_best = max((n for n in wps if n.startswith("torch")), key=wps.get, default=None)
    return {
        "batch": batch,
        "hidden": hidden,
        "threads": choice.threads,
        "worker": worker,
        "windowner_wps": round(wps["windowner"]),
        "torch_wps": round(wps[torch_best]) if torch_best else None,
        "torch_variant": torch_best.split()[1] if torch_best else None,
        "ratio": round(wps["windowner"] / wps[torch_best], 3) if torch_best else None,
        "gemm_limit_wps": round(wps["gemm"]),
        "numba_wps": round(wps["windowner numba"]) if "windowner numba" in wps else None,
    }


def primary_kernels(option: str) -> str | None:
    """The kernels of the "windowner" column: None (a user's default), numpy or numba."""
    return {"default": None, "both": "numpy"}.get(option, option)


def check_kernels(option: str) -> str | None:
    """An error line when the kernels asked for cannot run here, else None."""
    from windowner import accel

    if option in ("numba", "both") and not accel.numba_importable():
        return f"--kernels {option}: numba is not installed (make accel)"
    return None


def median_row(runs: list[dict]) -> dict:
    """One shape over several runs: medians, and the range of the ratio and GEMM share."""
    row = dict(runs[0])
    for key in ("windowner_wps", "torch_wps", "gemm_limit_wps", "ratio"):
        values = [r[key] for r in runs if r[key] is not None]
        row[key] = statistics.median(values) if values else None
    ratios = [r["ratio"] for r in runs if r["ratio"] is not None]
    row["ratio_range"] = [min(ratios), max(ratios)] if ratios else None
    shares = [r["windowner_wps"] / r["gemm_limit_wps"] for r in runs]
    row["gemm_share"] = statistics.median(shares)
    row["gemm_share_range"] = [min(shares), max(shares)]
    row["threads"] = sorted({r["threads"] for r in runs})
    row["worker"] = sum(bool(r.get("worker")) for r in runs)  # runs with W's update worker
    numba = [r["numba_wps"] for r in runs if r.get("numba_wps")]
    row["numba_wps"] = statistics.median(numba) if numba else None
    row["numba_gemm_share"] = (
        statistics.median(r["numba_wps"] / r["gemm_limit_wps"] for r in runs) if numba else None
    )
    row["runs"] = len(runs)
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(run_with_users_blas(sys.argv[1:] if argv is None else argv))
    problem = check_kernels(args.kernels)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    torch, torch_info = import_torch(args)
    blas, _ = blas_info()
    data = make_data(args.zipf)
    from windowner import accel

    header = [
        "bench_train: one training step (forward, loss, backward, Adam with sparse embedding "
        "update)",
        f"  window {WINDOW}, word dim {WORD_DIM}, caps dim {CAPS_DIM}, vocab {VOCAB}, "
        f"{N_TAGS} tags, tanh, multi-class hinge, float32",
        f"  numpy {np.__version__}, BLAS {blas}; windowner threads: {args.threads}; "
        f"windowner kernels: {describe_kernels(args.kernels, accel.available())}",
        f"  {torch_info}",
        f"  CPU {cpu_name()}, {os.cpu_count()} cores; {describe()}",
        f"  word ids ∝ (rank + 2.7)^−{args.zipf:g}: "
        f"{len(np.unique(data.words[:1024])):,} distinct in a batch of 1024 "
        "windows (CoNLL-2003 train: about 1,860)",
        f"  {args.runs} run(s), each the median of {args.repeats} timed blocks; "
        f"load average before: {load_average()}",
    ]
    err = sys.stderr if args.json else sys.stdout
    print("\n".join(header), file=err, flush=True)
    shapes = [(b, h) for h in args.hiddens for b in args.batches]
    per_shape: dict[tuple[int, int], list[dict]] = {shape: [] for shape in shapes}
    for run in range(args.runs):
        for batch, hidden in shapes:
            row = measure_shape(args, torch, data, batch, hidden)
            per_shape[(batch, hidden)].append(row)
            if not args.json and args.runs > 1:
                print(f"  run {run + 1}: {format_brief(row)}", file=err, flush=True)
    rows = [median_row(per_shape[shape]) for shape in shapes]
    print(f"  load average after: {load_average()}", file=err)
    if args.save:
        args.save.write_text(json.dumps(rows, indent=2) + "\n")
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for i, row in enumerate(rows):
            print_row(row, first=i == 0)
        print_targets(rows)
    return 0


def describe_kernels(option: str, numba_default: bool) -> str:
    if option == "both":
        return "numpy path and numba kernels (make accel), side by side"
    if option == "default":
        return f"{'numba' if numba_default else 'numpy'} (what a user gets here)"
    return f"{option} (forced)"


def format_brief(row: dict) -> str:
    ratio = "—" if row["ratio"] is None else f"{row['ratio']:.2f}×"
    return (
        f"batch {row['batch']}, hidden {row['hidden']}: {row['windowner_wps']:,} w/s "
        f"[{row['threads']} thr], ratio {ratio}, "
        f"{100 * row['windowner_wps'] / row['gemm_limit_wps']:.0f}% of GEMM"
        + (
            f"; numba {row['numba_wps']:,} w/s, "
            f"{100 * row['numba_wps'] / row['gemm_limit_wps']:.0f}% of GEMM"
            if row.get("numba_wps")
            else ""
        )
    )


COLUMNS = (
    ("batch", 5),
    ("hidden", 6),
    ("threads", 7),
    ("windowner w/s", 13),
    ("torch w/s", 10),
    ("(variant)", 9),
    ("ratio", 6),
    ("(range)", 11),
    ("GEMM limit w/s", 14),
    ("% of GEMM", 9),
)
NUMBA_COLUMNS = (("numba w/s", 10), ("% (numba)", 9))  # with --kernels both


def print_row(row: dict, first: bool) -> None:
    columns = COLUMNS + (NUMBA_COLUMNS if row["numba_wps"] else ())
    if first:
        print()
        print("  ".join(f"{name:>{w}}" for name, w in columns))
    has_torch = row["torch_wps"] is not None
    low, high = row["ratio_range"] or (None, None)
    values = (
        row["batch"],
        row["hidden"],
        "/".join(map(str, row["threads"])) + ("+w" if row.get("worker") else ""),
        f"{row['windowner_wps']:,.0f}",
        f"{row['torch_wps']:,.0f}" if has_torch else "—",
        row["torch_variant"] or "",
        f"{row['ratio']:.2f}×" if has_torch else "—",
        f"{low:.2f}–{high:.2f}" if has_torch and row["runs"] > 1 else "",
        f"{row['gemm_limit_wps']:,.0f}",
        f"{100 * row['gemm_share']:.0f}%",
    )
    if row["numba_wps"]:
        values += (f"{row['numba_wps']:,.0f}", f"{100 * row['numba_gemm_share']:.0f}%")
    print("  ".join(f"{v!s:>{w}}" for v, (_, w) in zip(values, columns, strict=True)), flush=True)


def print_targets(rows: list[dict]) -> None:
    """The issue's targets, each marked met or missed (ratios: the median over the runs)."""
    lines = []
    for r in rows:
        if r["ratio"] is not None:
            ok = r["ratio"] >= 1.5
            lines.append(
                f"  {'met   ' if ok else 'MISSED'} ≥ 1.5× torch at batch {r['batch']}, "
                f"hidden {r['hidden']}: {r['ratio']:.2f}× (median of {r['runs']} run(s))"
            )
        if r["batch"] == 1024 and r["hidden"] == 100:
            pct = 100 * r["gemm_share"]
            lines.append(
                f"  {'met   ' if pct >= 50 else 'MISSED'} ≥ 50% of the GEMM limit at batch 1024, "
                f"hidden 100: {pct:.0f}%"
            )
            if r["numba_wps"]:
                lines.append(f"  (numba kernels: {100 * r['numba_gemm_share']:.0f}%)")
    if lines:
        print("\ntargets:")
        print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())

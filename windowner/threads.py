"""How many threads numpy's BLAS may use: chosen per run from the product sizes and the machine.

OpenBLAS splits every matrix product across all cores by default, and its worker threads
spin while they wait. For this model's products that is a loss twice over: a step's
products are small (B×D by D×H, D = 275), so at small batches the split costs more than it
saves; and when another process keeps a core busy, the product waits for the worker that
does not get it — an epoch can take 4× (one busy neighbour) to 40× (two) as long as on one
thread. So ``auto``:

    1. runs the products of B·H·D < MIN_THREADED_MNK multiply-adds on one thread;
    2. else uses the free cores: the usable cores (CPU affinity, a cgroup quota, and never
       more than OPENBLAS_NUM_THREADS/OMP_NUM_THREADS/MKL_NUM_THREADS ask) minus the
       cores other processes keep busy: the larger of what /proc/stat shows over
       SAMPLE_SECONDS (less our own CPU time) and the 1-minute load average (less our one
       thread), so a neighbour that pauses for a moment still counts;
    3. re-measures while it trains (``ThreadPolicy.recheck``: every RECHECK_SECONDS and at
       each epoch end): a neighbour that arrives takes threads away at once; threads come
       back when both the last seconds and the last minute show the cores free;
    4. keeps more than one thread only if the training steps measured faster with them
       (``ThreadPolicy.observe``: PROBE_STEPS steps each way), so a wrong MIN_THREADED_MNK
       for this machine costs a few steps, not a run.

Too many threads cost far more than too few (a product waiting for a descheduled worker
can take 10–40× as long; one thread too few at most doubles the products' time), hence
the caution.

A number ``N`` is used as given. The thread count can change the last bits of float32
products, so bit-identical runs on another machine or load need a number, not ``auto``.
threadpoolctl is imported only when a limit is applied (never by ``windowner --help``).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

AUTO = "auto"
MIN_THREADED_MNK = 16_000_000  # multiply-adds in one product (batch × hidden × input dim)
# OpenBLAS runs products below 4 × 65536 multiply-adds on one thread by itself: for those
# ``auto`` sets no limit (and does not import threadpoolctl: one-sentence predict stays fast)
BLAS_SINGLE_MNK = 4 * 65536
SCORE_CHUNK = 4096  # windows per product when scoring (WindowScorer.scores)
SAMPLE_SECONDS = 0.1
RECHECK_SECONDS = 2.0  # the trainer's re-measurements, at most this often
PROBE_STEPS = 12  # steps timed at each thread count before more than one thread is kept
FREE_MARGIN = 0.25  # a core counts as free when others use less than 1 − FREE_MARGIN of it


def parse_setting(value: Any) -> int | None:
    """``"auto"`` → None, a positive whole number (or its string) → that number.

    Raises ValueError with a one-line reason for anything else."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected 'auto' or a positive whole number, got {value!r}")
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected 'auto' or a positive whole number, got {value!r}") from None
    if n < 1 or (isinstance(value, float) and value != n):
        raise ValueError(f"expected 'auto' or a positive whole number, got {value!r}")
    return n


# ----------------------------------------------------------------------------- the machine


def cgroup_cpu_limit(path: Path = Path("/sys/fs/cgroup/cpu.max")) -> float | None:
    """Cores allowed by a cgroup v2 quota ("quota period"), or None when unlimited/unknown."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def env_thread_limit() -> int | None:
    """The smallest thread count the environment asks for (OPENBLAS_NUM_THREADS,
    OMP_NUM_THREADS, MKL_NUM_THREADS), or None; e.g. a sweep's trials, or a user's
    ``OPENBLAS_NUM_THREADS=1``: ``auto`` never goes above it."""
    asked = []
    for name in THREAD_VARIABLES:
        try:
            asked.append(int(os.environ.get(name, "")))
        except ValueError:
            continue
    asked = [n for n in asked if n >= 1]
    return min(asked) if asked else None


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup quota and by the
    environment's thread variables."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, min(cores, env_thread_limit() or cores))


def read_busy_seconds(path: Path = Path("/proc/stat")) -> float | None:
    """CPU seconds all processes have spent busy since boot (the "cpu" line of /proc/stat:
    every field but idle and iowait; guest time is already inside user), None without /proc."""
    try:
        with path.open() as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


class LoadMeter:
    """Cores kept busy by other processes between two readings: the machine's busy CPU
    time (/proc/stat) less this process's own (``time.process_time``), per wall second."""

    def __init__(self, stat: Path = Path("/proc/stat")) -> None:
        self.stat = stat
        self._last = self._reading()

    def _reading(self) -> tuple[float, float | None, float]:
        return time.monotonic(), read_busy_seconds(self.stat), time.process_time()

    def seconds_since(self) -> float:
        """Wall seconds since the last reading."""
        return time.monotonic() - self._last[0]

    def others(self) -> float | None:
        """Other processes' busy cores since the last call (or creation); None without /proc."""
        (t0, busy0, own0), now = self._last, self._reading()
        self._last = now
        t1, busy1, own1 = now
        if busy0 is None or busy1 is None or t1 <= t0:
            return None
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / (t1 - t0))


def load_average_others(own: float) -> float | None:
    """Other processes' share of the 1-minute load average (runnable threads), less ``own``
    for this process's; None where there is no load average."""
    try:
        return max(0.0, os.getloadavg()[0] - own)
    except (AttributeError, OSError):
        return None


def others_now(seconds: float = SAMPLE_SECONDS) -> float:
    """Cores other processes kept busy over the next ``seconds`` (/proc/stat only; 0 where
    it cannot be measured)."""
    meter = LoadMeter()
    time.sleep(seconds)
    return meter.others() or 0.0


def measure_others(seconds: float = SAMPLE_SECONDS) -> tuple[float, str]:
    """Cores other processes keep busy, and how that was measured: the larger of the last
    ``seconds`` (/proc/stat) and the last minute (load average less this process's one
    thread), so a neighbour that pauses for a moment still counts."""
    meter = LoadMeter()
    time.sleep(seconds)
    return others_since(meter)


def others_since(meter: LoadMeter) -> tuple[float, str]:
    """``measure_others`` over the time since ``meter`` was started (or last read), without
    waiting: e.g. while this process tokenised its first batch."""
    now, minute = meter.others(), load_average_others(1.0)
    if now is None and minute is None:
        return 0.0, "not measurable here"
    return max(now or 0.0, minute or 0.0), "the larger of now and the 1-minute load average"


# ----------------------------------------------------------------------------- the policy


@dataclass(frozen=True)
class ThreadChoice:
    """What was chosen and why (printed at the start of a run)."""

    threads: int
    setting: str  # "auto" or the number asked for
    cores: int  # usable cores
    others: float | None  # cores busy with other processes (None: not measured)
    reason: str
    adaptive: bool = False  # auto, sized by the load: re-measured at epoch ends

    def describe(self) -> str:
        return f"BLAS threads: {self.threads} ({self.setting}: {self.reason})"


def choose_threads(
    requested: int | None, mnk: int, cores: int, others: float | None, interleaved: bool = False
) -> ThreadChoice:
    """The thread count for products of ``mnk`` multiply-adds (pure: no measuring here).

    ``requested`` is a number to use as given, or None for ``auto``. ``interleaved``: the
    products come in short bursts between Python work (tagging raw text: tokenising, writing
    the records), during which OpenBLAS's idle workers would spin on a core of their own, so
    ``auto`` keeps one thread."""
    if requested is not None:
        return ThreadChoice(requested, str(requested), cores, others, "as configured")
    if cores <= 1:
        return ThreadChoice(1, AUTO, cores, others, "one usable core")
    if interleaved:
        return ThreadChoice(1, AUTO, cores, others, "products between tokenising and writing")
    if mnk < MIN_THREADED_MNK:
        reason = f"products of {mnk / 1e6:.1f}M multiply-adds are faster on one thread"
        return ThreadChoice(1, AUTO, cores, others, reason)
    busy = others or 0.0
    free = max(1, min(cores, math.floor(cores - busy + FREE_MARGIN)))
    reason = f"{cores} usable cores, {busy:.1f} busy with other processes"
    return ThreadChoice(free, AUTO, cores, others, reason, adaptive=True)


def product_size(batch_size: int, hidden: int, input_dim: int) -> int:
    """Multiply-adds of one of a step's big products (x Wᵀ, δᵀ x, δ W are all B·H·D)."""
    return int(batch_size) * int(hidden) * int(input_dim)


class ThreadPolicy:
    """Applies a ThreadChoice to numpy's BLAS for the length of a ``with`` block.

    ``recheck()`` (auto only) re-measures the machine and changes the limit when the free
    cores changed; it returns the new choice, or None when nothing changed."""

    def __init__(
        self,
        setting: Any,
        batch_size: int,
        hidden: int,
        input_dim: int,
        others: float | None = None,
        interleaved: bool = False,
    ) -> None:
        self.requested = parse_setting(setting)
        self.interleaved = interleaved  # choose_threads: auto keeps one thread
        self.mnk = product_size(batch_size, hidden, input_dim)
        self.cores = usable_cores()
        self.choice = self._choose(others)  # others: measured by the caller, or here (0.1 s)
        self._controller: Any = None
        self._limiter: Any = None  # restores the limits found on entry
        self._meter: LoadMeter | None = None
        self._probe: list[float] | None = None  # step seconds while comparing (``observe``)
        self._ceiling = self.cores  # 1 once one thread was measured faster

    def _choose(self, others: float | None) -> ThreadChoice:
        """``choose_threads``, measuring the other processes' load (0.1 s) only when the
        choice is sized by it and the caller did not measure it."""
        choice = choose_threads(self.requested, self.mnk, self.cores, others, self.interleaved)
        if choice.adaptive and others is None:
            others, _ = measure_others()
            choice = choose_threads(self.requested, self.mnk, self.cores, others, self.interleaved)
        return choice

    def __enter__(self) -> ThreadChoice:
        if self.requested is not None or self.mnk >= BLAS_SINGLE_MNK:
            self._apply(self.choice.threads)
        if self.choice.adaptive:
            self._meter = LoadMeter()
        if self.choice.threads > 1 and self.requested is None:
            self._probe = []
        return self.choice

    def __exit__(self, *exc: object) -> None:
        if self._limiter is not None:
            self._limiter.restore_original_limits()
            self._limiter = self._controller = None
        self._meter = self._probe = None

    def _apply(self, threads: int) -> None:
        from threadpoolctl import ThreadpoolController  # lazily: not on the --help path

        if self._controller is None:
            self._controller = ThreadpoolController()
            self._limiter = self._controller.limit(limits=threads, user_api="blas")
        else:
            self._controller.limit(limits=threads, user_api="blas")

    def recheck(self, min_seconds: float = 0.0) -> ThreadChoice | None:
        """Re-measure other processes' load since the last check and adapt (auto only; not
        before ``min_seconds`` have passed since that check)."""
        if self._meter is None or self._meter.seconds_since() < min_seconds:
            return None
        others = self._meter.others()
        if others is None:
            return None
        new = choose_threads(None, self.mnk, self._ceiling, others)
        if new.threads > self.choice.threads:  # more threads only if the last minute agrees
            minute = load_average_others(float(self.choice.threads))
            others = max(others, minute or 0.0)
            new = choose_threads(None, self.mnk, self._ceiling, others)
        if new.threads == self.choice.threads:
            self.choice = replace(self.choice, others=others)
            return None
        self._apply(new.threads)
        self.choice = new
        self._probe = [] if new.threads > 1 else None
        return new

    def observe(self, seconds: float) -> ThreadChoice | None:
        """One training step's wall seconds. When auto has just chosen more than one thread,
        the next PROBE_STEPS steps run at that count and the PROBE_STEPS after at one thread;
        if one thread was as fast (median, each series' first step left out), one thread it
        is for the rest of the run. Returns the choice when it changed."""
        probe = self._probe
        if probe is None:
            return None
        probe.append(seconds)
        if len(probe) == PROBE_STEPS:
            self._apply(1)
        elif len(probe) == 2 * PROBE_STEPS:
            self._probe = None
            many = statistics.median(probe[1:PROBE_STEPS])
            one = statistics.median(probe[PROBE_STEPS + 1 :])
            if one > many:
                self._apply(self.choice.threads)
                return None
            self._ceiling = 1
            reason = (
                f"one thread measured as fast: {1e3 * one:.2f} ms a step against "
                f"{1e3 * many:.2f} ms on {self.choice.threads}"
            )
            self.choice = replace(self.choice, threads=1, reason=reason)
            return self.choice
        return None


@contextmanager
def scoring_threads(
    setting: Any,
    spec: Any,
    windows: int,
    log: Callable[[str], None] | None = None,
    others: float | None = None,
    interleaved: bool = False,
) -> Iterator[ThreadChoice]:
    """The thread policy for scoring ``windows`` windows of a model (``spec``: its ModelSpec)
    in chunks of SCORE_CHUNK, for a ``with`` block (``others``: other processes' busy cores
    when the caller measured them, ``others_since``; ``interleaved``: see ``choose_threads``).
    The choice goes to ``log`` for inputs of a full chunk or more whose products were big
    enough to be sized by the machine's load (smaller inputs, e.g. a sentence or a test file,
    log nothing)."""
    batch = max(1, min(windows, SCORE_CHUNK))
    policy = ThreadPolicy(setting, batch, spec.hidden, spec.input_dim, others, interleaved)
    with policy as choice:
        if choice.adaptive and windows >= SCORE_CHUNK and log is not None:
            log(choice.describe())
        yield choice

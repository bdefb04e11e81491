"""The dense layers' optimizer update in a second process, overlapped with the rest of a step.

At small batches a step is bound by one core, and the largest part of it is the dense
update of the hidden layer's W (12 numpy passes over 82,500 floats at hidden 300: about a
quarter of a step at batch 32), with those of b and U (small arrays, but 24 numpy calls).
They depend on nothing that comes after the backward pass's dx product, and nothing reads
W, b or U again until the next step's forward pass, so on a machine with a second free core
a child process can do them while this one sums the embedding rows, updates them and
prepares the next batch. Threads cannot: numpy's short calls hold the GIL between their
loops, and two threads doing them run one after the other.

The child is forked once per run and shares an anonymous memory block with the trainer:
the parameters, their optimizer state slots and gradient buffers live there (the model's and
the optimizer's dicts hold views of it: plain arrays to everything else). Per step the
backward pass writes the gradients there (its products' outputs, ``Optimizer.gradient_out``)
and the trainer releases a semaphore (``start``); the child applies the optimizer's own numpy
rule (``optimizers.RULES``) — the same operations on the same values, so the results are the
same to the last bit — and releases another (``wait``). Between updates the child polls for
SPIN_SECONDS before it sleeps: a step comes well within that, and waking a sleeping process
cost the trainer 10 µs a step (a guest's cross-core wake-up) and the update its head start.
The child ignores SIGINT/SIGTERM (the trainer acts on them and stops it), exits when the
trainer goes away, and ``close`` copies the arrays back into the trainer's own memory.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import signal
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np

from windowner.errors import WindownerError
from windowner.optim.optimizers import RULES, SLOTS, Optimizer, OptimizerSettings
from windowner.threads import AUTO, FREE_MARGIN, ThreadChoice, others_now

ALIGN = 64  # bytes: every shared array starts on a cache line
POLL_SECONDS = 0.5  # how often a blocked side checks that the other is still there
SPIN_SECONDS = 0.002  # the child polls this long for the next update before it sleeps
STOP = -1.0


class WorkerDied(WindownerError):
    """The update process ended without finishing an update (a runtime failure: exit 1)."""


def available() -> bool:
    """Whether this platform forks (Linux: the child starts in microseconds and inherits the
    shared memory; elsewhere the trainer updates every parameter itself)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


class UpdateWorker:
    """Updates parameters ``names`` of ``params`` with ``optimizer``'s rule in a child process.

    ``start(t, rates, grads)``: the update of step t (parameter i at rate ``rates[i]``, scaled
    as ``Optimizer.step`` scales it) begins; returns at once. ``wait()``: returns once it is
    written (at once when none is running). ``close()``: stops the child; the parameters and
    their state are private arrays again. ``busy_seconds``: the time ``wait`` spent blocked.
    ``grads[name]``: the shared gradient buffer the trainer may write into directly."""

    def __init__(
        self, names: tuple[str, ...], params: dict[str, np.ndarray], optimizer: Optimizer
    ) -> None:
        self.names, self.rule = names, optimizer.settings.name
        keys = {name: [f"{name}.{suffix}" for suffix in SLOTS[self.rule]] for name in names}
        private = {  # per parameter: θ, its state slots, and (shaped like θ) its gradient
            name: [params[name], *(optimizer._slot(key, params[name]) for key in keys[name])]
            for name in names
        }
        shapes = [(a.shape, a.dtype) for name in names for a in (*private[name], params[name])]
        shapes.append(((1 + len(names),), np.dtype(np.float64)))  # t, then each rate
        self._mem, views = shared_arrays(shapes)
        *arrays, self._scalars = views
        per = len(SLOTS[self.rule]) + 2
        self.params, self.slots, self.grads = {}, {}, {}
        for i, name in enumerate(names):
            theta, *slots, grad = arrays[i * per : (i + 1) * per]
            for view, a in zip((theta, *slots), private[name], strict=True):
                view[...] = a
            self.params[name], self.slots[name], self.grads[name] = theta, slots, grad
            params[name] = theta
            optimizer.state.update(zip(keys[name], slots, strict=True))
        self._owners = (params, optimizer, keys)
        from multiprocessing import get_context  # here: 4 ms of imports only a worker needs

        context = get_context("fork")
        self._go, self._done = context.Semaphore(0), context.Semaphore(0)
        self.pending = False
        self.busy_seconds = 0.0
        self._closed = False
        for stream in (sys.stdout, sys.stderr):  # nothing buffered may be written twice
            stream.flush()
        parent = os.getpid()
        with warnings.catch_warnings():  # Python ≥ 3.12 warns of forking beside threads (a
            warnings.simplefilter("ignore", DeprecationWarning)  # progress bar's): the child
            self.pid = os.fork()  # runs numpy loops and semaphores only, and leaves by _exit
        if self.pid == 0:
            _serve(self, parent, optimizer.settings)  # never returns

    def start(self, t: int, rates: list[float], grads: dict[str, np.ndarray]) -> None:
        """Step t's update of ``names`` at ``rates`` from ``grads`` (each copied unless it is
        the shared buffer already); returns at once."""
        self.wait()
        for name in self.names:
            if grads[name] is not self.grads[name]:
                np.copyto(self.grads[name], grads[name])
        self._scalars[0] = t
        self._scalars[1:] = rates
        self.pending = True
        self._go.release()

    def wait(self) -> None:
        """Returns once the running update is written; WorkerDied if the child is gone."""
        if not self.pending:
            return
        started = time.perf_counter()
        while not self._done.acquire(timeout=POLL_SECONDS):
            if not self.alive():
                self.pending = False
                raise WorkerDied(
                    f"the process updating {', '.join(self.names)} ({self.pid}) stopped"
                )
        self.pending = False
        self.busy_seconds += time.perf_counter() - started

    def alive(self) -> bool:
        """Whether the child still runs (reaps it if it ended)."""
        if self._closed:
            return False
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return pid == 0

    def close(self) -> None:
        """Stops the child (waiting for its update first) and gives the parameter and its
        state back to the trainer's own memory. Safe to call twice."""
        if self._closed:
            return
        with contextlib.suppress(WorkerDied):
            self.wait()
        self._scalars[0] = STOP
        self._go.release()
        deadline = time.monotonic() + 2.0
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        self._closed = True
        params, optimizer, keys = self._owners
        for name in self.names:
            if params.get(name) is self.params[name]:
                params[name] = self.params[name].copy()
            for key, slot in zip(keys[name], self.slots[name], strict=True):
                if optimizer.state.get(key) is slot:
                    optimizer.state[key] = slot.copy()
        self.params, self.slots, self.grads = {}, {}, {}
        self._scalars = None  # type: ignore[assignment]


def shared_arrays(shapes: list[tuple[tuple[int, ...], np.dtype]]) -> tuple[mmap.mmap, list]:
    """One anonymous shared memory block (MAP_SHARED | MAP_ANONYMOUS, zeroed, inherited by a
    forked child) and an array view of it for each (shape, dtype), each on its own cache
    lines."""
    sizes = [
        -(-math.prod(shape) * np.dtype(dtype).itemsize // ALIGN) * ALIGN for shape, dtype in shapes
    ]
    mem = mmap.mmap(-1, max(sum(sizes), ALIGN))
    offsets = np.cumsum([0, *sizes[:-1]])
    views = [
        np.ndarray(shape, dtype, buffer=mem, offset=int(offset))
        for (shape, dtype), offset in zip(shapes, offsets, strict=True)
    ]
    return mem, views


def _serve(worker: UpdateWorker, parent: int, settings: OptimizerSettings) -> None:
    """The child: wait for ``start``, apply the rule, signal ``wait``; exit on STOP or when
    the parent is gone. Leaves by ``os._exit`` only (no handlers, no buffered output)."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        rule = RULES[worker.rule]
        own = Optimizer(settings, fused=False)  # its own scratch buffers
        scalars = worker._scalars
        parts = [(worker.params[n], worker.grads[n], worker.slots[n]) for n in worker.names]
        while True:
            if not _next_update(worker._go):
                if os.getppid() != parent:
                    break
                continue
            if scalars[0] == STOP:
                break
            own.t = int(scalars[0])
            for (theta, grad, slots), rate in zip(parts, scalars[1:], strict=True):
                rule(own, theta, grad, slots, float(rate))
            worker._done.release()
    except BaseException:  # noqa: BLE001 - the parent sees the exit and raises WorkerDied
        code = 1
    finally:
        os._exit(code)


def _next_update(go) -> bool:
    """Whether ``go`` was released: polled for SPIN_SECONDS, then waited for up to
    POLL_SECONDS."""
    until = time.perf_counter() + SPIN_SECONDS
    while time.perf_counter() < until:
        if go.acquire(False):
            return True
    return go.acquire(timeout=POLL_SECONDS)


# ----------------------------------------------------------------------------- when to use one

ENV = "WINDOWNER_WORKER"  # auto (unset), on or off
LAYERS = ("W", "b", "U")  # the parameters a worker updates: the hidden and output layers
UPDATE = "W, b and U's update"  # in its log lines
MIN_VALUES = 50_000  # W's values: below, its update is too short to pay for the handoff
MAX_BLOCKED = 0.2  # share of wall time the trainer may wait for the worker (else: stopped)
WARMUP_STEPS = 40  # steps before the probe (the first steps are slow either way)
PROBE_STEPS = 16  # steps per probe block
PROBE_BLOCKS = 4  # blocks with and without the worker in turn (with it first)


def reason_not_to(
    choice: ThreadChoice, values: int, kernels: str, l2: float, forced: bool = False
) -> str | None:
    """Why the dense layers' update stays in the trainer's process, or None when a worker may
    take it (``choice``: the run's BLAS thread choice; ``values``: W's size). ``forced``
    ($WINDOWNER_WORKER=on): only what a worker cannot do (the platform, numba, L2)."""
    if not available():
        return "a second process needs Linux's fork"
    if kernels != "numpy":
        return "the numba kernels update each parameter in one pass"
    if l2 != 0.0:
        return "L2 changes the gradients after the backward pass"
    if forced:
        return None
    if choice.setting != AUTO or choice.threads != 1 or choice.cores < 2:
        return "not with more than one BLAS thread, one core or a set thread count"
    if choice.adaptive:  # two BLAS threads beside a worker: steps 2× slower (0.52–0.69×)
        return "the BLAS threads follow the machine's load and may become two"
    if values < MIN_VALUES:
        return f"W's {values:,} values update too fast to hand over"
    return None


class WorkerPolicy:
    """The trainer's use of an UpdateWorker for W, b and U (``train.threads: auto`` only):

    1. ``start``: a worker when ``reason_not_to`` finds no reason against it and the
       machine shows two free cores (``threads.others_now``: the last 0.1 s, not the
       minute's load average, which a run before it with a worker keeps high; the recheck
       catches a neighbour that starts later);
    2. ``observe``: after WARMUP_STEPS, blocks of steps with it and without it in turn
       (without, the trainer's process updates them); it is kept only if steps were faster
       with it;
    3. ``recheck``: stopped for the rest of the run once the trainer spends more than
       MAX_BLOCKED of its time waiting for it (another process took the second core).
    ``log`` receives one line for each of these decisions."""

    def __init__(self, optimizer: Optimizer, log: Callable[[str], None]) -> None:
        self.optimizer, self.log = optimizer, log
        self.worker: UpdateWorker | None = None
        self._probe: list[float] | None = None
        self._checked = (0.0, 0.0)  # (time, busy seconds) at the last recheck

    def start(
        self, params: dict[str, np.ndarray], choice: ThreadChoice, kernels: str, l2: float
    ) -> None:
        """Starts a worker for W, b and U (the model's, after any resume) if it can pay
        (see the class). $WINDOWNER_WORKER ``off`` never starts one; ``on`` starts one
        wherever it can run (Linux, the numpy kernels, no L2) and keeps it, without the
        other checks and the probe (tests, measurements)."""
        asked = os.environ.get(ENV, "auto").strip().lower()
        if params.get("W") is None or asked in ("off", "0"):
            return
        forced = asked in ("on", "1")
        if reason_not_to(choice, params["W"].size, kernels, l2, forced) is not None:
            return
        if forced:
            why = f"${ENV}={asked}"
        else:  # not the minute's load average: the last run's worker kept it up
            others = others_now()
            if choice.cores - others + FREE_MARGIN < 2:
                return
            why = f"{choice.cores} usable cores, {others:.1f} busy with other processes"
        names = tuple(name for name in LAYERS if name in params)
        try:
            self.worker = UpdateWorker(names, params, self.optimizer)
        except OSError as e:  # no memory or no process to spare: the trainer updates them
            self.log(f"{UPDATE}: in this process (no second process: {e})")
            return
        self.optimizer.worker = self.worker
        self._probe = None if forced else []
        self._checked = (time.monotonic(), 0.0)
        self.log(f"{UPDATE}: in a second process ({why})")

    def observe(self, seconds: float) -> None:
        """One training step's wall seconds (the probe of step 2 in the class docstring):
        after WARMUP_STEPS, PROBE_BLOCKS blocks of PROBE_STEPS steps, with and without the
        worker in turn; kept if the median step of the blocks with it was faster."""
        probe = self._probe
        if probe is None or self.worker is None:
            return
        probe.append(seconds)
        done = len(probe) - WARMUP_STEPS
        if done <= 0 or done % PROBE_STEPS:
            return
        block = done // PROBE_STEPS
        if block < PROBE_BLOCKS:  # the next block runs without the worker after one with it
            self.optimizer.settle()
            self.optimizer.worker = None if block % 2 else self.worker
            return
        self._probe = None
        times = probe[WARMUP_STEPS:]
        blocks = [times[i : i + PROBE_STEPS] for i in range(0, len(times), PROBE_STEPS)]
        with_worker = statistics.median([t for b in blocks[0::2] for t in b])
        without = statistics.median([t for b in blocks[1::2] for t in b])
        if without <= with_worker:
            self.stop(
                f"measured as fast without it: {1e3 * without:.2f} ms a step against "
                f"{1e3 * with_worker:.2f} ms"
            )
            return
        self.optimizer.worker = self.worker
        self._checked = (time.monotonic(), self.worker.busy_seconds)
        self.log(
            f"{UPDATE}: kept in the second process ({1e3 * with_worker:.2f} ms a step "
            f"against {1e3 * without:.2f} ms without)"
        )

    def recheck(self, min_seconds: float = 0.0) -> None:
        """Stops the worker when waiting for it took more than MAX_BLOCKED of the time since
        the last recheck, at least ``min_seconds`` ago (step 3 in the class docstring)."""
        if self.worker is None or self._probe is not None:
            return
        (then, busy), now = self._checked, time.monotonic()
        if now - then < max(min_seconds, 1e-3):
            return
        share = (self.worker.busy_seconds - busy) / (now - then)
        self._checked = (now, self.worker.busy_seconds)
        if share > MAX_BLOCKED:
            self.stop(f"waited for it {100 * share:.0f}% of the time: another process is busy")

    def stop(self, why: str | None = None) -> None:
        """Closes the worker (the parameters and their state back in the trainer's memory);
        logs ``why``."""
        if self.worker is None:
            return
        self.optimizer.settle()
        self.optimizer.worker = None
        self.worker.close()
        self.worker = None
        if why is not None:
            self.log(f"{UPDATE}: back in this process ({why})")

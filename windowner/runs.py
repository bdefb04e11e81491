"""Run directories: where they go, how they are named and claimed, ``latest``, and finding one.

A run directory is created by exactly one training run (or one sweep trial) and never reused:
``claim_run_dir`` makes it with ``os.mkdir`` (atomic, fails if the name exists) and adds ``-2``,
``-3`` … to a generated name that is taken; an explicit ``--out`` that already holds anything is
refused unless the run is resumed; an ``exclusive`` claim (a sweep's new trial) refuses any
existing directory. This module is the only place that creates run directories. ``latest``
beside the runs is a symlink to the newest one; it is replaced atomically and a regular file or
directory of that name is never touched.

Where to change what: the default place commands look is ``DEFAULT_RUN``; run-dir naming is
``run_dir_name``; what a resumable run needs is ``check_resumable``; the model a command uses
is ``resolve_model`` (eval, predict) and the run ``windowner report`` reads is ``find_run``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from windowner.errors import ModelFileError, UsageError

DEFAULT_RUN = Path("runs/latest")
LATEST = "latest"
LOCK = ".lock"  # held (flock) by the process training in a run directory
NAME_MAX = 255  # bytes in one path component (Linux, macOS)
TRAIN_HINT = "train one first: windowner train --config configs/adam.yaml"


# ----------------------------------------------------------------------------- finding runs


def resolve_model(model: Path | None) -> Path:
    """A run directory or model file (default: runs/latest) → the model file."""
    path = model or DEFAULT_RUN
    if path.is_dir():
        path = path / "model.npz"
    if not path.exists():
        if model is None:
            raise UsageError(f"no trained model at {DEFAULT_RUN}; {TRAIN_HINT}")
        raise ModelFileError(f"{path}: no such model file or run directory")
    return path


def find_run(run: Path | None) -> Path:
    """RUN (a run directory, or a file in one; default runs/latest) → the directory, which
    must hold metrics.jsonl and model.npz."""
    path = run or DEFAULT_RUN
    if path.is_file():
        if run is None:
            raise UsageError(
                f"{DEFAULT_RUN} is a regular file, not a run directory or a symlink to one; "
                "give the run: windowner report RUN_DIR"
            )
        if not (path.parent / "metrics.jsonl").is_file():
            raise UsageError(f"{path}: a file, and {path.parent} is not a run directory")
        path = path.parent
    if not path.is_dir():
        if run is None:
            raise UsageError(f"no run at {DEFAULT_RUN}; {TRAIN_HINT}")
        raise UsageError(f"{path}: no such run directory")
    if not (path / "metrics.jsonl").is_file():
        raise UsageError(f"{path}: no metrics.jsonl; is this a run directory?")
    if not (path / "model.npz").is_file():
        raise ModelFileError(f"{path}: no model.npz")
    return path


# ----------------------------------------------------------------------------- new runs


def run_dir_name(parent: str | Path, stem: str, now: datetime | None = None) -> Path:
    """``<parent>/<stem>-<YYYYmmdd-HHMMSS>``: the run directory to claim for a config."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path(parent) / f"{stem}-{stamp}"


def check_out_dir(path: Path) -> None:
    """Refuse an explicit ``--out`` that exists and is not an empty directory, or that
    cannot be created (checked before any data is read, and again by ``claim_run_dir``)."""
    check_names(path)  # before exists(): a too-long name makes stat fail
    if not path.exists() and not path.is_symlink():
        check_creatable(path)
        return
    if not path.is_dir():
        raise UsageError(f"{path} exists and is not a directory; pick another --out")
    if (path / "last.npz").exists() or (path / "config.yaml").exists():
        raise UsageError(
            f"{path} already holds a run; resume it with windowner train --resume {path}, "
            "or pick another --out"
        )
    if any(path.iterdir()):
        raise UsageError(f"{path} is not empty; a run never writes into a used directory")


def check_creatable(path: Path) -> None:
    """UsageError unless ``path`` could be made: every name fits the filesystem's limit and
    the nearest existing ancestor is a directory this process may write in."""
    check_names(path)
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"cannot create {path}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(
            f"cannot create {path}: {ancestor} is not writable "
            "(a read-only filesystem or no permission)"
        )


def check_names(path: Path) -> None:
    """UsageError when a component of ``path`` is longer than the filesystem allows."""
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise UsageError(
                f"cannot create {shorten(str(path))}: the name {shorten(part)} is {size} bytes "
                f"long (the limit is {NAME_MAX})"
            )


def shorten(text: str, limit: int = 60) -> str:
    """``text``, cut to ``limit`` characters for a message."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def claim_run_dir(path: Path, *, exact: bool, exclusive: bool = False) -> Path:
    """Create the run directory and return it. ``exact`` (an explicit ``--out``): ``path``
    itself, which may exist only as an empty directory; ``exclusive`` (a sweep's new trial):
    ``path`` itself, which must not exist at all (RunDirTaken otherwise). Otherwise ``path`` or
    the first free ``path-2``, ``path-3`` …; ``os.mkdir`` is atomic, so two runs never share a
    directory. Any other OS error (read-only filesystem, a file in the way …) is a UsageError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if exact or exclusive:
            try:
                os.mkdir(path)
            except FileExistsError:
                if exclusive:
                    taken = f"{path} exists; a run never writes into a used directory"
                    raise RunDirTaken(taken) from None
                check_out_dir(path)
            return path
        candidate, n = path, 1
        while True:
            try:
                os.mkdir(candidate)
                return candidate
            except FileExistsError:
                n += 1
                candidate = path.with_name(f"{path.name}-{n}")
    except OSError as exc:
        raise UsageError(f"cannot create the run directory {path}: {exc.strerror}") from None


class RunDirTaken(UsageError):
    """An exclusive claim found the directory already there (made by someone else)."""


@contextlib.contextmanager
def training_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir/.lock`` while a process trains there (released
    when the block ends or the process dies). A second process gets a UsageError naming
    the holder's pid. Without ``fcntl`` (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    try:
        fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UsageError(f"cannot lock {run_dir / LOCK}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            raise UsageError(
                f"{run_dir} is being trained by another process"
                f"{f' (pid {holder})' if holder.isdigit() else ''}; "
                "wait for it to finish, or stop it, before resuming"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)


STARTED = ("last.npz", "model.npz", "summary.json")  # a run that holds any of them has trained


def discard_unstarted(run_dir: Path) -> bool:
    """Empty a run directory whose run died before its first checkpoint (config.yaml and
    perhaps a log, nothing trained), so that it can be claimed again; True if it did. A
    directory holding any of ``STARTED`` (or a subdirectory) is left alone. Only for a caller
    that owns the directory by its own record (a sweep's re-queued trial)."""
    if not run_dir.is_dir() or any((run_dir / name).exists() for name in STARTED):
        return False
    entries = list(run_dir.iterdir())
    if any(e.is_dir() and not e.is_symlink() for e in entries):
        return False
    for entry in entries:
        entry.unlink()
    return bool(entries)


def check_resumable(run_dir: Path) -> Path:
    """The run's config.yaml, after checking the directory holds what resuming needs."""
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise UsageError(f"{run_dir}: not a run directory (no config.yaml)")
    if not (run_dir / "last.npz").exists():
        raise UsageError(f"{run_dir}: no last.npz to resume from")
    return config


def point_latest(run_dir: Path, warn: Callable[[str], None]) -> None:
    """Make ``<parent>/latest`` a relative symlink to ``run_dir``, atomically (a temporary
    link renamed over the old one). Anything named latest that is not a symlink is left alone
    with a warning; on failure the temporary link is removed and ``warn`` says why."""
    link = run_dir.parent / LATEST
    for stale in (run_dir.parent / f".{LATEST}.{os.getpid()}.tmp", run_dir.parent / ".latest.tmp"):
        if stale.is_symlink():  # a killed writer's (or an older windowner's) temporary link
            with contextlib.suppress(OSError):
                stale.unlink()
    if link.exists() and not link.is_symlink():
        kind = "directory" if link.is_dir() else "file"
        warn(f"note: {link} is a {kind}, not a symlink; left it alone (the run is {run_dir})")
        return
    tmp = run_dir.parent / f".{LATEST}.{os.getpid()}.tmp"
    try:
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        warn(f"note: could not point {link} at the run ({exc})")

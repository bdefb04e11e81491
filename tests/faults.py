"""Fault injection for the reliability tests: make the n-th write windowner does fail.

``WriteFaults`` replaces the ``os`` module that windowner.checkpoint (THE atomic writer: every
model, checkpoint, metrics, config and summary file goes through it) and windowner.runs (run
directories, the lock, ``latest``) see with a proxy that counts the write operations —
``fh.write`` on a file from ``os.fdopen``, ``os.fsync``, ``os.replace``, ``os.mkdir`` — and
raises ``OSError(errno)`` at the ``fail_at``-th one (and, with ``sticky``, at every later one,
like a disk that stays full). Nothing outside those two modules is affected.

Usage::

    faults = WriteFaults(monkeypatch, fail_at=7, errno=errno.ENOSPC)
    ... run a command ...
    faults.ops        # every operation seen: ("write", path) / ("fsync", path) / ...
    faults.failed     # the operation that failed, or None
"""

from __future__ import annotations

import errno as errnos
import os
import types
from pathlib import Path
from typing import Any

from windowner import checkpoint, runs


class WriteFaults:
    """Counts checkpoint/runs write operations and fails the ``fail_at``-th (1-based)."""

    def __init__(
        self,
        monkeypatch: Any,
        fail_at: int | None = None,
        errno: int = errnos.ENOSPC,
        sticky: bool = False,
    ) -> None:
        self.fail_at, self.errno, self.sticky = fail_at, errno, sticky
        self.ops: list[tuple[str, str]] = []
        self.failed: tuple[str, str] | None = None  # the first failure
        self.failures: list[tuple[str, str]] = []  # all of them (``sticky``)
        monkeypatch.setattr(checkpoint, "os", self._proxy())
        monkeypatch.setattr(runs, "os", self._proxy())

    def hit(self, kind: str, path: str) -> None:
        """Record one operation; raise the injected error when it is the chosen one."""
        self.ops.append((kind, path))
        n = len(self.ops)
        if self.fail_at is not None and (n == self.fail_at or (self.sticky and n > self.fail_at)):
            self.failed = self.failed or (kind, path)
            self.failures.append((kind, path))
            raise OSError(self.errno, os.strerror(self.errno))

    def _proxy(self) -> types.SimpleNamespace:
        faults = self
        proxy = os_with()

        def fdopen(fd: int, *args: Any, **kwargs: Any) -> FaultyFile:
            return FaultyFile(
                os.fdopen(fd, *args, **kwargs), faults, os.readlink(f"/proc/self/fd/{fd}")
            )

        def fsync(fd: int) -> None:
            faults.hit("fsync", os.readlink(f"/proc/self/fd/{fd}"))
            os.fsync(fd)

        def replace(src: Any, dst: Any) -> None:
            faults.hit("replace", str(dst))
            os.replace(src, dst)

        def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
            faults.hit("mkdir", str(path))
            os.mkdir(path, *args, **kwargs)

        proxy.fdopen, proxy.fsync, proxy.replace, proxy.mkdir = fdopen, fsync, replace, mkdir
        return proxy


def os_with(**overrides: Any) -> types.SimpleNamespace:
    """A stand-in for the ``os`` module with some functions replaced (patch it into one
    windowner module; the real ``os`` stays untouched)."""
    names = {k: getattr(os, k) for k in dir(os) if not k.startswith("__")}
    return types.SimpleNamespace(**{**names, **overrides})


class FaultyFile:
    """A binary file whose ``write`` goes through ``WriteFaults.hit`` first."""

    def __init__(self, fh: Any, faults: WriteFaults, path: str) -> None:
        self._fh, self._faults, self._path = fh, faults, path

    def write(self, data: Any) -> int:
        self._faults.hit("write", self._path)
        return self._fh.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __enter__(self) -> FaultyFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


def failure_points(ops: list[tuple[str, str]]) -> list[int]:
    """1-based indices worth failing at: for each file written, its first and last write,
    its fsync and its replace; and every mkdir."""
    points: set[int] = set()
    writes: dict[str, list[int]] = {}
    for i, (kind, path) in enumerate(ops, 1):
        if kind == "write":
            writes.setdefault(path, []).append(i)
        else:
            points.add(i)
    for indices in writes.values():
        points.update({indices[0], indices[-1]})
    return sorted(points)


def temporaries(directory: Path) -> list[str]:
    """Temporary files of the atomic writer left in ``directory``."""
    return sorted(p.name for p in Path(directory).glob(f".*{checkpoint.TMP_SUFFIX}"))

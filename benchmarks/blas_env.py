"""Benchmarks run with the BLAS a user gets: this machine's environment forces OpenBLAS onto
an older kernel (``OPENBLAS_CORETYPE``) and cache size (``OPENBLAS_L2_SIZE``), which no
user's machine does. A benchmark calls ``run_with_users_blas`` first: when either variable is
set, it runs itself again with both unset (for its own command only; tests and CI never
change them) and says so. ``--keep-openblas-env`` keeps them."""

from __future__ import annotations

import os
import sys

FORCED = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
KEEP_FLAG = "--keep-openblas-env"
MARK = "WINDOWNER_BENCH_UNSET"  # set in the re-run: what was unset, for the header


def run_with_users_blas(argv: list[str]) -> list[str]:
    """The arguments without ``--keep-openblas-env``; re-executes this script with the forced
    OpenBLAS variables removed from its environment unless that flag is given."""
    keep = KEEP_FLAG in argv
    args = [a for a in argv if a != KEEP_FLAG]
    forced = {k: os.environ[k] for k in FORCED if k in os.environ}
    if keep or not forced:
        return args
    env = {k: v for k, v in os.environ.items() if k not in FORCED}
    env[MARK] = ", ".join(f"{k}={v}" for k, v in forced.items())
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, sys.argv[0], *args], env)
    raise AssertionError("unreachable")


def describe() -> str:
    """One line for a benchmark's header: what the OpenBLAS environment is, and why."""
    unset = os.environ.get(MARK)
    if unset:
        return (
            f"unset for this benchmark: {unset} (this machine forces them; a user's does not; "
            f"{KEEP_FLAG} keeps them)"
        )
    now = ", ".join(f"{k}={os.environ[k]}" for k in FORCED if k in os.environ)
    return f"OpenBLAS environment kept: {now}" if now else "no OpenBLAS kernel forced"

"""A throwaway PostgreSQL server for tests: ``initdb`` into a temporary directory, ``pg_ctl
start`` on a free 127.0.0.1 port (its unix socket in the same directory), one database, and
``pg_ctl stop`` + removal when the block ends.

PostgreSQL refuses to run as root, so under root the server commands run as the ``postgres``
user (``runuser -u postgres``; Debian's postgresql package creates it) and the directory is
handed to that user. The binaries are looked up on PATH, then in Debian's
/usr/lib/postgresql/<version>/bin; ``missing()`` names what is absent so a test can skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

SERVER_TOOLS = ("initdb", "pg_ctl")
SERVER_USER = "postgres"


def bin_dir() -> Path | None:
    """The directory holding initdb and pg_ctl: PATH first, then the newest Debian version."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    usable = [v for v in versions if all((v / tool).is_file() for tool in SERVER_TOOLS)]
    return usable[-1] if usable else None


def missing() -> str | None:
    """Why a server cannot be started here (a missing binary or user), or None."""
    if bin_dir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "runuser not found (needed to run PostgreSQL as a non-root user)"
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"no {SERVER_USER} user to run PostgreSQL as (it refuses root)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_server_user(command: list[str]) -> list[str]:
    """``command`` run as the postgres user when we are root, else as ourselves."""
    return ["runuser", "-u", SERVER_USER, "--", *command] if os.geteuid() == 0 else command


@contextlib.contextmanager
def postgres(database: str = "windowner") -> Iterator[str]:
    """Start a server, create ``database``; yields its SQLAlchemy URL (user ``windowner``,
    trust authentication, 127.0.0.1 only). Stopped and deleted on exit, even on failure."""
    tools = bin_dir()
    assert tools is not None, missing()
    home = Path(tempfile.mkdtemp(prefix="windowner-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVER_USER)
        os.chown(home, user.pw_uid, user.pw_gid)
    data, port = home / "data", free_port()
    quiet = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    started = False
    try:
        initdb = [str(tools / "initdb"), "-D", str(data), "-U", "windowner", "-A", "trust", "-N"]
        subprocess.run(as_server_user(initdb), **quiet)
        options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
        start = [str(tools / "pg_ctl"), "-D", str(data), "-l", str(home / "log"), "-w"]
        subprocess.run(as_server_user([*start, "-o", options, "start"]), **quiet)
        started = True
        create = [str(tools / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "windowner"]
        subprocess.run([*create, database], **quiet)
        yield f"postgresql://windowner@127.0.0.1:{port}/{database}"
    finally:
        if started:
            stop = [str(tools / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
            subprocess.run(as_server_user(stop), capture_output=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)

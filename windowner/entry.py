"""The ``windowner`` console script: signal handlers first, then the CLI.

This module imports only the standard library (and the tiny windowner.errors), so Ctrl-C or
SIGTERM at any moment after the interpreter starts — even while typer, rich or numpy are being
imported — ends the command with one line and 130/143, never a traceback. SIGTERM raises
``Terminated`` (a KeyboardInterrupt), so ``finally`` blocks and the atomic writers clean up
exactly as for Ctrl-C. Training installs its own handlers on top (windowner.train) so that it
can save ``last.npz`` first. A closed standard output is an error (exit 1), not silence.

Where to change what: the handlers are ``on_signal``; the exit code is ``exit_code``; a long
job's own handlers for a block (training, a sweep's driver) are ``signals_to``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from windowner.errors import Terminated, signal_behind

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

received: list[int] = []  # the signals that arrived, in order
reported: list[str] = []  # set by the CLI once it has said why it stopped


def on_signal(signum: int, frame: object) -> None:
    """SIGINT → KeyboardInterrupt, SIGTERM → Terminated, wherever the program is."""
    received.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def signals_to(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """SIGINT and SIGTERM go to ``handler`` inside the block, and back to the previous
    handlers after it. Only the main thread can set handlers: elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def install_signal_handlers() -> None:
    """Handle SIGINT and SIGTERM, except where the parent asked to ignore them (``nohup``,
    a shell's background job)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, on_signal)
    sys.unraisablehook = functools.partial(on_unraisable, sys.unraisablehook)


def on_unraisable(previous: Callable[[Any], object], unraisable: Any) -> None:
    """A signal's exception raised where Python cannot propagate it (inside a ``__del__``
    or a GC callback) would be printed as "Exception ignored" and lost: send the signal
    again, 10 ms later, so it stops the program at an ordinary line."""
    exc = unraisable.exc_value
    if isinstance(exc, KeyboardInterrupt):
        import threading  # only now: the common path imports nothing extra

        signum = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
        threading.Timer(0.01, os.kill, (os.getpid(), signum)).start()  # after this returns
        return
    previous(unraisable)


def say(message: str) -> None:
    """One line on stderr without importing anything (stderr may be closed too)."""
    with contextlib.suppress(OSError):
        os.write(2, (message + "\n").encode("utf-8", "replace"))


def exit_code(code: object) -> int:
    """A SystemExit's code as a number; 130 becomes 143 when the signal was SIGTERM."""
    if code is None:
        number = 0
    elif isinstance(code, int):
        number = code
    else:
        say(str(code))
        number = 1
    if number == 130 and received:
        if not reported:  # stopped before a command ran (e.g. while parsing the arguments)
            say("terminated" if received[-1] == signal.SIGTERM else "interrupted")
        if received[-1] == signal.SIGTERM:
            return 143
    return number


def flush_stdout() -> int:
    """Flush the results; a full disk or a closed pipe is exit 1 with a message."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
        say(f"error: cannot write the results to standard output: {reason}")
        with_devnull_stdout()
        return 1
    return 0


def with_devnull_stdout() -> None:
    """Point fd 1 at /dev/null so the interpreter's own final flush cannot fail again."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)


def exit_now(signum: int, frame: object) -> None:
    """The handler once the command is over: a signal while exiting ends the process at
    once with 128 + signum (no KeyboardInterrupt can escape while the interpreter exits)."""
    received.append(signum)
    say("terminated" if signum == signal.SIGTERM else "interrupted")
    os._exit(128 + signum)


def main() -> None:
    """Console-script entry point (``windowner``)."""
    install_signal_handlers()
    if sys.stdout is None:
        say("error: standard output is closed; windowner writes its results there")
        sys.exit(1)
    try:
        code = run_cli()
    except KeyboardInterrupt:  # a signal just as the command ended
        code = exit_code(130)
    finishing()
    code = flush_stdout() or code
    # The results are out. The interpreter's shutdown resets Python handlers to the default
    # (die by the signal, rc -2) but keeps SIG_IGN: a signal from here on changes nothing.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    sys.exit(code)


def run_cli() -> int:
    """Import and run the CLI; its exit code (130/143 for a signal)."""
    try:
        from windowner.cli import main as cli_main

        cli_main()
        finishing()
        return 0
    except KeyboardInterrupt:
        finishing()
        if not received:
            received.append(signal.SIGINT)
        return exit_code(130)
    except SystemExit as exc:
        finishing()
        return exit_code(exc.code)
    except Exception as exc:  # a signal (on_signal noted it) while a module was imported
        if signal_behind(exc) is None:
            raise
        finishing()
        return exit_code(130)


def finishing() -> None:
    """From now on a signal exits at once (``exit_now``)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, exit_now)

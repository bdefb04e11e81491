"""Exceptions that the CLI turns into one-line messages and exit codes.

Usage, config and data problems exit with 2; runtime failures exit with 1.
"""

from __future__ import annotations


class WindownerError(Exception):
    """Base class: a problem the user can act on, reported without a traceback."""

    exit_code = 1


class ConfigError(WindownerError):
    """A config file or ``--set`` override is invalid; ``problems`` lists every one found."""

    exit_code = 2

    def __init__(self, problems: list[str] | str, source: str = "config") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        super().__init__("; ".join(self.problems))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return f"{self.source}: {self.problems[0]}"
        lines = [f"{self.source}: {len(self.problems)} problems"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class DataError(WindownerError):
    """Input data is missing or malformed; the message starts with ``file:line``."""

    exit_code = 2


class UsageError(WindownerError):
    """The command line asks for something that cannot be done (e.g. empty text)."""

    exit_code = 2


class ModelFileError(WindownerError):
    """A model or checkpoint file is missing, truncated, unsafe or inconsistent."""

    exit_code = 2


class TrainingDiverged(WindownerError):
    """Loss or parameters became NaN/inf during training."""

    exit_code = 1


class WriteError(WindownerError):
    """A file could not be written (disk full, read-only filesystem, I/O error); the message
    names the file. The previous version of the file, if any, is left intact."""

    exit_code = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so every command stops at once and its
    ``finally`` blocks run; exits with 143."""

    signum = 15


def signal_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM that ``exc`` is, or that it wraps: Python 3.11 turns an exception
    raised inside a ``__set_name__`` (a dataclass field, while a module is first imported)
    into ``RuntimeError("Error calling __set_name__ ...")`` caused by it."""
    for _ in range(8):  # a chain of wrappers is short; a cycle must not hang
        if isinstance(exc, KeyboardInterrupt):
            return exc
        if exc.__cause__ is None:
            return None
        exc = exc.__cause__
    return None

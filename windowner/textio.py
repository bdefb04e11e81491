"""Text in: what ``windowner predict`` tags — the TEXT argument, a file or stdin, as raw text
or CoNLL.

Where to change what: raw text is read lazily into documents by ``iter_documents`` (paragraphs
or lines; the tokenizer is windowner.tokenizer, applied by windowner.api); CoNLL input is read
lazily as decoded pieces by ``text_pieces`` (windowner.conllio splits and tags them).
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from windowner.errors import DataError, UsageError

# ----------------------------------------------------------------------------- documents

DOC_MAX_CHARS = 1 << 16  # a longer paragraph is cut at the next line end (bounded memory)
LINE_CHUNK = 1 << 20  # bytes read at a time from one line (a longer line comes in pieces)
NOTHING_TO_TAG = "nothing to tag: the input is empty or only whitespace"


def iter_documents(
    text: str | None, path: Path | None, per_line: bool = False, max_chars: int = DOC_MAX_CHARS
) -> Iterator[str]:
    """The documents to tag, read lazily: TEXT is one document; a file (``-`` = stdin) or
    piped stdin gives one per paragraph (blank-line separated; cut at a line end past
    ``max_chars``), or one per non-blank line with ``per_line``. UsageError when empty."""
    if text is not None and path is not None:
        raise UsageError("give TEXT or --input FILE, not both")
    if text is not None:
        if not text.strip():
            raise UsageError(NOTHING_TO_TAG)
        yield text
        return
    found = False
    with _open_binary(path) as (name, fh):
        for document in _split_documents(_decoded_lines(fh, name), per_line, max_chars):
            found = True
            yield document
    if not found:
        raise UsageError(NOTHING_TO_TAG)


@contextlib.contextmanager
def _open_binary(path: Path | None) -> Iterator[tuple[str, BinaryIO]]:
    """(name, binary file) for ``path``, or stdin for ``-`` or no path (when piped)."""
    if path is None or str(path) == "-":
        if path is None and (sys.stdin is None or sys.stdin.isatty()):
            raise UsageError("nothing to tag: give TEXT, --input FILE, or pipe text to stdin")
        yield "<stdin>", sys.stdin.buffer
        return
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        yield str(path), fh


@contextlib.contextmanager
def text_pieces(text: str | None, path: Path | None) -> Iterator[tuple[str, Iterable[str], bool]]:
    """(name, the decoded text in pieces read lazily, whether it started with a UTF-8 BOM)
    of TEXT, a file, or stdin (``-`` or no path, when piped); the BOM is not in the pieces."""
    if text is not None and path is not None:
        raise UsageError("give TEXT or --input FILE, not both")
    if text is not None:
        yield "<input>", [text], False
        return
    with _open_binary(path) as (name, fh):
        yield name, _decoded_lines(fh, name), _starts_with_bom(fh)


def _starts_with_bom(fh: BinaryIO) -> bool:
    """Whether the unread stream starts with a UTF-8 BOM, without consuming it."""
    peek = getattr(fh, "peek", None)
    if peek is not None:
        return peek(3)[:3] == codecs.BOM_UTF8
    if fh.seekable():
        where = fh.tell()
        head = fh.read(3)
        fh.seek(where)
        return head == codecs.BOM_UTF8
    return False


def _decoded_lines(fh: BinaryIO, name: str) -> Iterator[str]:
    """UTF-8 lines (a BOM dropped) with their line ends; DataError naming the line."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    lineno = 1
    try:
        for chunk in iter(functools.partial(fh.readline, LINE_CHUNK), b""):
            if b"\0" in chunk:  # /dev/zero, a binary file: refused before it fills memory
                raise DataError(f"{name}:{lineno}: NUL byte (a binary file, not text)")
            line = decoder.decode(chunk)
            if line:
                yield line
            lineno += chunk.endswith(b"\n")
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise DataError(f"{name}:{lineno}: undecodable bytes (not UTF-8)") from None
    except OSError as exc:
        raise UsageError(f"{name}: cannot read ({exc.strerror})") from None


def _split_documents(lines: Iterable[str], per_line: bool, max_chars: int) -> Iterator[str]:
    """Paragraphs (or non-blank lines) of ``lines``, without their final line end."""
    buffer: list[str] = []
    size = 0
    for line in lines:
        blank = not line.strip()
        if per_line:
            if not blank:
                yield line.rstrip("\r\n")
            continue
        if not blank:
            buffer.append(line)
            size += len(line)
        if buffer and (blank or size >= max_chars):
            yield "".join(buffer).rstrip("\r\n")
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer).rstrip("\r\n")

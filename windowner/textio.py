"""Text in: what ``windowner predict`` tags — the TEXT argument, a file or stdin, as raw text
or CoNLL — split into sentences of tokens.

Where to change what: the tokenizer is ``tokenize`` (one regex; a later task swaps in a library
tokenizer, so keep this module small); input sources and formats are ``read_input``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import BinaryIO

from windowner.corpus import decode_bytes, parse_conll
from windowner.errors import DataError, UsageError

_TOKEN_RE = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]")
_SENTENCE_END = {".", "!", "?"}


def tokenize(text: str) -> list[list[str]]:
    """Raw text → sentences of tokens: one sentence per line, also split after ``. ! ?``
    when the next token starts with an uppercase letter; punctuation is split off."""
    sentences: list[list[str]] = []
    for line in text.splitlines():
        current: list[str] = []
        tokens = _TOKEN_RE.findall(line)
        for i, token in enumerate(tokens):
            current.append(token)
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            if token in _SENTENCE_END and nxt[:1].isupper():
                sentences.append(current)
                current = []
        if current:
            sentences.append(current)
    return sentences


MAX_INPUT_BYTES = 32 << 20  # predict holds its whole input; more is refused, not swapped
READ_PIECE = 1 << 20


def read_text_input(source: BinaryIO, name: str | Path) -> str:
    """The UTF-8 text of a binary stream, read in 1 MiB pieces: a NUL byte (``/dev/zero``, a
    binary file) or more than ``MAX_INPUT_BYTES`` is a DataError found without reading on."""
    pieces: list[bytes] = []
    total = lines = 0
    while piece := source.read(READ_PIECE):
        nul = piece.find(b"\0")
        if nul >= 0:
            line = lines + piece.count(b"\n", 0, nul) + 1
            raise DataError(f"{name}:{line}: NUL byte (a binary file, not text)")
        total += len(piece)
        if total > MAX_INPUT_BYTES:
            raise DataError(
                f"{name}: more than {MAX_INPUT_BYTES} bytes; predict reads its whole input, "
                "so split it into smaller files"
            )
        lines += piece.count(b"\n")
        pieces.append(piece)
    return decode_bytes(b"".join(pieces), name)


def read_input(text: str | None, path: Path | None, input_format: str) -> list[list[str]]:
    """Sentences of tokens from the TEXT argument, a file, or stdin; UsageError when empty.

    ``conll`` input takes the first column of each line (a tag column, if any, is ignored)."""
    if text is not None and path is not None:
        raise UsageError("give TEXT or --input FILE, not both")
    if path is not None:
        try:
            with path.open("rb") as fh:
                text = read_text_input(fh, path)
        except OSError as exc:
            raise UsageError(f"{path}: cannot read ({exc.strerror})") from None
    elif text is None:
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("nothing to tag: give TEXT, --input FILE, or pipe text to stdin")
        text = read_text_input(sys.stdin.buffer, "<stdin>")
    if input_format == "conll":
        lines = [f"{ln.split()[0]} O" if ln.split() else "" for ln in text.splitlines()]
        sentences = [list(s.tokens) for s in parse_conll(lines, str(path or "<input>"))]
    else:
        sentences = tokenize(text)
    if not sentences:
        raise UsageError("nothing to tag: the input is empty or only whitespace")
    return sentences

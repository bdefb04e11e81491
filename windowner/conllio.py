"""CoNLL in, CoNLL out for ``windowner predict``: the input file comes back line for line with
the predicted tag appended as a new last column, so the output goes straight to conlleval.

``stream_conll`` (what predict runs) reads the input lazily and writes what
``ConllDocument.render(tags)`` writes for the whole text at once (the tests hold the two
equal): every line kept with its line ending, ``<sep><tag>`` appended to every non-blank line
(``O`` on a ``-DOCSTART-`` line), the separator being the line's own (a tab if it holds one,
else a space; a tab after a lone token).
Predicted tags (IOB2) are written in the scheme of the input's last column when it holds tags
(IOB1, IOB2 or IOBES), else as IOB2. ``looks_like_conll`` is the check behind predict's
warning for a CoNLL file read as raw text.

Where to change what: which lines are tokens is ``_is_token_line`` (the same rule as
windowner.corpus: ASCII-whitespace columns, blank lines end sentences, ``-DOCSTART-`` skipped).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path

from windowner.corpus import (
    MAX_LINE_BYTES,
    SchemeEvidence,
    check_tag_in,
    columns,
    from_iob2,
)
from windowner.errors import DataError, UsageError

_LINE_WITH_END = re.compile(r"([^\r\n]*)(\r\n|\r|\n|$)")
DOCSTART = "-DOCSTART-"
BOM = "\ufeff"


@dataclass
class ConllDocument:
    """The lines of a CoNLL file as (text, line ending) pairs, its sentences of tokens (first
    column) and the tag scheme of its last column (``None`` when that column holds no tags)."""

    name: str
    lines: list[tuple[str, str]]
    sentences: list[list[str]] = field(default_factory=list)
    scheme: str | None = None
    bom: bool = False

    @classmethod
    def from_text(cls, text: str, name: str = "<input>", bom: bool = False) -> ConllDocument:
        """A document from decoded text (a leading BOM already removed)."""
        doc = cls(name, _split_keep_ends(text), bom=bom)
        doc.sentences, doc.scheme = _sentences_and_scheme(doc.lines, name)
        if not doc.sentences:
            raise UsageError(f"{name}: nothing to tag: no token lines")
        return doc

    def render(self, tags: list[list[str]]) -> str:
        """The document with each token line's predicted tag appended (``tags``: IOB2, one list
        per sentence, as ``Tagger.tag(self.sentences)`` returns)."""
        scheme = self.scheme or "iob2"
        flat = iter([t for sent in tags for t in from_iob2(sent, scheme)])
        out = [BOM] if self.bom else []
        out += [_with_tag(text, flat) + end for text, end in self.lines]
        if next(flat, None) is not None:
            raise ValueError("more predicted tags than token lines")
        return "".join(out)


def _with_tag(text: str, tags: Iterator[str]) -> str:
    """A line with the next predicted tag appended (``O`` on -DOCSTART-, none when blank)."""
    kind = _is_token_line(text)
    if not kind:
        return text
    tag = "O" if kind == DOCSTART else next(tags, None)
    if tag is None:
        raise ValueError("fewer predicted tags than token lines")
    return f"{text}{_separator(text)}{tag}"


def _split_keep_ends(text: str) -> list[tuple[str, str]]:
    """Lines with their endings (LF, CRLF or a lone CR, as windowner.corpus splits them); a
    last line without an ending keeps ``""``."""
    lines = [(m.group(1), m.group(2)) for m in _LINE_WITH_END.finditer(text)]
    if lines and lines[-1] == ("", ""):
        lines.pop()  # the empty match at the very end
    return lines


def _is_token_line(text: str) -> str:
    """``"token"`` for a token line, ``DOCSTART`` for a ``-DOCSTART-`` line, ``""`` for blank."""
    cols = columns(text)
    if not cols:
        return ""
    return DOCSTART if cols[0] == DOCSTART else "token"


def _separator(text: str) -> str:
    """The line's own column separator: a tab if it has one, else a space if it has columns;
    a one-column line gets a tab (predict's CoNLL output for token-only input)."""
    if "\t" in text:
        return "\t"
    return " " if " " in text.strip(" ") else "\t"


def _sentences_and_scheme(
    lines: list[tuple[str, str]], name: str
) -> tuple[list[list[str]], str | None]:
    """Token lists split at blank lines, and the scheme of the last column if every token
    line has at least two columns whose last is a tag (IOB1/IOB2/IOBES), else None."""
    sentences: list[list[str]] = [[]]
    tag_seqs: list[list[str]] = [[]]
    tagged = True
    for lineno, (text, _) in enumerate(lines, 1):
        if len(text) > MAX_LINE_BYTES:
            raise DataError(f"{name}:{lineno}: line longer than {MAX_LINE_BYTES} characters")
        cols = columns(text)
        if not cols:
            if sentences[-1]:
                sentences.append([])
                tag_seqs.append([])
            continue
        if cols[0] == DOCSTART:
            continue
        sentences[-1].append(cols[0])
        tagged = tagged and len(cols) >= 2 and check_tag_in(cols[-1], "auto")
        tag_seqs[-1].append(cols[-1])
    sentences = [s for s in sentences if s]
    if not tagged or not sentences:
        return sentences, None
    evidence = SchemeEvidence()
    for seq in tag_seqs:
        evidence.add(seq)
    return sentences, evidence.scheme


# ----------------------------------------------------------------------------- streaming

HEAD_SENTENCES = 1000  # sentences read before the first output: they decide the tag scheme
BATCH_SENTENCES = 256  # sentences tagged at a time (whole documents: a batch may hold more)
MAX_DOC_SENTENCES = 4096  # a longer document is tagged in parts (bounded memory)
MAX_BLANK_RUN = 1000  # lines without a token passed through at a time


@dataclass
class Block:
    """Lines of a CoNLL stream holding at most one sentence (and the blank or -DOCSTART-
    lines around it): ``tokens`` and ``tags`` (last column) of its token lines."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    tags: list[str | None] = field(default_factory=list)


def stream_conll(
    pieces: Iterable[str],
    name: str,
    tag: Callable[[list[list[str]], list[int]], list[list[str]]],
    scheme: str | None = None,
    whole_documents: bool = True,
) -> Iterator[str]:
    """CoNLL text (any pieces of it, read lazily) back with a predicted column, as
    ``ConllDocument.render`` writes it, in constant memory. Tags are written in ``scheme``;
    by default in the scheme of the input's tags found in the first ``HEAD_SENTENCES``
    sentences (a file can be scanned first: ``file_scheme``). ``tag``: (token lists, their
    document numbers) → IOB2; whole documents are tagged together (``batched_blocks``)."""
    blocks = iter_blocks(iter_lines(pieces, name), name)
    head = list(islice(blocks, HEAD_SENTENCES))
    if not any(b.tokens for b in head):
        raise UsageError(f"{name}: nothing to tag: no token lines")
    scheme = scheme or blocks_scheme(head) or "iob2"
    for batch, docs in batched_blocks(chain(head, blocks), whole_documents):
        tags = tag([b.tokens for b in batch if b.tokens], docs) if docs else []
        flat = iter([t for sent in tags for t in from_iob2(sent, scheme)])
        yield "".join(_with_tag(text, flat) + end for b in batch for text, end in b.lines)


def file_scheme(pieces: Iterable[str], name: str) -> str:
    """The scheme predictions are written in for a whole CoNLL text (one pass, constant
    memory): that of its tag column, IOB2 when it has none — as ``ConllDocument``."""
    return blocks_scheme(iter_blocks(iter_lines(pieces, name), name)) or "iob2"


def starts_document(block: Block) -> bool:
    """Whether a ``-DOCSTART-`` line comes before the block's first token line: its sentence
    starts a document (one inside a sentence does not, as windowner.corpus reads it)."""
    for text, _ in block.lines:
        kind = _is_token_line(text)
        if kind:
            return kind == DOCSTART
    return False


def iter_documents(blocks: Iterable[Block], whole: bool = True) -> Iterator[list[Block]]:
    """The blocks of each document (a ``-DOCSTART-`` line starts one), read lazily. A document
    comes in parts of ``MAX_DOC_SENTENCES`` sentences when ``whole`` (a model with document
    features: bounded memory), else of ``BATCH_SENTENCES`` (the output follows the input)."""
    limit = MAX_DOC_SENTENCES if whole else BATCH_SENTENCES
    doc: list[Block] = []
    n = 0
    for block in blocks:
        if doc and (n >= limit or (n and starts_document(block))):
            yield doc
            doc, n = [], 0
        doc.append(block)
        n += bool(block.tokens)
    if doc:
        yield doc


def batched_blocks(
    blocks: Iterable[Block], whole_documents: bool = True
) -> Iterator[tuple[list[Block], list[int]]]:
    """Documents (``iter_documents``) batched until they hold ``BATCH_SENTENCES`` sentences:
    (the blocks, the document number of each of their sentences)."""
    batch: list[Block] = []
    docs: list[int] = []
    for number, doc in enumerate(iter_documents(blocks, whole_documents)):
        batch += doc
        docs += [number] * sum(bool(b.tokens) for b in doc)
        if len(docs) >= BATCH_SENTENCES:
            yield batch, docs
            batch, docs = [], []
    if batch:
        yield batch, docs


def iter_lines(pieces: Iterable[str], name: str) -> Iterator[tuple[str, str]]:
    """(line, ending) pairs of text given in pieces (LF, CRLF or a lone CR, as
    ``_split_keep_ends``); DataError for a line longer than ``MAX_LINE_BYTES``."""
    carry, lineno = "", 0
    for piece in pieces:
        lines = _split_keep_ends(carry + piece)
        carry = ""
        if lines and lines[-1][1] in ("", "\r"):  # unfinished, or a CR before a possible LF
            carry = "".join(lines.pop())
        for line in lines:
            lineno += 1
            if len(line[0]) > MAX_LINE_BYTES:
                raise DataError(f"{name}:{lineno}: line longer than {MAX_LINE_BYTES} characters")
            yield line
        if len(carry) > MAX_LINE_BYTES:
            raise DataError(f"{name}:{lineno + 1}: line longer than {MAX_LINE_BYTES} characters")
    yield from _split_keep_ends(carry)


def iter_blocks(lines: Iterable[tuple[str, str]], name: str) -> Iterator[Block]:
    """Blocks of at most one sentence each, every line kept."""
    block = Block()
    for text, end in lines:
        cols = columns(text)
        block.lines.append((text, end))
        if cols and cols[0] != DOCSTART:
            block.tokens.append(cols[0])
            tagged = len(cols) >= 2 and check_tag_in(cols[-1], "auto")
            block.tags.append(cols[-1] if tagged else None)
        elif not cols and (block.tokens or len(block.lines) >= MAX_BLANK_RUN):
            yield block
            block = Block()
    if block.lines:
        yield block


def blocks_scheme(blocks: Iterable[Block]) -> str | None:
    """The scheme of the blocks' tag column, None unless every token line has a tag."""
    evidence = SchemeEvidence()
    found = False
    for block in blocks:
        if any(t is None for t in block.tags):
            return None
        if block.tags:
            evidence.add(block.tags)
            found = True
    return evidence.scheme if found else None


# ----------------------------------------------------------------------------- detection

MIN_LINES = 2  # non-blank lines needed before a text is called CoNLL
SAMPLE_LINES = 200  # lines looked at


def looks_like_conll(text: str) -> bool:
    """True when raw text looks like a CoNLL file: of its first ``SAMPLE_LINES`` non-blank
    lines (at least ``MIN_LINES``), most have two or more columns and a last column that is a
    tag (``O``, ``B-X``, ``I-X``, ``E-X``, ``S-X``), or are ``-DOCSTART-`` lines."""
    sample = []
    for line, _ in _split_keep_ends(text[: 200 * SAMPLE_LINES]):
        cols = columns(line)
        if cols:
            sample.append(cols)
        if len(sample) == SAMPLE_LINES:
            break
    if len(sample) < MIN_LINES:
        return False
    hits = sum(c[0] == DOCSTART or (len(c) >= 2 and check_tag_in(c[-1], "auto")) for c in sample)
    return hits > len(sample) / 2


HEAD_BYTES = 64 << 10  # bytes of a file looked at by ``conll_warning``


def conll_warning(path: str | Path) -> str | None:
    """predict's warning for a CoNLL-looking ``--input`` file read as raw text, or None (also
    when the file cannot be read: reading it for real reports that)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError:
        return None
    if not looks_like_conll(head.decode("utf-8", errors="replace")):
        return None
    return (
        f"warning: {path} looks like CoNLL (token and tag columns) but is read as raw text; "
        "add --input-format conll (and -f conll to get the file back with a predicted column)"
    )

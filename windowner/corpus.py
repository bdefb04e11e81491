"""CoNLL column files, tag schemes, vocabularies and word features.

A CoNLL file has one token per line: whitespace-separated columns, the token first and the tag
last; a blank line ends a sentence; ``-DOCSTART-`` lines are skipped. Tags are read as IOB1,
IOB2 or IOBES (``S-``/``E-`` tags; BIOES is the same scheme) and kept as IOB2 internally;
``auto`` reads all three and ``SchemeEvidence`` says which one a file used.
"""

from __future__ import annotations

import itertools
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from windowner.errors import DataError

SCHEMES = ("auto", "iob1", "iob2", "iobes", "bioes")  # bioes is another name for iobes
DEFAULT_SCHEME = "auto"
UNK, SENT_START, SENT_END = "<unk>", "<s>", "</s>"
SPECIALS = (UNK, SENT_START, SENT_END)
UNK_ID, START_ID, END_ID = 0, 1, 2

LAZY_LOOKUPS = 64
MAX_ENTITY_TYPES = 500  # CoNLL-2003 has 4, OntoNotes 18; decoding costs (2 * types + 1) ** 2
_TAG_RE = re.compile(r"^(O|[BI]-[^\s-][^\s]*)$")
_ANY_TAG_RE = re.compile(r"^(O|[BIES]-[^\s-][^\s]*)$")
_DIGIT_RE = re.compile(r"\d")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Sentence:
    """One sentence: tokens and their IOB2 tags; ``line`` is where it starts in its file;
    ``doc`` numbers its document (a CoNLL file's ``-DOCSTART-`` lines start new ones; the
    sentences of one document are consecutive; windowner.docfeatures reads across them)."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    line: int = 0
    doc: int = 0


# ---------------------------------------------------------------------------- tag schemes


def check_tag(tag: str) -> bool:
    """True when ``tag`` is ``O`` or ``B-X``/``I-X`` with a non-empty type."""
    return bool(_TAG_RE.match(tag))


def check_tag_in(tag: str, scheme: str) -> bool:
    """``check_tag``, with ``S-X``/``E-X`` also valid under ``iobes`` and ``auto``."""
    return bool((_ANY_TAG_RE if scheme in ("auto", "iobes", "bioes") else _TAG_RE).match(tag))


def to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1, IOB2 or IOBES tags → IOB2: ``S-X`` → ``B-X``, ``E-X`` → ``I-X``, then a chunk
    that starts with ``I-X`` gets ``B-X`` (``iob1_to_iob2``). The three schemes need no other
    context, so one function reads them all."""
    return iob1_to_iob2(
        ["B" + t[1:] if t[:2] == "S-" else "I" + t[1:] if t[:2] == "E-" else t for t in tags]
    )


def from_iob2(tags: Sequence[str], scheme: str) -> list[str]:
    """IOB2 tags → ``scheme`` (iob1, iob2 or iobes/bioes); the entity spans stay the same.

    IOB1 writes ``B-X`` only for a chunk that directly follows a chunk of the same type;
    IOBES marks a one-token chunk ``S-X`` and a chunk's last token ``E-X``."""
    tags = list(tags)
    if scheme in ("iob2", "auto"):
        return tags
    out: list[str] = []
    for i, tag in enumerate(tags):
        prefix, kind = tag[:2], tag[2:]
        if scheme == "iob1":
            prev = tags[i - 1] if i else "O"
            same = prev != "O" and prev[2:] == kind
            out.append(tag if tag == "O" or (prefix == "B-" and same) else "I-" + kind)
            continue
        nxt = tags[i + 1] if i + 1 < len(tags) else "O"
        ends = nxt[:2] != "I-" or nxt[2:] != kind
        out.append(tag if tag == "O" or not ends else ("S-" if prefix == "B-" else "E-") + kind)
    return out


@dataclass
class SchemeEvidence:
    """What a file's raw tags say about their scheme, counted sentence by sentence.

    IOBES is the only scheme with ``S-``/``E-``; IOB1 is the only one whose chunks start with
    ``I-X`` (after ``O`` or another type) and never with a ``B-X`` after ``O``."""

    iobes_tags: int = 0  # S-X / E-X
    i_starts: int = 0  # I-X beginning a chunk (IOB1)
    b_starts: int = 0  # B-X after O or another type (IOB2, IOBES)
    sentences: int = 0

    def add(self, tags: Sequence[str]) -> None:
        self.sentences += 1
        prev = "O"
        for tag in tags:
            head, kind = tag[:1], tag[2:]
            if head in ("S", "E"):
                self.iobes_tags += 1
            elif head in ("B", "I") and (prev == "O" or prev[2:] != kind):
                self.i_starts += head == "I"
                self.b_starts += head == "B"
            prev = tag

    @property
    def scheme(self) -> str:
        """``iobes``, ``iob1`` or ``iob2`` (also for a file without entities)."""
        if self.iobes_tags:
            return "iobes"
        return "iob1" if self.i_starts and not self.b_starts else "iob2"

    def describe(self) -> str:
        """The detected scheme and why, for a log line."""
        name = {"iobes": "IOBES", "iob1": "IOB1", "iob2": "IOB2"}[self.scheme]
        if self.scheme == "iobes":
            why = f"{self.iobes_tags} S-/E- tags"
        elif self.scheme == "iob1":
            why = f"{self.i_starts} chunks start with I-, none with B- after O"
        elif self.b_starts:
            why = f"{self.b_starts} chunks start with B-, no S-/E- tags"
        else:
            why = "no entity tags: read as IOB2"
        return f"{name} ({why})"


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 → IOB2 the way conlleval reads a chunk start: an ``I-X`` that does not continue
    an ``X`` chunk (after ``O``, another type, or at the start) begins one, so becomes ``B-X``."""
    out: list[str] = []
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def entity_type(tag: str) -> str:
    """``B-PER`` → ``PER``; ``O`` → ``""``."""
    return tag[2:] if len(tag) > 2 else ""


# ---------------------------------------------------------------------------- reading


def read_conll(
    path: str | Path, scheme: str = "iob2", evidence: SchemeEvidence | None = None
) -> list[Sentence]:
    """Read a CoNLL file into sentences with IOB2 tags.

    Raises DataError("file:line: reason") for a missing file, undecodable bytes, a line with
    fewer than two columns, or an invalid tag; and for a file that holds no sentence.
    """
    return list(iter_conll(path, scheme, evidence))


def iter_conll(
    path: str | Path, scheme: str = "iob2", evidence: SchemeEvidence | None = None
) -> Iterator[Sentence]:
    """Stream the sentences of a CoNLL file, reading it line by line (never whole), with the
    errors of ``read_conll``. Tokens and tags are interned: a repeated word is stored once.

    The path is opened once and read once, so a pipe, a FIFO or ``/dev/stdin`` works; a line
    longer than ``MAX_LINE_BYTES`` or holding a NUL byte (``/dev/zero``, a binary file) is
    refused at once instead of being read into memory. ``evidence``, when given, counts the
    raw tags of every sentence (what ``auto`` found)."""
    path = Path(path)
    if scheme not in SCHEMES:
        raise DataError(f"{path}: unknown tag scheme {scheme!r} (choose from {', '.join(SCHEMES)})")
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, after the last sentence
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a CoNLL file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    found = False
    text = _TextSeen()
    with fh:
        try:
            for sentence in _parse(
                text.watch(_decoded_lines(fh, path)), str(path), scheme, evidence
            ):
                found = True
                yield sentence
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if not found:
        raise DataError(f"{path}:1: file {'holds no sentence' if text.seen else 'is empty'}")


class _TextSeen:
    """Remembers whether a stream of numbered lines held anything but blanks."""

    def __init__(self) -> None:
        self.seen = False

    def watch(self, lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str]]:
        for item in lines:
            if not self.seen and item[1].strip():
                self.seen = True
            yield item


MAX_LINE_BYTES = 1 << 20  # a CoNLL line is a token and a few tags; refuse a longer one


def _raw_lines(fh: BinaryIO, path: Path) -> Iterator[bytes]:
    """The lines of a binary stream, each at most ``MAX_LINE_BYTES``; DataError for a longer
    line or a NUL byte (neither is text), found without reading further."""
    for lineno in itertools.count(1):
        raw = fh.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if b"\0" in raw:
            raise DataError(f"{path}:{lineno}: NUL byte (a binary file, not CoNLL text)")
        if len(raw) > MAX_LINE_BYTES:
            raise DataError(f"{path}:{lineno}: line longer than {MAX_LINE_BYTES} bytes")
        yield raw


def _decoded_lines(fh: BinaryIO, path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line of a binary stream: UTF-8 (a leading BOM dropped);
    undecodable bytes raise DataError naming the line. A lone CR also ends a line."""
    offset = 0
    for lineno, raw in enumerate(_raw_lines(fh, path), 1):
        try:
            text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{path}:{lineno}: undecodable bytes (not UTF-8) at byte {offset + exc.start}"
            ) from None
        offset += len(raw)
        for part in split_lines(text):
            yield lineno, part


def split_lines(text: str) -> list[str]:
    """The lines of ``text`` split at LF, CRLF and a lone CR only: other Unicode line breaks
    (U+0085, U+2028, form feed …) that ``str.splitlines`` honours are kept inside a token."""
    return _LINE_BREAK.split(text.removesuffix("\n").removesuffix("\r"))


def columns(line: str) -> list[str]:
    """The columns of a CoNLL line, split at ASCII spaces and tabs only: a non-breaking or
    other Unicode space inside a token stays part of it."""
    return [col for col in line.replace("\t", " ").split(" ") if col]


def decode_bytes(raw: bytes, path: Path | str) -> str:
    """UTF-8 (a BOM is dropped); undecodable bytes raise DataError naming the line."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}:{line}: undecodable bytes (not UTF-8) at byte {exc.start}"
        ) from None


def parse_conll(
    lines: Iterable[str],
    name: str = "<input>",
    scheme: str = "iob2",
    evidence: SchemeEvidence | None = None,
):
    """Yield Sentence objects from CoNLL lines (CR, tabs and spaces tolerated)."""
    numbered = ((n, part) for n, line in enumerate(lines, 1) for part in split_lines(line))
    return _parse(numbered, name, scheme, evidence)


def _parse(
    lines: Iterable[tuple[int, str]],
    name: str,
    scheme: str,
    evidence: SchemeEvidence | None = None,
) -> Iterator[Sentence]:
    tokens: list[str] = []
    tags: list[str] = []
    start = doc = sent_doc = 0
    intern = sys.intern
    types: set[str] = set()
    for lineno, line in lines:
        cols = columns(line)
        if not cols:
            if tokens:
                yield _sentence(tokens, tags, (start, sent_doc), evidence)
                tokens, tags = [], []
            continue
        if cols[0] == "-DOCSTART-":
            doc += 1
            continue
        if len(cols) < 2:
            raise DataError(
                f"{name}:{lineno}: too few columns (need token and tag): {_shown(line)}"
            )
        tag = cols[-1]
        if not check_tag_in(tag, scheme):
            raise DataError(
                f"{name}:{lineno}: invalid tag {_shown(tag)} ({_expected(tag, scheme)})"
            )
        if tag != "O" and tag[2:] not in types:
            types.add(tag[2:])
            if len(types) > MAX_ENTITY_TYPES:
                raise DataError(f"{name}:{lineno}: more than {MAX_ENTITY_TYPES} entity types")
        if not tokens:
            start, sent_doc = lineno, doc
        tokens.append(intern(cols[0]))
        tags.append(tag)
    if tokens:
        yield _sentence(tokens, tags, (start, sent_doc), evidence)


def _shown(text: str, limit: int = 60) -> str:
    """``repr(text)``, cut to ``limit`` characters for a message."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text)} characters)"


def _expected(tag: str, scheme: str) -> str:
    """What a valid tag looks like under ``scheme``, for an error message."""
    if scheme in ("iob1", "iob2") and _ANY_TAG_RE.match(tag):
        return f"S-/E- tags are IOBES, not {scheme.upper()}: set data.scheme: iobes or auto"
    if scheme in ("iob1", "iob2"):
        return "expected O, B-TYPE or I-TYPE"
    return "expected O, B-TYPE, I-TYPE, E-TYPE or S-TYPE"


def _sentence(
    tokens: list[str], tags: list[str], where: tuple[int, int], evidence: SchemeEvidence | None
) -> Sentence:
    """``where``: (first line, document number)."""
    # IOB2 input is normalised too: a stray I-X is read as conlleval reads it (a chunk start).
    if evidence is not None:
        evidence.add(tags)
    return Sentence(tuple(tokens), tuple(map(sys.intern, to_iob2(tags))), *where)


# ---------------------------------------------------------------------------- writing


def format_conll(sentences: Iterable[Sentence], predicted: Iterable[Sequence[str]] | None = None):
    """Yield CoNLL lines: ``token<TAB>tag`` (or ``token<TAB>gold<TAB>pred``), blank line after
    each sentence."""
    preds = iter(predicted) if predicted is not None else None
    for sent in sentences:
        pred = next(preds) if preds is not None else None
        for i, (token, tag) in enumerate(zip(sent.tokens, sent.tags, strict=True)):
            yield f"{token}\t{tag}\t{pred[i]}" if pred is not None else f"{token}\t{tag}"
        yield ""


def write_conll(
    out: str | Path | TextIO,
    sentences: Iterable[Sentence],
    predicted: Iterable[Sequence[str]] | None = None,
) -> None:
    """Write sentences in CoNLL format to a path (atomically) or an open text stream."""
    text = "".join(line + "\n" for line in format_conll(sentences, predicted))
    if isinstance(out, str | Path):
        from windowner.checkpoint import atomic_write_text

        atomic_write_text(Path(out), text)
    else:
        out.write(text)


# ---------------------------------------------------------------------------- words and features


def normalize_word(word: str, lowercase: bool = True, digits_to_zero: bool = True) -> str:
    """The vocabulary key of a word: optionally lowercased, every digit replaced by ``0``."""
    if lowercase:
        word = word.lower()
    if digits_to_zero:
        word = _DIGIT_RE.sub("0", word)
    return word


# Capitalisation classes in the spirit of Collobert et al. (2011); 0 is the sentence padding.
CAPS_CLASSES = ("<pad>", "lower", "upper", "title", "mixed", "noletters")


def caps_feature(word: str) -> int:
    """Index into CAPS_CLASSES: all lower, all upper, first upper, capital inside, no letters."""
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return 5
    if all(c.islower() for c in letters):
        return 1
    if all(c.isupper() for c in letters):
        return 2 if len(letters) > 1 else 3
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return 3
    return 4


class Vocab:
    """A list of strings with a dict from string to id; ids 0..2 are ``<unk>``, ``<s>``, ``</s>``
    for word vocabularies (``specials``), none for tag vocabularies."""

    def __init__(self, items: Sequence[str]) -> None:
        self.items: list[str] = list(items)
        self._index: dict[str, int] | None = None
        self._text: str | None = None  # "\n"-framed items, for lookups before the dict exists
        self._lookups = 0
        self.index  # noqa: B018 - build (and check) the dict now

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        """A vocabulary stored one item per line, with its dict built only on demand.

        A few lookups (tagging one sentence with a 400k-word model) search the text instead,
        which is much cheaper than hashing every word; after ``LAZY_LOOKUPS`` of them the dict
        is built as usual."""
        vocab = cls.__new__(cls)
        vocab.items = text.split("\n")
        vocab._index, vocab._text, vocab._lookups = None, f"\n{text}\n", 0
        return vocab

    @property
    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = dict(zip(self.items, range(len(self.items)), strict=True))
            self._text = None
            if len(self._index) != len(self.items):
                raise ValueError("vocabulary items must be unique")
        return self._index

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item: str) -> bool:
        return self.id(item, -1) >= 0

    def id(self, item: str, default: int = UNK_ID) -> int:
        if self._index is None and self._lookups < LAZY_LOOKUPS and "\n" not in item:
            self._lookups += 1
            pos = self._text.find(f"\n{item}\n")
            return default if pos < 0 else self._text.count("\n", 0, pos)
        return self.index.get(item, default)

    @classmethod
    def from_counts(
        cls, counts: Counter[str], min_count: int = 1, extra: Iterable[str] = ()
    ) -> Vocab:
        """Word vocabulary: specials, then words seen ≥ ``min_count`` times (most frequent
        first, ties alphabetical), then ``extra`` words not yet present."""
        kept = sorted(
            (w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w)
        )
        items = list(SPECIALS) + [w for w in kept if w not in SPECIALS]
        seen = set(items)
        for word in extra:
            if word not in seen:
                items.append(word)
                seen.add(word)
        return cls(items)


def word_counts(sentences: Iterable[Sentence], normalize) -> Counter[str]:
    """Counts of normalised words over the sentences."""
    return Counter(normalize(t) for s in sentences for t in s.tokens)


def tag_vocab(sentences: Iterable[Sentence]) -> Vocab:
    """Tags in a fixed order: ``O`` first, then for each type (sorted) ``B-X``, ``I-X``."""
    return tag_vocab_of(t for s in sentences for t in s.tags)


def tag_vocab_of(tags: Iterable[str]) -> Vocab:
    """``tag_vocab`` from the tags alone."""
    types = sorted({entity_type(t) for t in tags} - {""})
    return Vocab(["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")])

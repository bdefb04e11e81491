"""Raw text → sentences of tokens with character offsets into the original text.

Tokens follow the CoNLL-2003 (Penn Treebank style) conventions the models were trained on:
``Obama 's``, ``do n't``, ``ca n't``, ``$ 1,200.50``, ``1996-08-30``, ``U.S.-based`` and
abbreviations such as ``Dr.``, ``St.``, ``Mo.``, ``A.C.``, ``U.S.`` kept whole — except at the
very end of a sentence, where CoNLL-2003 writes the abbreviation without its dot and the dot
as the sentence's final token (``... in the U.S .``).

Pipeline, one paragraph at a time (blank lines are the hard boundary; a single line break is
just a space, so hard-wrapped text is fine):

1. NFC normalisation with an offset map back to the original (``Ame\\u0301lie`` → ``Amélie``);
2. the named tokenizer (``TOKENIZERS``) splits the normalised paragraph into sentences of
   token spans — ``default`` is syntok's tokenizer and segmenter plus CoNLL post-processing;
3. every non-space character the tokenizer skipped becomes a token of its own (format
   characters such as bidi marks and zero-width spaces excepted), and tokens consisting only
   of such format characters are dropped;
4. spans are mapped back: ``original[token.start:token.end] == token.text``; ``token.norm``
   is the form to use for vocabulary lookup: NFC, format characters removed, typographic
   quotes and apostrophes written as ASCII ``'`` and ``"`` as in CoNLL-2003.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from windowner.errors import UsageError
from windowner.layout import TITLES, dateline_spans, line_ends_sentence
from windowner.registry import lookup

Span = tuple[int, int]
# A tokenizer: NFC paragraph text → sentences → token spans (start, end) into that text.
Segmenter = Callable[[str], list[list[Span]]]

# Invisible format characters that never form a token and are removed from ``norm``:
# soft hyphen, zero-width space, LRM/RLM, bidi embeddings/overrides/isolates, word joiner, BOM.
# ZWJ/ZWNJ are kept: they belong to emoji sequences and to Persian or Indic words.
_FORMAT = "\u00ad\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff"
_FORMAT_RE = re.compile(f"[{_FORMAT}]+")
# Typographic quotes and apostrophes: written as ASCII in ``norm``, as CoNLL-2003 does.
_QUOTES = "\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f"
_ASCII_QUOTES = str.maketrans(_QUOTES, "'" * 4 + '"' * 4)
_NOT_PLAIN_RE = re.compile(f"[{_FORMAT}{_QUOTES}]")
_VISIBLE_RE = re.compile(f"[^\\s{_FORMAT}]+")
_SPACE_RE = re.compile(r"\s+")
DEFAULT_MAX_CHARS = 1 << 16


class Token(NamedTuple):
    """One token: ``text`` is ``original[start:end]``; ``norm`` its lookup form (NFC,
    no invisible format characters, ASCII quotes)."""

    text: str
    start: int
    end: int
    norm: str


class TextSentence(NamedTuple):
    """A sentence of tokens and its character span ``[start, end)`` in the original text."""

    tokens: list[Token]
    start: int
    end: int

    @property
    def words(self) -> list[str]:
        """The tokens' lookup forms, ready for ``Tagger.tag``."""
        return [token.norm for token in self.tokens]


# ----------------------------------------------------------------------------- public API


def tokenize(text: str, tokenizer: str = "default") -> list[list[Token]]:
    """Sentences of tokens of ``text``; offsets index ``text`` itself."""
    return [sentence.tokens for sentence in iter_sentences(text, tokenizer)]


def iter_sentences(
    source: str | Iterable[str],
    tokenizer: str = "default",
    max_chars: int = DEFAULT_MAX_CHARS,
) -> Iterator[TextSentence]:
    """Sentences of a text, or of an iterable of lines (such as an open file) read lazily.

    Lines must keep their line ends; offsets index the concatenation of the lines as given.
    Memory stays bounded by the longest paragraph, and by ``max_chars`` when a paragraph
    grows longer: then every sentence but the (possibly unfinished) last one is emitted and
    the last is read again with the lines that follow; one sentence longer than
    ``max_chars`` is cut there.
    """
    segmenter = get_tokenizer(tokenizer)
    lines = io.StringIO(source, newline="") if isinstance(source, str) else source
    pending, pending_at = "", 0
    for offset, chunk, cut in _chunks(lines, max_chars):
        if pending and pending_at + len(pending) == offset:
            chunk, offset = pending + chunk, pending_at
        elif pending:
            yield from segment_paragraph(segmenter, pending, pending_at)
        sentences = segment_paragraph(segmenter, chunk, offset)
        pending = ""
        if cut and len(sentences) > 1:
            last = sentences.pop()
            pending, pending_at = chunk[last.start - offset :], last.start
        yield from sentences
    if pending:
        yield from segment_paragraph(segmenter, pending, pending_at)


def get_tokenizer(name: str) -> Segmenter:
    """The tokenizer registered as ``name``; UsageError listing the choices otherwise."""
    try:
        return lookup(TOKENIZERS, name, "tokenizer")
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None


def segment_paragraph(segmenter: Segmenter, paragraph: str, offset: int) -> list[TextSentence]:
    """Sentences of one paragraph whose first character is at ``offset`` in the original."""
    normal, starts, ends = nfc_with_offsets(paragraph)
    sentences = _fill_gaps(normal, segmenter(normal))
    if starts is None and _NOT_PLAIN_RE.search(normal) is None:
        make = Token._make  # tuple.__new__ without Token.__new__'s Python frame: 2x faster
        token_lists = [
            [make((w := paragraph[s:e], offset + s, offset + e, w)) for s, e in spans]
            for spans in sentences
        ]
    else:
        token_lists = _mapped_sentences(paragraph, normal, sentences, starts, ends, offset)
    return [TextSentence(t, t[0].start, t[-1].end) for t in token_lists if t]


# ----------------------------------------------------------------------------- paragraphs


def _chunks(lines: Iterable[str], max_chars: int) -> Iterator[tuple[int, str, bool]]:
    """(offset, text, cut) for each run of non-blank lines that ends at a blank line or at a
    line that ends a sentence by its layout (``layout.line_ends_sentence``: a headline, a
    table row); ``cut`` when the run was ended early, after the line that took it past
    ``max_chars``. Reads one line ahead."""
    offset, buffer, size = 0, [], 0
    widths: deque[int] = deque(maxlen=3)  # lengths of the paragraph's last lines
    for line, after in _with_next(lines):
        blank = not line.strip()
        ends = False
        if blank:
            widths.clear()
        else:
            buffer.append(line)
            size += len(line)
            ends = _hard_break(line, after, widths)
            widths.append(len(line.rstrip()))
            if size <= max_chars and not ends:
                continue
        if buffer:
            yield offset, "".join(buffer), not (blank or ends)
        offset += size + (len(line) if blank else 0)
        buffer, size = [], 0
    if buffer:
        yield offset, "".join(buffer), False


def _with_next(lines: Iterable[str]) -> Iterator[tuple[str, str | None]]:
    """(line, the line after it or None at the end)."""
    iterator = iter(lines)
    previous = next(iterator, None)
    for line in iterator:
        yield previous, line  # type: ignore[misc]
        previous = line
    if previous is not None:
        yield previous, None


def _hard_break(line: str, after: str | None, widths: deque[int]) -> bool:
    """Whether a sentence ends at the end of ``line`` (a complete line followed by another
    non-blank line of the same paragraph) because of the layout."""
    if after is None or not line.endswith(("\n", "\r")) or not after.strip():
        return False
    return line_ends_sentence(line, after, widths)


# ----------------------------------------------------------------------------- offsets


def nfc_with_offsets(text: str) -> tuple[str, list[int] | None, list[int] | None]:
    """(NFC text, starts, ends): character ``j`` of the NFC text comes from
    ``text[starts[j]:ends[j]]``; both maps are None when ``text`` is already NFC.

    Each starter (combining class 0) and the marks that follow it are normalised on their
    own — canonically equivalent to NFC of the whole.
    """
    if unicodedata.is_normalized("NFC", text):
        return text, None, None
    pieces: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    bounds = [i for i, ch in enumerate(text) if i == 0 or _starts_cluster(ch)] + [len(text)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        piece = unicodedata.normalize("NFC", text[a:b])
        pieces.append(piece)
        starts += [a] * len(piece)
        ends += [b] * len(piece)
    return "".join(pieces), starts, ends


def _starts_cluster(ch: str) -> bool:
    """Combining class 0, except Hangul vowel and trailing jamo (they compose with the
    leading consonant or syllable before them)."""
    code = ord(ch)
    if 0x1160 <= code <= 0x11FF or 0xD7B0 <= code <= 0xD7FF:
        return False
    return unicodedata.combining(ch) == 0


def _mapped_sentences(
    paragraph: str,
    normal: str,
    sentences: list[list[Span]],
    starts: list[int] | None,
    ends: list[int] | None,
    offset: int,
) -> list[list[Token]]:
    """Tokens mapped back to the original: spans that meet inside one normalisation cluster
    are merged (into the earlier sentence), tokens of format characters only are dropped;
    ``norm`` has no format characters and ASCII quotes."""
    merged: list[list[int]] = []  # [orig start, orig end, NFC start, NFC end, sentence]
    for k, spans in enumerate(sentences):
        for s, e in spans:
            a, b = (starts[s], ends[e - 1]) if starts is not None and ends is not None else (s, e)
            if merged and a < merged[-1][1]:
                merged[-1][1], merged[-1][3] = max(b, merged[-1][1]), max(e, merged[-1][3])
            else:
                merged.append([a, b, s, e, k])
    out: list[list[Token]] = [[] for _ in sentences]
    for a, b, s, e, k in merged:
        norm = _FORMAT_RE.sub("", normal[s:e]).translate(_ASCII_QUOTES)
        if len(norm) < e - s:  # a mark after a removed format character may now compose
            norm = unicodedata.normalize("NFC", norm)
        if norm:
            out[k].append(Token(paragraph[a:b], offset + a, offset + b, norm))
    return out


def _fill_gaps(text: str, sentences: list[list[Span]]) -> list[list[Span]]:
    """Every run of visible characters that no token covers becomes a token of its own."""
    covered = sum(e - s for spans in sentences for s, e in spans)
    if covered == len(_SPACE_RE.sub("", text)) and _FORMAT_RE.search(text) is None:
        return sentences
    out, pos = [], 0
    for spans in sentences:
        filled: list[Span] = []
        for s, e in spans:
            filled += [m.span() for m in _VISIBLE_RE.finditer(text, pos, s)]
            filled.append((s, e))
            pos = max(pos, e)
        out.append(filled)
    rest = [m.span() for m in _VISIBLE_RE.finditer(text, pos)]
    if out:
        out[-1] += rest
    elif rest:
        out.append(rest)
    return out


# ----------------------------------------------------------------------------- tokenizers

_CLITICS = {"'s", "'re", "'ll", "'ve", "'m", "'d", "'t"}  # 't: see WON'T below
# Words that keep their dot inside a sentence, besides initials (``M.``) and dotted
# acronyms (``A.C.``, ``U.S.``): titles, company forms, months, AP state abbreviations.
_ABBREVIATION_WORDS = """
    Inc Corp Co Ltd Bros Plc Cie Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec Mon Tue
    Tues Wed Thu Thur Thurs Fri Sat Sun Ala Ariz Ark Calif Colo Conn Del Fla Ga Ill Ind Kan
    Kans Ky La Md Mass Mich Minn Miss Mo Mont Neb Nev Okla Ore Pa Penn Tenn Tex Va Vt Wash Wis
    Wyo vol no No nos Nos pp op cf approx dept est etc fig"""
ABBREVIATIONS = TITLES | frozenset(_ABBREVIATION_WORDS.split())  # titles: windowner.layout
_DOTTED_RE = re.compile(r"[^\W\d_](?:[^\W\d_]*\.[^\W\d_]+)*")
# Characters syntok drops between the two halves of a word (``all-rounder``, ``snake_case``).
_WORD_JOINERS = frozenset("\u00ad\u058a\u05be\u0f0c\u1400\u1806\u2010\u2011\u2012\u2e17\u30a0-_")


def conll_spans(text: str, spans: list[Span]) -> list[Span]:
    """Token spans of one syntok sentence adjusted to CoNLL-2003 (see ``_joins_previous``);
    also ``WON'T`` → ``WO N'T`` as syntok only knows the lowercase ``n't``."""
    out: list[Span] = []
    last = len(spans) - 1  # index of the last token with a letter or digit
    while last > 0 and not _has_alnum(text, *spans[last]):
        last -= 1
    for i, (s, e) in enumerate(spans):
        if out:
            ps, pe = out[-1]
            detached = len(out) < 2 or out[-2][1] < ps
            if _joins_previous(text, ps, pe, s, e, i >= last, detached):
                out[-1] = (ps, e)
                continue
            if pe == s and text[s:e] in ("'T", "'t") and pe - ps > 1 and text[pe - 1] in "nN":
                out[-1], (s, e) = (ps, pe - 1), (pe - 1, e)
        out.append((s, e))
    return out


def _is_abbreviation(word: str) -> bool:
    """``Dr``, ``St``; also in capitals (``ST. LOUIS`` in a headline or dateline)."""
    return word in ABBREVIATIONS or (word.isupper() and word.capitalize() in ABBREVIATIONS)


def _has_alnum(text: str, s: int, e: int) -> bool:
    return any(ch.isalnum() for ch in text[s:e])


def _joins_previous(
    text: str, ps: int, pe: int, s: int, e: int, sentence_end: bool, detached: bool
) -> bool:
    """Whether token ``[s, e)`` belongs to the token ``[ps, pe)`` before it, in CoNLL-2003.

    An abbreviation keeps its dot unless that dot ends the sentence (``Dr.``, ``A.C.`` but
    ``... the U.S .``), and so does a list number (``1.``); dotted words (``Ph.D.``),
    hyphenated words
    (``all-rounder``), camel case (``McCague``), names (``O'Brien``), signed and leading-dot
    numbers (``+44``, ``.596``) and currencies (``C$``) stay whole; a stray combining mark
    joins its word."""
    if pe + 1 == s:
        return text[pe] in _WORD_JOINERS
    if pe != s:
        return False
    first, prev_last = text[s], text[pe - 1]
    if text[s:e] == ".":
        if sentence_end:
            return False
        word = text[ps:pe]
        if _is_abbreviation(word) or (detached and word.isdigit() and pe - ps <= 2):
            return True
        if word.isalpha() and text[e : e + 1].isalpha():  # a dot inside a word: Ph.D
            return True
        return ("." in word or pe - ps == 1) and _DOTTED_RE.fullmatch(word) is not None
    if first in "'\u2019":
        piece = text[s:e].lower().replace("\u2019", "'")
        return e - s > 1 and piece not in _CLITICS and prev_last.isalpha()
    if first.isupper() and prev_last.islower():
        return True
    if first.isalpha() and prev_last == "." and text[ps : pe - 1].replace(".", "").isalpha():
        return True
    if first.isdigit() and pe - ps == 1 and prev_last in "+.":
        return detached
    if text[s:e] == "$":  # currency prefixes: C$, A$, US$, HK$
        return detached and pe - ps <= 2 and text[ps:pe].isupper()
    return unicodedata.combining(first) != 0


_SYNTOK: list = []
# Where syntok's segmenter may end a sentence (syntok._segmentation_states.State.terminals
# and .opening_brackets, as of syntok 1.4.4; a test checks they are still these).
SYNTOK_SPLIT_CHARS = (
    ".!?;\u203c\u203d\u2047\u2048\u2049\u3002\ufe52\ufe57\uff01\uff0e\uff1f\uff61"
    "([{\uff5f\uff5b\uff3b\uff08\ufe5d\ufe5b\ufe59\ufd3e\u301a\u3018\u2985\u2983\u2329"
)
_SEGMENT_AT_RE = re.compile(f"[{re.escape(SYNTOK_SPLIT_CHARS)}]")


def syntok_sentences(text: str) -> list[list[Span]]:
    """syntok's tokenizer and segmenter (no break after a semicolon), then ``conll_spans``."""
    if not _SYNTOK:
        from syntok import segmenter
        from syntok.tokenizer import Tokenizer

        _SYNTOK.extend([Tokenizer(replace_not_contraction=False), segmenter.segment])
    tokenizer, segment = _SYNTOK
    tokens = tokenizer.tokenize(text)
    # syntok's segmenter only ever splits at a terminal or an opening bracket: without one
    # the text is one sentence, and the (slow) state machine is skipped.
    parts = segment(tokens) if _SEGMENT_AT_RE.search(text) else [list(tokens)]
    sentences: list[list[Span]] = []
    for sentence in parts:
        spans = [(o := t.offset, o + len(v)) for t in sentence if (v := t.value)]
        if not spans:
            continue
        if sentences and text[sentences[-1][-1][0]] == ";":  # syntok ends sentences at "; X"
            sentences[-1] += spans
        else:
            sentences.append(spans)
    sentences = _move_list_numbers(text, _datelines_apart(text, sentences))
    return [conll_spans(text, part) for spans in sentences for part in _split_after(text, spans)]


def _datelines_apart(text: str, sentences: list[list[Span]]) -> list[list[Span]]:
    """Every news dateline (``layout.dateline_spans``) one sentence: the sentences are cut
    where a dateline starts and ends, and joined where syntok cut one (``ST. LOUIS ...``)."""
    datelines = dateline_spans(text)
    if not datelines:
        return sentences
    starts = {spans[0][0] for spans in sentences}
    for a, b in datelines:
        starts = {x for x in starts if not a < x < b} | {a, b}
    bounds = sorted(starts)  # a sentence starts at the first token at or after each bound
    out: list[list[Span]] = []
    k = 0
    for span in (span for spans in sentences for span in spans):
        if k < len(bounds) and span[0] >= bounds[k]:
            while k < len(bounds) and span[0] >= bounds[k]:
                k += 1
            out.append([span])
        else:
            out[-1].append(span)
    return out


def _move_list_numbers(text: str, sentences: list[list[Span]]) -> list[list[Span]]:
    """In numbered lists (``... 12.71 seconds 2. Ludmila Engquist ...``) syntok ends a
    sentence after each number; CoNLL-2003 starts the next sentence with it. A sentence-final
    number of one or two digits moves on when the sentence before ends with the number one
    lower or the sentence after with the number one higher."""
    numbers = [_final_number(text, spans) for spans in sentences]
    out = [list(spans) for spans in sentences]
    for k, number in enumerate(numbers[:-1]):
        if number is None:
            continue
        if (k > 0 and numbers[k - 1] == number - 1) or numbers[k + 1] == number + 1:
            out[k + 1][:0] = out[k][-2:]
            del out[k][-2:]
    return [spans for spans in out if spans]


def _final_number(text: str, spans: list[Span]) -> int | None:
    """n when a sentence ends with a detached one- or two-digit number n and its dot."""
    if len(spans) < 2:
        return None
    (a, b), (c, d) = spans[-2:]
    detached = len(spans) == 2 or spans[-3][1] < a
    if b == c and text[c:d] == "." and b - a <= 2 and text[a:b].isdigit() and detached:
        return int(text[a:b])
    return None


# syntok never ends a sentence after ``U.S.`` or ``Inc.``; these words after one start a new one.
_STARTER_WORDS = "The He She It They We I But In This That There These Those His Her Its Their"
_SENTENCE_STARTERS = frozenset(_STARTER_WORDS.split())
_ENDING_ABBREVIATIONS = frozenset({"Inc", "Corp", "Co", "Ltd", "Plc", "Bros"})


def _split_after(text: str, spans: list[Span]) -> list[list[Span]]:
    """A syntok sentence cut after every dotted acronym or company form (``U.S.``, ``Inc.``)
    followed by a common sentence starter (``He``, ``The`` ...)."""
    parts, begin = [], 0
    for i in range(2, len(spans)):
        (ps, pe), (ds, de), (ns, ne) = spans[i - 2], spans[i - 1], spans[i]
        if pe == ds and text[ds:de] == "." and text[ns:ne] in _SENTENCE_STARTERS:
            word = text[ps:pe]
            if word in _ENDING_ABBREVIATIONS or ("." in word and _DOTTED_RE.fullmatch(word)):
                parts.append(spans[begin:i])
                begin = i
    parts.append(spans[begin:])
    return parts


_LINE_RE = re.compile(r"[^\r\n]+")
_NONSPACE_RE = re.compile(r"\S+")


def whitespace_sentences(text: str) -> list[list[Span]]:
    """Pre-tokenised text: one sentence per line, tokens separated by whitespace."""
    out = []
    for line in _LINE_RE.finditer(text):
        spans = [m.span() for m in _NONSPACE_RE.finditer(text, line.start(), line.end())]
        if spans:
            out.append(spans)
    return out


_SPACY: list = []


def spacy_sentences(text: str) -> list[list[Span]]:
    """spaCy's rule-based English tokenizer (``spacy.blank("en")``) and sentencizer."""
    if not _SPACY:
        try:
            import spacy
        except ImportError:
            raise UsageError("the 'spacy' tokenizer needs spaCy: pip install spacy") from None
        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")
        _SPACY.append(nlp)
    return [
        [(t.idx, t.idx + len(t.text)) for t in sent if not t.is_space]
        for sent in _SPACY[0](text).sents
    ]


TOKENIZERS: dict[str, Segmenter] = {
    "default": syntok_sentences,
    "whitespace": whitespace_sentences,
    "spacy": spacy_sentences,
}

"""Sentence boundaries that the words alone do not show: line layout and news datelines.

A paragraph (non-blank lines) is usually one piece of running text whose single line breaks
are just spaces (hard-wrapped prose: "... Macron in⏎Berlin"). But a line can also stand
alone: a headline, a dateline, a byline, the rows of a results table. ``line_ends_sentence``
decides, for one line break, whether the line before it ends a sentence:

- never when the next line starts in lowercase or with punctuation that continues a sentence,
  or with a date after a word in capitals (a wrapped dateline), when the line ends with a
  comma, a dash, an opening bracket, a lowercase function word (``in``, ``the``, ``and`` ...),
  a title abbreviation (``Dr.``, ``St.``) or an initial;
- otherwise, when the line ends with a colon (a list or table follows), when the line or
  the next is in capitals (``SOCCER - JAPAN GET LUCKY WIN``, ``NEW YORK 1996-08-30``), when
  the next line's first word would have fitted on it (a wrapped line is full: it broke
  because the next word did not fit — the width is the longest of the nearby lines), or
  when the lines around are all short (``NARROW`` characters: table rows, lists).

``dateline_spans`` finds news datelines inside running text — a place in capitals, an
optional region, a date (``AL-AIN, United Arab Emirates 1996-12-06``, ``PARIS, Aug. 30``),
an optional agency and dash — which are sentences of their own even when a text is joined
into one line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

NARROW = 40  # lines of a paragraph all shorter than this are rows, not wrapped prose

_FUNCTION_WORD_LIST = """
    a an the and or nor but of in on at to for from by with into onto as than that which
    who whom whose is are was were be been has have had will would shall should can could
    may might must not said says its their his her our your my this these those"""
_FUNCTION_WORDS = frozenset(_FUNCTION_WORD_LIST.split())
# Titles and other abbreviations that are followed by a name, never end a sentence (the
# tokenizer's ABBREVIATIONS include them).
_TITLE_LIST = """
    Mr Mrs Ms Dr Prof Rev Fr Sr Jr St Mt Ft Gen Lt Col Maj Capt Sgt Cpl Adm Cmdr Gov Sen
    Rep Pres Amb Hon vs v"""
TITLES = frozenset(_TITLE_LIST.split())
_JOINING_ENDS = tuple(",;(/&-\u2010\u2013\u2014")
_STARTS_SENTENCE_PUNCT = "\"'(\u2018\u201c[-\u2013\u2014\u2022*#"


def line_ends_sentence(line: str, next_line: str, widths: Sequence[int]) -> bool:
    """Whether the break between ``line`` and ``next_line`` (both non-blank, with or without
    line ends) is a sentence boundary; ``widths``: lengths of the paragraph's lines just
    before ``line`` (none for its first line)."""
    a, b = line.rstrip(), next_line.strip()
    first = b.split(maxsplit=1)[0]
    if not (first[0].isupper() or first[0].isdigit() or first[0] in _STARTS_SENTENCE_PUNCT):
        return False
    last = a.rsplit(maxsplit=1)[-1]
    if a.endswith(_JOINING_ENDS) or _joining_word(last):
        return False
    if _DATE_START_RE.match(b) and _in_capitals(last):  # a dateline wrapped before its date
        return False
    if a.endswith(":") or _in_capitals(a) or _in_capitals(b):  # a list or table follows;
        return True  # a headline or dateline ends or starts here
    width = max(len(a), len(next_line.rstrip()), *widths)
    if len(a) + 1 + len(first) <= width:  # the next word would have fitted: not a wrap
        return True
    return bool(widths) and width < NARROW


def _joining_word(word: str) -> bool:
    """A last word that a sentence cannot end with: a lowercase function word, a title
    abbreviation (``Dr.``) or an initial (``J.``)."""
    if word in _FUNCTION_WORDS:
        return True
    if not word.endswith("."):
        return False
    stem = word[:-1]
    return stem in TITLES or (len(stem) == 1 and stem.isupper())


def _in_capitals(text: str) -> bool:
    """At least two letters and no lowercase (a headline, a dateline)."""
    return text.isupper() and sum(ch.isalpha() for ch in text) >= 2


# ----------------------------------------------------------------------------- datelines

_PLACE_WORD = r"(?:[A-Z][A-Z'\u2019&-]*[A-Z]|[SMF][Tt]\.)"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?"
_DATE = rf"(?:\d{{4}}-\d\d-\d\d|{_MONTH} \d{{1,2}}(?:, \d{{4}})?)"
_REGION = r"(?:, [A-Z][\w.'-]*(?: [A-Z][\w.'-]*){0,3})?"
_AGENCY = r"(?: \((?:Reuters|Reuter|AP|AFP|UPI|dpa|Xinhua)\))?(?: [-\u2013\u2014]+)?"
DATELINE_RE = re.compile(
    rf"(?<!\S)({_PLACE_WORD}(?: {_PLACE_WORD}){{0,2}}){_REGION},?\s{_DATE}{_AGENCY}(?!\S)"
)
_DATE_START_RE = re.compile(rf"{_DATE}(?!\S)")


def dateline_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every news dateline in ``text``."""
    return [(m.start(1), m.end()) for m in DATELINE_RE.finditer(text)]

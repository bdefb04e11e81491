"""Document-level token features (Chieu & Ng 2002-style "global" features).

A document is a list of sentences of tokens: a CoNLL ``-DOCSTART-`` document
(``corpus.Sentence.doc``), or one input text of ``windowner.api`` / ``predict`` (a paragraph,
a JSONL record, a file). Each feature maps a document to one class id per token, computed
from the OTHER occurrences of the token's word in the same document, so it needs no trained
model and no first pass over other documents (no train/test leakage):

- ``doccase``: how the same lower-cased word is written at non-sentence-initial positions
  elsewhere in the document: ``unseen`` (nowhere else), ``capitalised`` (always capitalised,
  ALL CAPS included), ``lower`` (always lower case), ``mixed`` (lower case and capitalised),
  ``upper`` (only ALL CAPS: e.g. other headline words), ``caseless`` (the token has no cased
  letter). It rescues ALL-CAPS headlines ("GERMANY" is "Germany" in the story) and
  sentence-initial words ("Bonn said" vs "The").
- ``docseq``: whether the word occurs elsewhere in the document inside a run of two or more
  consecutive capitalised tokens (``yes``/``no``): "Clinton" alone after "Bill Clinton".

Each feature is one extra embedding table of the window model (``features.<name>_dim``), fed
through the same plumbing as the affix and shape tables (windowner.features: its vocabulary
is ``<unk> <s> </s>`` plus ``classes``, stored in the model file like the others).

    DOC_FEATURES["doccase"].ids([["EU", "rejects", "GERMAN", "call"], ["The", "German", "42"]])
    → [array([0, 0, 1, 0]), array([0, 4, 5])]
    # "GERMAN": capitalised elsewhere; "German": only ALL CAPS elsewhere; "42": caseless

Hook for gazetteers: ``doc_feature("gazetteer")`` builds the feature from
``windowner.gazetteer`` (``gazetteer_ids``, ``GAZETTEER_CLASSES``) when that module exists.
"""

from __future__ import annotations

import functools
import importlib.util
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from windowner.registry import lookup

Document = Sequence[Sequence[str]]  # sentences of tokens


@dataclass(frozen=True)
class FlatTokens:
    """N tokens of S sentences as arrays, each distinct token string once: what ``encode``
    and the vectorised document features read.

    types: the distinct token strings, in order of first occurrence.
    inverse: (N,) int64 index into ``types`` of every token.
    bounds: (S + 1,) int64; sentence s owns tokens bounds[s]:bounds[s + 1].
    sentence_docs: (S,) int64 document of every sentence: 0, 1, … numbering the runs of
    consecutive sentences with one ``doc`` number (as ``document_spans``).
    """

    types: list[str]
    inverse: np.ndarray
    bounds: np.ndarray
    sentence_docs: np.ndarray

    @classmethod
    def of(cls, sentences: Sequence[Any]) -> FlatTokens:
        """From sentences with ``tokens`` and ``doc`` (``corpus.Sentence``)."""
        index: dict[str, int] = {}
        inverse = [index.setdefault(t, len(index)) for s in sentences for t in s.tokens]
        lengths = np.fromiter((len(s.tokens) for s in sentences), np.int64, len(sentences))
        bounds = np.zeros(len(sentences) + 1, dtype=np.int64)
        np.cumsum(lengths, out=bounds[1:])
        numbers = np.fromiter((s.doc for s in sentences), np.int64, len(sentences))
        runs = np.zeros(len(sentences), dtype=np.int64)
        np.cumsum(numbers[1:] != numbers[:-1], out=runs[1:])
        return cls(list(index), np.asarray(inverse, dtype=np.int64), bounds, runs)

    @property
    def docs(self) -> np.ndarray:
        """(N,) int64 document of every token."""
        return np.repeat(self.sentence_docs, np.diff(self.bounds))

    def sentences(self) -> list[list[str]]:
        """The token lists again, sentence by sentence."""
        tokens = [self.types[i] for i in self.inverse.tolist()]
        return [tokens[a:b] for a, b in zip(self.bounds[:-1], self.bounds[1:], strict=True)]

    @functools.cached_property
    def initial(self) -> np.ndarray:
        """(N,) bool: the token is the first of its sentence."""
        out = np.zeros(len(self.inverse), dtype=bool)
        out[self.bounds[:-1][np.diff(self.bounds) > 0]] = True
        return out

    @functools.cached_property
    def lower_and_case(self) -> tuple[np.ndarray, np.ndarray]:
        """(N,) int64 group of every token — its document and lower-cased form — numbered
        0 … G − 1, and (N,) int64 ``written_case`` of every token (−1 without a cased
        letter); each distinct token string is looked at once."""
        lower: dict[str, int] = {}
        lower_of_type = [lower.setdefault(t.lower(), len(lower)) for t in self.types]
        case_of_type = [-1 if (c := written_case(t)) is None else c for t in self.types]
        keys = self.docs * (len(lower) + 1) + np.asarray(lower_of_type, np.int64)[self.inverse]
        _, group = np.unique(keys, return_inverse=True)
        return group.reshape(-1), np.asarray(case_of_type, dtype=np.int64)[self.inverse]


@dataclass(frozen=True)
class DocFeature:
    """One document-level feature: ``ids(document)`` gives one (T,) int array of class indices
    (into ``classes``) per sentence of T tokens — the readable definition; ``flat`` (optional)
    the same classes for many documents at once, (N,) int64 from ``FlatTokens``."""

    name: str
    classes: tuple[str, ...]
    ids: Callable[[Document], list[np.ndarray]]
    flat: Callable[[FlatTokens], np.ndarray] | None = None

    def flat_ids(self, tokens: FlatTokens) -> np.ndarray:
        """(N,) int64 classes of every token of ``tokens`` (``flat``, else ``ids`` per
        document)."""
        if self.flat is not None:
            return self.flat(tokens)
        ids = document_ids(self, tokens.sentences(), tokens.sentence_docs.tolist())
        return np.concatenate(ids).astype(np.int64) if ids else np.zeros(0, np.int64)


# ----------------------------------------------------------------------------- doccase

CASE_CLASSES = ("unseen", "capitalised", "lower", "mixed", "upper", "caseless")
_CAP, _LOWER, _UPPER = 0, 1, 2  # written-case kinds counted per word


@functools.lru_cache(maxsize=1 << 16)  # a pure function of the token; texts repeat tokens
def written_case(token: str) -> int | None:
    """``_UPPER`` (two or more letters, all upper case), ``_CAP`` (first letter upper case),
    ``_LOWER`` (first letter lower case), or None without a cased letter."""
    for ch in token:
        if ch.isupper():
            letters = sum(c.isalpha() for c in token)
            return _UPPER if letters > 1 and token.isupper() else _CAP
        if ch.islower():
            return _LOWER
    return None


def _case_class(cap: int, lower: int, upper: int) -> int:
    """The ``CASE_CLASSES`` index of a word written cap/lower/upper times elsewhere."""
    if lower and (cap or upper):
        return CASE_CLASSES.index("mixed")
    if lower:
        return CASE_CLASSES.index("lower")
    if cap:
        return CASE_CLASSES.index("capitalised")
    if upper:
        return CASE_CLASSES.index("upper")
    return CASE_CLASSES.index("unseen")


def doccase_ids(document: Document) -> list[np.ndarray]:
    """``doccase`` classes per sentence (see the module docstring): counts of each written
    case of every lower-cased word at non-initial positions, minus the token's own."""
    cases = [[written_case(t) for t in sent] for sent in document]
    counts: Counter[tuple[str, int]] = Counter()
    for sent, sent_cases in zip(document, cases, strict=True):
        for token, case in zip(sent[1:], sent_cases[1:], strict=True):
            if case is not None:
                counts[token.lower(), case] += 1
    caseless = CASE_CLASSES.index("caseless")
    out = []
    for sent, sent_cases in zip(document, cases, strict=True):
        ids = np.empty(len(sent), dtype=np.int64)
        for i, (token, case) in enumerate(zip(sent, sent_cases, strict=True)):
            if case is None:
                ids[i] = caseless
                continue
            key = token.lower()
            seen = [counts[key, kind] - (i > 0 and case == kind) for kind in (_CAP, _LOWER, _UPPER)]
            ids[i] = _case_class(*seen)
        out.append(ids)
    return out


def doccase_flat(tokens: FlatTokens) -> np.ndarray:
    """``doccase_ids`` of many documents at once, (N,) int64: the same counts with bincount
    over (document, lower-cased word, written case)."""
    group, case = tokens.lower_and_case
    counted = (case >= 0) & ~tokens.initial
    n_groups = int(group.max(initial=-1)) + 1
    counts = np.bincount(group[counted] * 3 + case[counted], minlength=3 * n_groups)
    seen = counts.reshape(n_groups, 3)[group]  # (N, 3) cap / lower / upper elsewhere + own
    seen[np.flatnonzero(counted), case[counted]] -= 1
    cap, low, upper = seen[:, _CAP] > 0, seen[:, _LOWER] > 0, seen[:, _UPPER] > 0
    classes = np.select(
        [case < 0, low & (cap | upper), low, cap, upper],
        [CASE_CLASSES.index(c) for c in ("caseless", "mixed", "lower", "capitalised", "upper")],
        default=CASE_CLASSES.index("unseen"),
    )
    return classes.astype(np.int64)


# ----------------------------------------------------------------------------- docseq

SEQ_CLASSES = ("no", "yes")


def capitalised_runs(sent: Sequence[str]) -> list[tuple[int, int]]:
    """(start, end) of the maximal runs of ≥ 2 consecutive capitalised (not ALL CAPS) tokens."""
    runs, start = [], None
    for i, token in enumerate([*sent, ""]):
        if written_case(token) == _CAP:
            start = i if start is None else start
            continue
        if start is not None and i - start >= 2:
            runs.append((start, i))
        start = None
    return runs


def docseq_ids(document: Document) -> list[np.ndarray]:
    """``docseq`` classes per sentence: 1 when the lower-cased word occurs in a capitalised
    run (``capitalised_runs``) somewhere else in the document, else 0."""
    in_run = [np.zeros(len(sent), dtype=bool) for sent in document]
    counts: Counter[str] = Counter()
    for sent, flags in zip(document, in_run, strict=True):
        for start, end in capitalised_runs(sent):
            flags[start:end] = True
            counts.update(t.lower() for t in sent[start:end])
    out = []
    for sent, flags in zip(document, in_run, strict=True):
        elsewhere = [counts[t.lower()] - int(own) for t, own in zip(sent, flags, strict=True)]
        out.append((np.asarray(elsewhere, dtype=np.int64) > 0).astype(np.int64))
    return out


def docseq_flat(tokens: FlatTokens) -> np.ndarray:
    """``docseq_ids`` of many documents at once, (N,) int64: a capitalised token is in a run
    when a neighbour in its sentence is capitalised too; bincount per (document, word)."""
    group, case = tokens.lower_and_case
    initial = tokens.initial
    cap = case == _CAP
    joined = cap[1:] & cap[:-1] & ~initial[1:]  # (N − 1,) token i and i + 1 in one run
    in_run = np.zeros(len(cap), dtype=bool)
    in_run[1:] |= joined
    in_run[:-1] |= joined
    counts = np.bincount(group[in_run], minlength=int(group.max(initial=-1)) + 1)
    return (counts[group] - in_run > 0).astype(np.int64)


# ----------------------------------------------------------------------------- registry

DOC_FEATURES: dict[str, DocFeature] = {
    "doccase": DocFeature("doccase", CASE_CLASSES, doccase_ids, doccase_flat),
    "docseq": DocFeature("docseq", SEQ_CLASSES, docseq_ids, docseq_flat),
}


def _gazetteer() -> DocFeature:
    """The gazetteer feature of windowner.gazetteer (another branch), loaded on first use."""
    from windowner import gazetteer  # type: ignore[attr-defined]

    return DocFeature("gazetteer", tuple(gazetteer.GAZETTEER_CLASSES), gazetteer.gazetteer_ids)


LAZY_DOC_FEATURES: dict[str, Callable[[], DocFeature]] = {"gazetteer": _gazetteer}


def doc_feature(name: str) -> DocFeature:
    """The registered feature ``name`` (KeyError listing the choices when unknown; a lazy
    one whose module is missing raises KeyError too)."""
    if name in LAZY_DOC_FEATURES and name not in DOC_FEATURES:
        if importlib.util.find_spec(f"windowner.{name}") is None:
            raise KeyError(f"document feature {name!r} needs windowner/{name}.py (not installed)")
        DOC_FEATURES[name] = LAZY_DOC_FEATURES[name]()
    return lookup(DOC_FEATURES, name, "document feature")


def document_spans(docs: Sequence[int]) -> list[tuple[int, int]]:
    """(start, end) sentence ranges of the runs of equal document numbers ``docs``."""
    spans, start = [], 0
    for i in range(1, len(docs) + 1):
        if i == len(docs) or docs[i] != docs[start]:
            spans.append((start, i))
            start = i
    return spans if docs else []


def document_ids(feature: DocFeature, sentences: Sequence[Sequence[str]], docs: Sequence[int]):
    """``feature.ids`` over each document (consecutive sentences with the same ``docs``
    number) → one (T,) int64 class array per sentence, in order."""
    out: list[np.ndarray] = []
    for start, end in document_spans(docs):
        part = feature.ids([list(s) for s in sentences[start:end]])
        if [len(a) for a in part] != [len(s) for s in sentences[start:end]]:
            raise ValueError(f"document feature {feature.name} gave ids of the wrong lengths")
        out += part
    return out

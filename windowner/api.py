# TEMP api for the serve branch (replaced at merge)
"""A stand-in for the Python API of /work/notes/API.md, built on ``predict.Tagger`` and
``predict.tokenize``, so that ``windowner serve`` can be written and tested before the real API
lands. The real ``windowner.api`` replaces this file at merge; ``serve`` and ``html`` use only:

- ``load(path) -> NER`` (run directory or model file);
- ``NER.__call__(text) -> Doc`` and ``NER.pipe(texts, batch_size) -> Iterator[Doc]``;
- ``Doc.to_dict()``: the document record of API.md;
- ``NER.explain(text) -> dict``: the record with, on every token, ``window`` (the words the
  model saw, normalised) and ``scores`` (tag → raw model score);
- ``NER.card() -> dict``: the model card (see ``NER.card``).

Offsets come from finding each token in the text, in order; a token's score is the softmax
probability of its chosen tag (ranking: the logistic of s − θ), an entity's the mean over its
tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from windowner.corpus import Sentence as TaggedSentence
from windowner.errors import ModelFileError
from windowner.metrics import get_entities
from windowner.tagger import Tagger, load_checkpoint
from windowner.textio import tokenize


@dataclass
class Token:
    text: str
    start_char: int
    end_char: int
    tag: str
    score: float


@dataclass
class Sentence:
    start_char: int
    end_char: int
    tokens: list[Token]


@dataclass
class Entity:
    text: str
    label: str
    start_char: int
    end_char: int
    sentence: int
    start_token: int
    end_token: int
    score: float


@dataclass
class Doc:
    """One tagged text; ``to_dict()`` is the JSON record of API.md."""

    text: str
    sentences: list[Sentence] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)

    @property
    def tokens(self) -> list[Token]:
        return [t for s in self.sentences for t in s.tokens]

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "sentences": [
                {
                    "start_char": s.start_char,
                    "end_char": s.end_char,
                    "tokens": [t.__dict__.copy() for t in s.tokens],
                }
                for s in self.sentences
            ],
            "entities": [e.__dict__.copy() for e in self.entities],
        }


def token_offsets(text: str, tokens: Sequence[str], start: int) -> list[tuple[int, int]]:
    """(start, end) of each token, searched in ``text`` in order from ``start``."""
    spans = []
    for token in tokens:
        begin = text.find(token, start)
        if begin < 0:
            raise ValueError(f"token {token!r} not found in the text after offset {start}")
        start = begin + len(token)
        spans.append((begin, start))
    return spans


def tag_probabilities(tagger: Tagger, scores: np.ndarray, tags: list[str]) -> np.ndarray:
    """(N, C) scores and the N decoded tags → (N,) probability of each chosen tag."""
    if tagger.objective == "ranking":
        p_entity = 1.0 / (1.0 + np.exp(-(scores[:, 0].astype(np.float64) - tagger.threshold)))
        return np.where(np.array([t != "O" for t in tags]), p_entity, 1.0 - p_entity)
    z = scores.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    probs = z / z.sum(axis=1, keepdims=True)
    column = {t: i for i, t in enumerate(tagger.output_tags)}
    return probs[np.arange(len(tags)), [column[t] for t in tags]]


class NER:
    """A loaded model: ``ner(text) -> Doc``, ``ner.pipe(texts)``, ``ner.card()``."""

    def __init__(self, tagger: Tagger, path: Path, meta: dict[str, Any]) -> None:
        self.tagger = tagger
        self.path = path
        self.meta = meta

    def __call__(self, text: str) -> Doc:
        return self._tag_texts([text])[0]

    def pipe(self, texts: Iterable[str], batch_size: int = 64) -> Iterator[Doc]:
        batch: list[str] = []
        for text in texts:
            batch.append(text)
            if len(batch) >= batch_size:
                yield from self._tag_texts(batch)
                batch = []
        if batch:
            yield from self._tag_texts(batch)

    def tag_tokens(self, token_lists: Sequence[Sequence[str]]) -> list[list[str]]:
        return self.tagger.tag(token_lists)

    def _tag_texts(self, texts: list[str]) -> list[Doc]:
        per_text = [tokenize(t) for t in texts]
        flat = [TaggedSentence(tuple(s), ("O",) * len(s)) for sents in per_text for s in sents]
        if not flat:
            return [Doc(t) for t in texts]
        enc = self.tagger.encode(flat)
        scores = self.tagger.scores(enc)
        tags = self.tagger.tag_encoded(enc, scores)
        probs = tag_probabilities(self.tagger, scores, [t for s in tags for t in s]).tolist()
        docs, i, k = [], 0, 0
        for text, sents in zip(texts, per_text, strict=True):
            n_tok = sum(len(s) for s in sents)
            docs.append(_build_doc(text, sents, tags[i : i + len(sents)], probs[k : k + n_tok]))
            i, k = i + len(sents), k + n_tok
        return docs

    def explain(self, text: str) -> dict[str, Any]:
        """The record of ``self(text)`` with ``window`` and ``scores`` on every token."""
        from windowner.explain import explain

        record = self(text).to_dict()
        token_lists = [[t["text"] for t in s["tokens"]] for s in record["sentences"]]
        if not token_lists:
            return record
        _, explained = explain(self.tagger, token_lists)
        for sent, sent_ex in zip(record["sentences"], explained, strict=True):
            for token, ex in zip(sent["tokens"], sent_ex, strict=True):
                token["window"] = ex.window
                token["scores"] = ex.scores
        return record

    def card(self) -> dict[str, Any]:
        """Model card: ``path``, ``labels`` (entity types), ``tags``, ``objective``, ``spec``,
        ``config`` (the training config: data provenance, features, model, optimizer) and
        ``scores`` (the run's summary.json without ``run_dir``, or null for a bare model file)."""
        summary_file = self.path.parent / "summary.json"
        scores = None
        if summary_file.is_file():
            scores = json.loads(summary_file.read_text(encoding="utf-8"))
            scores.pop("run_dir", None)
        tags = self.tagger.output_tags
        return {
            "path": str(self.path),
            "labels": sorted({t[2:] for t in tags if t != "O"}),
            "tags": tags,
            "objective": self.tagger.objective,
            "spec": self.meta.get("spec", {}),
            "config": self.tagger.config,
            "scores": scores,
        }


def _build_doc(text: str, sents: list[list[str]], tags: list[list[str]], probs: list[float]) -> Doc:
    doc, cursor, k = Doc(text), 0, 0
    for s_index, (tokens, sent_tags) in enumerate(zip(sents, tags, strict=True)):
        spans = token_offsets(text, tokens, cursor)
        cursor = spans[-1][1]
        toks = [
            Token(tok, a, b, tag, probs[k + j])
            for j, (tok, (a, b), tag) in enumerate(zip(tokens, spans, sent_tags, strict=True))
        ]
        k += len(tokens)
        doc.sentences.append(Sentence(spans[0][0], cursor, toks))
        for label, s, e in get_entities(sent_tags):
            start, end = toks[s].start_char, toks[e - 1].end_char
            score = sum(t.score for t in toks[s:e]) / (e - s)
            doc.entities.append(Entity(text[start:end], label, start, end, s_index, s, e, score))
    return doc


def load(path: str | Path) -> NER:
    """A run directory (its model.npz) or a model file → NER."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.npz"
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file or run directory")
    tagger, _, meta = load_checkpoint(path)
    return NER(tagger, path, meta)

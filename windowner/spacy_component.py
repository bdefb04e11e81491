"""A spaCy pipeline component that tags spaCy's own tokens with a windowner model.

    import spacy
    nlp = spacy.blank("en")
    nlp.add_pipe("windowner_ner", config={"model": "runs/latest"})
    doc = nlp("Camille Rousseau visited Paris.")
    [(ent.text, ent.label_) for ent in doc.ents]

Installed with the extra ``pip install 'windowner[spacy]'``; the factory ``windowner_ner`` is
registered when this module is imported and through the ``spacy_factories`` entry point, so
``add_pipe`` finds it without an import. Each sentence (``doc.sents`` when the pipeline sets
boundaries, else the whole doc) is one windowner sentence; whitespace tokens are skipped and
never part of an entity. The model is not copied by ``nlp.to_disk``: the config keeps its path.

Where to change what: how a doc becomes token lists is ``_sentences``; how tags become spans
is ``WindownerNER._spans``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from spacy.language import Language
from spacy.tokens import Doc, Span

from windowner.metrics import get_entities

FACTORY = "windowner_ner"


class WindownerNER:
    """Sets ``doc.ents`` from a windowner model (a run directory or a model file)."""

    def __init__(self, name: str, model: str, overwrite: bool = True) -> None:
        from windowner.runs import resolve_model
        from windowner.tagger import Tagger

        self.name = name
        self.model = str(model)
        self.overwrite = overwrite
        self.tagger = Tagger.load(resolve_model(Path(model)))

    def __call__(self, doc: Doc) -> Doc:
        return next(iter(self.pipe([doc])))

    def pipe(self, docs: Iterable[Doc], batch_size: int = 256) -> Iterator[Doc]:
        """Tag docs in batches of ``batch_size`` (one model call per batch)."""
        stream = iter(docs)
        while batch := list(islice(stream, batch_size)):
            pieces = [(doc, _sentences(doc)) for doc in batch]
            token_lists = [[t.text for t in sent] for _, sents in pieces for sent in sents]
            tags = iter(self.tagger.tag(token_lists) if token_lists else [])
            for doc, sents in pieces:
                spans = [span for sent in sents for span in self._spans(doc, sent, next(tags))]
                self._set(doc, spans)
                yield doc

    def _spans(self, doc: Doc, sent: list, tags: list[str]) -> list[Span]:
        """Entity spans of one sentence; ``sent`` holds the (non-space) tokens tagged."""
        return [
            Span(doc, sent[start].i, sent[end - 1].i + 1, label=kind)
            for kind, start, end in get_entities(tags)
        ]

    def _set(self, doc: Doc, spans: list[Span]) -> None:
        if self.overwrite:
            doc.ents = spans
        else:  # keep the entities already there; add ours where they do not overlap
            taken = {i for ent in doc.ents for i in range(ent.start, ent.end)}
            new = [s for s in spans if taken.isdisjoint(range(s.start, s.end))]
            doc.ents = [*doc.ents, *new]


def _sentences(doc: Doc) -> list[list]:
    """The doc's non-space tokens per sentence (the whole doc when no boundaries are set)."""
    groups = doc.sents if doc.has_annotation("SENT_START") else [doc[:]]
    out = []
    for group in groups:
        tokens = [t for t in group if not t.is_space]
        if tokens:
            out.append(tokens)
    return out


@Language.factory(FACTORY, default_config={"model": "runs/latest", "overwrite": True})
def make_windowner_ner(nlp: Language, name: str, model: str, overwrite: bool) -> WindownerNER:
    """spaCy factory: ``nlp.add_pipe("windowner_ner", config={"model": PATH})``."""
    return WindownerNER(name, model, overwrite)

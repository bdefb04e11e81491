"""The Python API: raw text in, entities with character offsets out.

```python
import windowner
ner = windowner.load("runs/latest")        # a run directory or a model file
doc = ner("Dr. Smith met Obama's advisers in St. Louis, Mo., on Friday.")
doc.entities[0].text, doc.entities[0].label, doc.entities[0].start_char
for doc in ner.pipe(open("big.txt")):       # any iterable of str, tagged in batches
    ...
ner.tag_tokens([["EU", "rejects", "German", "call"]])   # pre-tokenised → tags
```

A text is split into sentences of tokens by ``windowner.tokenizer`` (offsets into the original
string, ``norm`` forms for the vocabulary), tagged in batches, and turned into a ``Doc``:
sentences, tokens (``tag``, ``score``) and entities (``text == doc.text[start_char:end_char]``).
``Doc.to_dict()`` is the JSON record of ``windowner predict -f json|jsonl`` and of ``serve``.

Scores are in [0, 1]: a token's score is the probability of its decoded tag
(``windowner.calibrate``: softmax probabilities, hinge models through a softmax with the
temperature fitted on dev, crf models their marginals p(tag | sentence)); an entity's score is
the MEAN of its tokens' scores. Scores are rounded to 4 decimals.

Where to change what: the records are ``Token``/``Sentence``/``Entity``/``Doc``; tagging a
batch is ``NER._tag_sentences`` and building documents ``build_doc``; loading is ``load``;
worker processes for ``pipe(..., jobs=N)`` are ``_pipe_parallel``.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from windowner.calibrate import token_probabilities
from windowner.metrics import get_entities
from windowner.tagger import Tagger, load_checkpoint, token_sentences
from windowner.tokenizer import TextSentence, get_tokenizer, iter_sentences
from windowner.tokenizer import Token as TextToken
from windowner.windows import Encoded

SCORE_DECIMALS = 4  # scores are rounded: the records stay short, the digits that matter stay


class Token(NamedTuple):
    """A tagged token: ``text == doc.text[start_char:end_char]``; ``score`` = p(tag)."""

    text: str
    start_char: int
    end_char: int
    tag: str
    score: float


class Entity(NamedTuple):
    """An entity: tokens ``start_token:end_token`` of sentence ``sentence``; ``score`` is the
    mean of its tokens' scores."""

    text: str
    label: str
    start_char: int
    end_char: int
    sentence: int
    start_token: int
    end_token: int
    score: float


@dataclass
class Sentence:
    start_char: int
    end_char: int
    tokens: list[Token]


@dataclass
class Doc:
    """One tagged text; ``to_dict()`` is the JSON record (see the README's predict section)."""

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
                    "tokens": [t._asdict() for t in s.tokens],
                }
                for s in self.sentences
            ],
            "entities": [e._asdict() for e in self.entities],
        }

    def to_json(self) -> str:
        """``to_dict()`` as one line of JSON (UTF-8 text, not escaped)."""
        return json.dumps(self.to_dict(), ensure_ascii=False)


class NER:
    """A loaded model and a tokenizer: ``ner(text) -> Doc``, ``ner.pipe(texts)``,
    ``ner.tag_tokens(token_lists)``, ``ner.explain(text)``, ``ner.card()``."""

    def __init__(
        self, tagger: Tagger, path: Path, meta: dict[str, Any], tokenizer: str = "default"
    ) -> None:
        get_tokenizer(tokenizer)  # an unknown name fails here, with the choices
        self.tagger = tagger
        self.path = path
        self.meta = meta
        self.tokenizer = tokenizer
        self._columns = {t: i for i, t in enumerate(tagger.output_tags)}
        self.sources: list[str] = [str(path)]  # every member's file (an ensemble: several)

    def __call__(self, text: str) -> Doc:
        return self._tag_texts([text])[0]

    def pipe(
        self,
        texts: Iterable[str],
        batch_size: int = 64,
        jobs: int = 1,
        threads: int | str | None = "auto",
    ) -> Iterator[Doc]:
        """Docs of ``texts`` in order, up to ``batch_size`` texts (and ``BATCH_CHARS``
        characters) tagged together; reads ``texts`` lazily, so memory stays bounded for any
        number of texts. ``jobs`` > 1 tags batches in that many worker processes (each loads
        the model once). ``threads``: numpy's BLAS threads once a batch is big enough for
        them to matter (``THREADED_CHARS``), ``auto`` (``predict``'s policy:
        windowner.threads) or a number; None leaves them as they are."""
        batches = _batches(texts, max(1, batch_size))
        if jobs > 1:
            yield from _pipe_parallel(self, batches, jobs)
            return
        from windowner.threads import LoadMeter

        meter = None if threads is None else LoadMeter()  # the load while the first batch
        with ExitStack() as policy:  # is tokenised: no 0.1 s sample of its own
            for batch in batches:
                per_text = self._sentences(batch)
                if meter is not None and sum(map(len, batch)) >= THREADED_CHARS:
                    policy.enter_context(self._threads(threads, meter))
                    meter = None  # chosen once for the rest of the pipe
                yield from self._tag_sentences(batch, per_text)

    def _threads(self, threads: int | str | None, meter: Any) -> AbstractContextManager:
        """The thread policy for scoring chunks of windows with this model, sized by the
        other processes' load that ``meter`` (a threads.LoadMeter) has seen."""
        from windowner.threads import SCORE_CHUNK, others_since, scoring_threads

        others, _ = others_since(meter)
        spec = self.tagger.model.spec
        return scoring_threads(threads, spec, SCORE_CHUNK, others=others, interleaved=True)

    def tag_tokens(
        self, token_lists: Sequence[Sequence[str]], docs: Sequence[int] | None = None
    ) -> list[list[str]]:
        """Pre-tokenised sentences → their tags (no tokenizer involved); ``docs`` numbers the
        sentences' documents (default: all one document)."""
        if not token_lists:
            return []
        return self.tagger.tag(token_lists, docs)

    def doc_from_tokens(self, token_lists: Sequence[Sequence[str]]) -> Doc:
        """Pre-tokenised sentences → one Doc whose text is the tokens joined by spaces, one
        sentence per line (offsets index that text)."""
        sentences, offset = [], 0
        for tokens in token_lists:
            toks = []
            for word in tokens:
                toks.append(TextToken(word, offset, offset + len(word), word))
                offset += len(word) + 1
            if toks:
                sentences.append(TextSentence(toks, toks[0].start, toks[-1].end))
        text = "\n".join(" ".join(tokens) for tokens in token_lists if tokens)
        return self._tag_sentences([text], [sentences])[0]

    def _tag_texts(self, texts: list[str]) -> list[Doc]:
        return self._tag_sentences(texts, self._sentences(texts))

    def _sentences(self, texts: list[str]) -> list[list[TextSentence]]:
        """Each text's sentences, by this NER's tokenizer."""
        return [list(iter_sentences(text, self.tokenizer)) for text in texts]

    def _tag_sentences(self, texts: list[str], per_text: list[list[TextSentence]]) -> list[Doc]:
        """Tag every sentence of a batch at once → one Doc per text."""
        flat = [s for sents in per_text for s in sents]
        if not flat:
            return [Doc(text) for text in texts]
        encoded = self._encoded(per_text)
        scores = self.tagger.scores(encoded)  # (N, C)
        tags = self.tagger.tag_encoded(encoded, scores)
        flat_tags = [t for sent in tags for t in sent]
        probs = token_probabilities(self.tagger, scores, encoded.sent_bounds)
        chosen = probs[np.arange(len(flat_tags)), [self._columns[g] for g in flat_tags]]
        docs, i, token_scores = [], 0, iter(np.round(chosen, SCORE_DECIMALS).tolist())
        for text, sents in zip(texts, per_text, strict=True):
            docs.append(build_doc(text, sents, tags[i : i + len(sents)], token_scores))
            i += len(sents)
        return docs

    def _encoded(self, per_text: list[list[TextSentence]]) -> Encoded:
        """The sentences of a batch's texts encoded; each text is one document (the extra
        features of windowner.docfeatures look at the whole document)."""
        words = [s.words for sents in per_text for s in sents]
        docs = [doc for doc, sents in enumerate(per_text) for _ in sents]
        return self.tagger.encode(token_sentences(words, docs))

    def explain(self, text: str) -> dict[str, Any]:
        """The record of ``self(text)`` with, on every token, ``window`` (the normalised words
        the model saw) and ``scores`` (tag → raw model score)."""
        from windowner.explain import explain

        sentences = list(iter_sentences(text, self.tokenizer))
        record = self._tag_sentences([text], [sentences])[0].to_dict()
        if not sentences:
            return record
        _, explained = explain(self.tagger, [s.words for s in sentences])
        for sent, sent_ex in zip(record["sentences"], explained, strict=True):
            for token, ex in zip(sent["tokens"], sent_ex, strict=True):
                token["window"] = ex.window
                token["scores"] = ex.scores
        return record

    def card(self) -> dict[str, Any]:
        """Model card: ``path``, ``labels`` (entity types), ``tags``, ``objective``,
        ``temperature``, ``tokenizer``, ``spec``, ``config`` (the training config) and
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
            "temperature": self.tagger.temperature,
            "tokenizer": self.tokenizer,
            "spec": self.meta.get("spec", {}),
            "config": self.tagger.config,
            "scores": scores,
        }


def build_doc(
    text: str, sentences: list[TextSentence], tags: list[list[str]], scores: Iterator[float]
) -> Doc:
    """A Doc from a text's sentences, their tags and the tokens' scores (an iterator shared
    by the texts of a batch: this text takes one score per token)."""
    doc, make = Doc(text), Token._make
    for s_index, (sent, sent_tags) in enumerate(zip(sentences, tags, strict=True)):
        toks = [  # _make: tuple.__new__, no Python-level __new__ per token
            make((tok[0], tok[1], tok[2], tag, score))
            for tok, tag, score in zip(sent.tokens, sent_tags, scores, strict=False)
        ]
        doc.sentences.append(Sentence(sent.start, sent.end, toks))
        for label, s, e in get_entities(sent_tags):
            start, end = toks[s].start_char, toks[e - 1].end_char
            score = round(sum(t.score for t in toks[s:e]) / (e - s), SCORE_DECIMALS)
            doc.entities.append(Entity(text[start:end], label, start, end, s_index, s, e, score))
    return doc


BATCH_CHARS = 1 << 17  # a batch also ends once its texts hold this many characters
THREADED_CHARS = 1 << 15  # a pipe's batch this long (~5k tokens) sets the BLAS threads


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    """Lists of ``size`` texts, or fewer once they hold ``BATCH_CHARS`` characters; no text
    is read before the batch before it was yielded."""
    batch: list[str] = []
    chars = 0
    for text in texts:
        batch.append(text)
        chars += len(text)
        if len(batch) >= size or chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


# ----------------------------------------------------------------------------- worker processes

_WORKER_NER: NER | None = None


def _worker_signals() -> None:
    """A pool worker dies quietly on SIGTERM (``Pool`` ends its workers so) and leaves Ctrl-C
    to the parent: the handlers it inherited from a ``windowner`` command would raise inside
    the pool's queue locks instead (a traceback, or a lock held forever: a hang)."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _init_worker(path: str | list[str], tokenizer: str) -> None:
    global _WORKER_NER
    _worker_signals()
    _WORKER_NER = load(path, tokenizer=tokenizer)


def _tag_in_worker(texts: list[str]) -> list[Doc]:
    assert _WORKER_NER is not None
    return _WORKER_NER._tag_texts(texts)


def _pipe_parallel(ner: NER, batches: Iterator[list[str]], jobs: int) -> Iterator[Doc]:
    """Batches tagged by ``jobs`` processes, in order; at most 2·jobs batches in flight (so a
    huge input is never read ahead: ``Pool.imap`` would consume the whole iterator). Forked
    workers use this process's model; spawned ones load it once each."""
    import multiprocessing

    global _WORKER_NER
    source = ner.sources[0] if len(ner.sources) == 1 else ner.sources
    init, init_args = _init_worker, (source, ner.tokenizer)
    forked = multiprocessing.get_start_method() == "fork"
    if forked:  # workers share the loaded model's pages
        _WORKER_NER, init, init_args = ner, _worker_signals, ()
    with multiprocessing.Pool(jobs, init, init_args) as pool:
        if forked:
            _WORKER_NER = None  # the workers are forked: this process need not keep it
        pending: deque = deque()
        for batch in batches:
            pending.append(pool.apply_async(_tag_in_worker, (batch,)))
            if len(pending) >= 2 * jobs:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


# ----------------------------------------------------------------------------- loading

GC_THRESHOLD = 50_000  # allocations between young-generation collections in a tagging process


@contextmanager
def tagging_gc() -> Iterator[None]:
    """Garbage-collector settings while a process only tags (``windowner predict``): what is
    alive on entry (the model, its vocabulary) is frozen out of the collections and the young
    generation is collected 70x less often — tagging makes millions of short-lived, acyclic
    tuples, and the collector took 5–10% of the CPU time of raw text → records. Restored on
    exit. Process-wide while it lasts."""
    import gc

    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def load(path: str | Path | Sequence[str | Path] | None = None, tokenizer: str = "default") -> NER:
    """A run directory (its model.npz) or a model file → NER; ``None`` means ``runs/latest``
    (relative to the working directory); a list of several → their ensemble
    (windowner.ensemble; the first one's metadata and card). ``tokenizer`` names an entry of
    ``windowner.tokenizer.TOKENIZERS`` (``default``, ``whitespace``, ``spacy``)."""
    from windowner.runs import resolve_model

    if isinstance(path, list | tuple) and len(path) > 1:
        from windowner.ensemble import Ensemble

        files = [resolve_model(Path(p)) for p in path]
        _, _, meta = load_checkpoint(files[0])
        ner = NER(Ensemble.load(files), files[0], meta, tokenizer)
        ner.sources = [str(f) for f in files]
        return ner
    if isinstance(path, list | tuple):
        path = path[0] if path else None

    model_file = resolve_model(None if path is None else Path(path))
    tagger, _, meta = load_checkpoint(model_file)
    return NER(tagger, model_file, meta, tokenizer)

"""Evaluation of a Tagger: used by training (dev F1 per epoch, the summary), ``windowner eval``,
``windowner report`` and the benchmarks.

Where to change what: the per-split numbers are ``evaluate_split`` (entity P/R/F1 from
windowner.metrics, plus the ranking model's pairwise accuracy); ``evaluate_file`` is what
``windowner eval`` calls; the ranking model's untyped ``ENT`` spans are ``untyped`` and
``ranking_tags``; warnings about tags training never saw are ``unseen_tags_message``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Container, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from windowner.corpus import Sentence, read_conll
from windowner.errors import UsageError
from windowner.metrics import evaluate, get_entities
from windowner.windows import Encoded, NegativeSampler

if TYPE_CHECKING:
    from windowner.tagger import Tagger

ENTITY = "ENT"
RANKING_SEED = 12345  # the corrupted windows of ranking_accuracy: the same every epoch


# ----------------------------------------------------------------------------- entity helpers


def untyped(tags: Sequence[str]) -> list[str]:
    """IOB2 tags with every type replaced by ``ENT`` (for the ranking model's span F1)."""
    return [t if t == "O" else t[:2] + ENTITY for t in tags]


def ranking_tags(is_entity: np.ndarray, bounds: np.ndarray) -> list[list[str]]:
    """Entity/non-entity decisions (N,) → untyped IOB2 tags: each run of entity tokens is
    one ``ENT`` span."""
    out = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        tags, prev = [], False
        for flag in is_entity[a:b]:
            tags.append(("I-" if prev else "B-") + ENTITY if flag else "O")
            prev = bool(flag)
        out.append(tags)
    return out


def entity_records(tokens: Sequence[str], tags: Sequence[str]) -> list[dict[str, Any]]:
    """Entity spans as dicts: text, type, start, end (token offsets, end exclusive)."""
    return [
        {"text": " ".join(tokens[s:e]), "type": kind, "start": s, "end": e}
        for kind, s, e in get_entities(tags)
    ]


def gold_tags(tagger: Tagger, sents: Sequence[Sentence]) -> list[list[str]]:
    """The gold tags as the tagger predicts them (untyped for a ranking model)."""
    gold = [list(s.tags) for s in sents]
    return [untyped(g) for g in gold] if tagger.objective == "ranking" else gold


# ----------------------------------------------------------------------------- scores


def evaluate_split(tagger: Tagger, sents: list[Sentence], enc: Encoded) -> dict[str, Any]:
    """Entity P/R/F1 (untyped spans for a ranking model), token accuracy, and for ranking the
    pairwise ranking accuracy."""
    scores = tagger.scores(enc)
    pred = tagger.tag_encoded(enc, scores)
    result = evaluate(gold_tags(tagger, sents), pred).to_dict()
    if tagger.objective == "ranking":
        result["ranking_accuracy"] = ranking_accuracy(tagger, enc, scores)
    return result


def ranking_accuracy(tagger: Tagger, enc: Encoded, scores: np.ndarray) -> float:
    """% of (entity window, center-corrupted window) pairs scored in the right order; the
    corruption draws from a fixed seed so the number is comparable across epochs."""
    entity = np.flatnonzero(enc.tags > 0)
    if len(entity) == 0:
        return 0.0
    sampler = NegativeSampler(enc, len(tagger.words), "center", 1)
    words, caps = enc.windows(entity)
    neg_w, neg_c = sampler.sample(words, caps, np.random.default_rng(RANKING_SEED))
    s_c = tagger.model.scores(neg_w, neg_c)[:, 0]
    return 100.0 * float(np.mean(scores[entity, 0] > s_c))


def unseen_tags_message(name: str, sents: list[Sentence], known: Container[str]) -> str | None:
    """A warning (with counts) about tags that training never saw, or None."""
    unseen = Counter(t for s in sents for t in s.tags if t not in known)
    if not unseen:
        return None
    listed = ", ".join(f"{t} ×{n}" for t, n in sorted(unseen.items()))
    return f"warning: {name} has tags never seen in training ({listed}); they are scored as errors"


def report_unseen_tags(
    name: str, sents: list[Sentence], tags: Container[str], log: Callable[[str], None]
) -> None:
    """Warn through ``log`` (with counts) about tags that training never saw."""
    message = unseen_tags_message(name, sents, tags)
    if message:
        log(message)


def evaluate_file(
    model_path: str | Path | Sequence[str | Path],
    data_path: str | Path | None = None,
    warn: Callable[[str], None] | None = None,
    threads: str | int = "auto",
) -> dict[str, Any]:
    """Scores of the model file (several files: their ensemble, windowner.ensemble) on a
    CoNLL file (default: the dev set the first model's run trained with), with the file's
    name under ``"data"``; unseen-tag warnings go to ``warn``, and so does the BLAS thread
    choice (``threads``: auto or N, windowner.threads) when it was measured."""
    from windowner.ensemble import load_tagger
    from windowner.threads import scoring_threads

    paths = [model_path] if isinstance(model_path, str | Path) else list(model_path)
    tagger = load_tagger(paths)
    stored = tagger.config.get("data", {})
    if data_path is None:
        if not stored.get("dev"):
            raise UsageError("the model's run has no dev set; give --data FILE")
        data_path = stored["dev"]
    data_path = Path(data_path)
    sents = read_conll(data_path, "auto")  # any of IOB1/IOB2/IOBES, scored as IOB2 spans
    if warn is not None and tagger.objective != "ranking":
        report_unseen_tags(str(data_path), sents, tagger.tags, warn)
    with scoring_threads(threads, tagger.model.spec, sum(len(s.tokens) for s in sents), warn):
        result = evaluate_split(tagger, sents, tagger.encode(sents))
    result["data"] = str(data_path)
    return result

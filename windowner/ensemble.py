"""Ensembles: several trained taggers score every token, their scores are averaged, and the
average is decoded once (Viterbi with hard IOB2 constraints, or the first model's decoder).

    ensemble = Ensemble.load(["runs/a/model.npz", "runs/b/model.npz"])
    ensemble.tag([["Museums", "in", "Paris"]])

How scores are averaged (per token, so a token's result never depends on the rest of the
input):
- every member is a softmax model: the mean of the members' tag probabilities; the ensemble's
  scores are the log of that mean (so it decodes as a softmax model);
- every member is a sentence-level model of one objective (``crf`` or ``structured``): the
  mean of the members' window scores AND of their transitions (A, start, end), decoded once by
  Viterbi with those mean transitions (plus the IOB2 rules when the first member decodes with
  them). A path's mean score is the mean of the members' path scores, so for ``crf`` members
  the decoded path maximises the mean of log p_m(path | sentence) (log Z_m does not depend on
  the path): the geometric mean of the members' path probabilities (log-linear pooling). Mean
  emissions alone would decode without the transitions that carry much of a crf model's
  decision (its window argmax is ~72 F1 on CoNLL-2003 dev);
- otherwise (window-level hinge models among them): each member's scores are standardized per
  token across the tags, (s − mean) / std, then averaged; the ensemble decodes as a hinge model.
  Sentence-level and window-level members cannot be mixed (UsageError).
Members must predict the same tag set (columns are reordered to the first member's order);
ranking models, which score entities rather than tags, cannot be ensembled. Each member
encodes the text with its own vocabulary and features, so the models may differ in anything
else (window, features, embeddings).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from windowner.corpus import Sentence
from windowner.decode import allowed_transitions
from windowner.errors import UsageError
from windowner.nn.crf import Transitions
from windowner.nn.losses import SENTENCE_OBJECTIVES, log_softmax
from windowner.tagger import Tagger, decode_scores, token_sentences
from windowner.windows import Encoded

STD_FLOOR = 1e-12  # a token whose scores are all equal standardizes to zeros


@dataclass(frozen=True)
class EnsembleEncoded:
    """One encoding of the same sentences per member (their vocabularies differ)."""

    parts: tuple[Encoded, ...]

    @property
    def sent_bounds(self) -> np.ndarray:
        return self.parts[0].sent_bounds

    @property
    def tags(self) -> np.ndarray:
        return self.parts[0].tags

    @property
    def n_tokens(self) -> int:
        return self.parts[0].n_tokens


class Ensemble:
    """Taggers whose per-token scores are averaged: ``encode``, ``scores``, ``tag_encoded``
    and ``tag`` as a Tagger has them."""

    def __init__(self, members: Sequence[Tagger], names: Sequence[str] | None = None) -> None:
        if not members:
            raise UsageError("an ensemble needs at least one model")
        names = (
            [str(n) for n in names]
            if names is not None
            else [f"model {i + 1}" for i in range(len(members))]
        )
        for name, member in zip(names, members, strict=True):
            if member.objective == "ranking":
                raise UsageError(
                    f"{name} is a ranking model: only tag-scoring models can be ensembled"
                )
        first = members[0]
        self.members = list(members)
        self.columns = [
            _columns(first.tags, m.tags, names[0], n) for m, n in zip(members, names, strict=True)
        ]
        self.tags = list(first.tags)
        self.decode = first.decode
        self.threshold = 0.0
        self.config = first.config
        self.model = first.model  # its spec sizes the BLAS thread choice (windowner.threads)
        self.objective = _pooled_objective(members, names)
        sentence = self.objective in SENTENCE_OBJECTIVES
        self.temperature = float(np.mean([m.temperature for m in members])) if sentence else 1.0

    @classmethod
    def load(cls, paths: Sequence[str | Path]) -> Ensemble:
        return cls([Tagger.load(p) for p in paths], [str(p) for p in paths])

    @property
    def output_tags(self) -> list[str]:
        return self.tags

    def encode(self, sentences: Sequence[Sentence]) -> EnsembleEncoded:
        return EnsembleEncoded(tuple(m.encode(sentences) for m in self.members))

    def member_scores(self, encoded: EnsembleEncoded) -> list[np.ndarray]:
        """Each member's (N, C) float64 scores, columns in the ensemble's tag order."""
        return [
            m.scores(part).astype(np.float64)[:, cols]
            for m, part, cols in zip(self.members, encoded.parts, self.columns, strict=True)
        ]

    def scores(self, encoded: EnsembleEncoded) -> np.ndarray:
        """(N, C) averaged scores: log mean probability (all softmax) or the mean of the
        per-token standardized scores (see the module docstring)."""
        each = self.member_scores(encoded)
        if self.objective in SENTENCE_OBJECTIVES:
            return np.mean(each, axis=0)
        if self.objective == "softmax":
            mean = np.mean([np.exp(log_softmax(s)) for s in each], axis=0)
            with np.errstate(divide="ignore"):
                return np.log(mean)
        return np.mean([standardize(s) for s in each], axis=0)

    def path_transitions(self) -> Transitions:
        """Sentence-level members: the mean of their A (C, C), start and end (C,), in the
        ensemble's tag order, plus the IOB2 rules when ``decode`` is "viterbi"."""
        means = {}
        for name in ("A", "start", "end"):
            each = []
            for m, cols in zip(self.members, self.columns, strict=True):
                p = m.model.params[name].astype(np.float64)
                each.append(p[np.ix_(cols, cols)] if p.ndim == 2 else p[cols])
            means[name] = np.mean(each, axis=0)
        rules = allowed_transitions(self.tags) if self.decode == "viterbi" else None
        return Transitions(means["A"], means["start"], means["end"], rules)

    def tag_encoded(
        self, encoded: EnsembleEncoded, scores: np.ndarray | None = None
    ) -> list[list[str]]:
        scores = self.scores(encoded) if scores is None else scores
        return decode_scores(self, scores, encoded.sent_bounds)

    def tag(
        self, token_lists: Sequence[Sequence[str]], docs: Sequence[int] | None = None
    ) -> list[list[str]]:
        """Tags of token lists; ``docs``: their document numbers (default: one document)."""
        return self.tag_encoded(self.encode(token_sentences(token_lists, docs)))


def _pooled_objective(members: Sequence[Tagger], names: Sequence[str]) -> str:
    """How the members' scores are pooled: "softmax" (all softmax), "crf"/"structured" (all
    that sentence-level objective), else "multiclass" (standardized); UsageError for a mix of
    sentence-level and other members."""
    objectives = [m.objective for m in members]
    if all(o == "softmax" for o in objectives):
        return "softmax"
    sentence = [o in SENTENCE_OBJECTIVES for o in objectives]
    if all(sentence) and len(set(objectives)) == 1:
        return objectives[0]
    if any(sentence):
        pairs = ", ".join(f"{n} ({o})" for n, o in zip(names, objectives, strict=True))
        raise UsageError(
            f"cannot ensemble {pairs}: sentence-level models (crf, structured) decode with "
            "their transitions and can only be ensembled with models of the same objective"
        )
    return "multiclass"


def standardize(scores: np.ndarray) -> np.ndarray:
    """(N, C) scores → per row (s − mean) / std (std floored at ``STD_FLOOR``)."""
    centered = scores - scores.mean(axis=1, keepdims=True)
    std = np.sqrt(np.mean(centered * centered, axis=1, keepdims=True))
    return centered / np.maximum(std, STD_FLOOR)


def _columns(tags: Sequence[str], other: Sequence[str], name: str, other_name: str) -> np.ndarray:
    """Column of each of ``tags`` in ``other``'s scores; UsageError when the sets differ."""
    if sorted(tags) != sorted(other):
        missing = sorted(set(tags) ^ set(other))
        raise UsageError(
            f"{other_name} predicts other tags than {name} ({', '.join(missing)} in only one): "
            "an ensemble needs the same tag set"
        )
    index = {t: i for i, t in enumerate(other)}
    return np.array([index[t] for t in tags], dtype=np.int64)


def load_tagger(paths: Sequence[str | Path]) -> Any:
    """One model file → its Tagger; several → their Ensemble."""
    if len(paths) == 1:
        return Tagger.load(paths[0])
    return Ensemble.load(paths)

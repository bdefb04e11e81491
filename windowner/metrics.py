"""Entity-level precision/recall/F1 with conlleval's semantics, and token accuracy.

A chunk starts at ``B-X``, at ``I-X`` after ``O`` or after a chunk of another type, and ends
where the next token does not continue it — exactly as conlleval (and seqeval's default mode)
read IOB tags. An entity is a (type, start, end) triple; a prediction counts only when the
type and both boundaries match.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


def _split(tag: str) -> tuple[str, str]:
    if tag == "O" or len(tag) < 2:
        return "O", ""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Chunks of a tag sequence as (type, start, end) with ``end`` exclusive."""
    entities = []
    start, prev_prefix, prev_type = None, "O", ""
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, kind = _split(tag)
        ends = start is not None and (
            prefix in ("O", "B") or kind != prev_type or prev_prefix == "O"
        )
        if ends:
            entities.append((prev_type, start, i))
            start = None
        begins = prefix == "B" or (prefix == "I" and (start is None or kind != prev_type))
        if begins:
            start = i
        prev_prefix, prev_type = prefix, kind
    return entities


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float
    n_gold: int
    n_pred: int
    n_correct: int


def prf(correct: int, n_pred: int, n_gold: int) -> Scores:
    """Precision, recall and F1 in percent (0 where undefined, as conlleval prints)."""
    p = 100.0 * correct / n_pred if n_pred else 0.0
    r = 100.0 * correct / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return Scores(p, r, f, n_gold, n_pred, correct)


@dataclass(frozen=True)
class Evaluation:
    overall: Scores
    per_type: dict[str, Scores]
    token_accuracy: float
    n_sentences: int
    n_tokens: int
    confusion: dict[tuple[str, str], int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        def scores(s: Scores) -> dict:
            return {
                "precision": s.precision,
                "recall": s.recall,
                "f1": s.f1,
                "n_gold": s.n_gold,
                "n_pred": s.n_pred,
                "n_correct": s.n_correct,
            }

        out = scores(self.overall)
        out["per_type"] = {k: scores(v) for k, v in sorted(self.per_type.items())}
        out["token_accuracy"] = self.token_accuracy
        out["n_sentences"] = self.n_sentences
        out["n_tokens"] = self.n_tokens
        return out


def evaluate(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> Evaluation:
    """Score predicted tag sequences against gold ones, sentence by sentence."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    n_gold, n_pred, n_correct = Counter(), Counter(), Counter()
    confusion: Counter[tuple[str, str]] = Counter()
    right = total = 0
    for g, p in zip(gold, pred, strict=True):
        if len(g) != len(p):
            raise ValueError("gold and predicted sentences differ in length")
        g_ents, p_ents = set(get_entities(g)), set(get_entities(p))
        n_gold.update(e[0] for e in g_ents)
        n_pred.update(e[0] for e in p_ents)
        n_correct.update(e[0] for e in g_ents & p_ents)
        right += sum(a == b for a, b in zip(g, p, strict=True))
        total += len(g)
        confusion.update(zip(g, p, strict=True))
    types = sorted(set(n_gold) | set(n_pred))
    per_type = {t: prf(n_correct[t], n_pred[t], n_gold[t]) for t in types}
    overall = prf(sum(n_correct.values()), sum(n_pred.values()), sum(n_gold.values()))
    accuracy = 100.0 * right / total if total else 0.0
    return Evaluation(overall, per_type, accuracy, len(gold), total, dict(confusion))

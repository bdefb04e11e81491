"""Entity metrics with conlleval semantics, compared with seqeval's default mode."""

import numpy as np
import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

from windowner.metrics import evaluate, get_entities


def test_entities_like_conlleval():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-ORG", "I-ORG", "B-MISC"]
    assert get_entities(tags) == [
        ("PER", 0, 2),
        ("LOC", 3, 5),
        ("LOC", 5, 6),
        ("ORG", 6, 8),
        ("MISC", 8, 9),
    ]


@pytest.mark.parametrize("seed", range(20))
def test_matches_seqeval_on_random_sequences(seed):
    rng = np.random.default_rng(seed)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]
    gold = [[tags[i] for i in rng.integers(0, 6, rng.integers(1, 12))] for _ in range(30)]
    pred = [[t if rng.random() < 0.6 else tags[rng.integers(0, 6)] for t in g] for g in gold]
    ours = evaluate(gold, pred)
    assert ours.overall.precision == pytest.approx(100 * precision_score(gold, pred))
    assert ours.overall.recall == pytest.approx(100 * recall_score(gold, pred))
    assert ours.overall.f1 == pytest.approx(100 * f1_score(gold, pred))
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    for kind, s in ours.per_type.items():
        if s.n_gold:
            assert s.f1 == pytest.approx(100 * report[kind]["f1-score"])

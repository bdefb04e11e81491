"""Sub-word features (windowner/features.py): affixes, word shapes, their vocabularies."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from windowner.corpus import SPECIALS, UNK_ID, Vocab, normalize_word, read_conll
from windowner.features import (
    AFFIX_LENGTHS,
    FeatureVocabs,
    feature_functions,
    prefix,
    suffix,
    word_shape,
)

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.mark.parametrize(
    ("word", "shape"),
    [
        ("Obama", "Xxx"),
        ("USA", "XX"),
        ("12-34", "dd-dd"),
        ("1984", "dd"),
        ("e.g.", "x.x."),
        ("U.S.", "X.X."),
        ("McDonald's", "XxXxx'x"),
        ("iPhone", "xXxx"),
        ("Zürich", "Xxx"),
        ("", ""),
    ],
)
def test_word_shape_examples(word: str, shape: str) -> None:
    assert word_shape(word) == shape


def test_short_shape_collapses_every_run() -> None:
    assert [word_shape(w, max_run=1) for w in ("Obama", "USA", "12-34")] == ["Xx", "X", "d-d"]
    with pytest.raises(ValueError, match="max_run"):
        word_shape("x", max_run=0)


@given(st.text(max_size=30), st.integers(1, 4))
def test_shape_runs_never_exceed_max_run(word: str, max_run: int) -> None:
    shape = word_shape(word, max_run)
    assert len(shape) <= len(word)
    assert all(len(list(run)) <= max_run for _, run in itertools.groupby(shape))
    others = {c for c in word if not c.isalnum()}
    assert set(shape) <= {"X", "x", "d"} | others


@given(st.text(max_size=30))
def test_shape_with_long_runs_allowed_maps_each_character(word: str) -> None:
    assert len(word_shape(word, max_run=max(1, len(word)))) == len(word)


@given(st.text(min_size=1, max_size=20), st.integers(1, 6))
def test_affixes_are_ends_of_the_normalised_word(word: str, n: int) -> None:
    norm = normalize_word(word)
    p, s = prefix(word, n), suffix(word, n)
    assert norm.startswith(p) and norm.endswith(s)
    assert len(p) == len(s) == min(n, len(norm))


def test_affix_examples() -> None:
    assert prefix("Washington", 3) == "was" and suffix("Washington", 3) == "ton"
    assert prefix("1984", 2) == "00" and suffix("of", 4) == "of"


def test_feature_names_follow_the_lengths() -> None:
    names = list(feature_functions((2, 3)))
    assert names == ["prefix2", "suffix2", "prefix3", "suffix3", "shape"]
    with pytest.raises(ValueError, match="affix lengths"):
        feature_functions((0,))


def embedded_tokens(name: str) -> list[list[str]]:
    return [s.tokens for s in read_conll(DATA / name)]


def test_vocabs_from_the_embedded_corpus_know_every_training_value() -> None:
    train = embedded_tokens("train.conll")
    vocabs = FeatureVocabs.build(train)
    assert set(vocabs.sizes()) == set(feature_functions(AFFIX_LENGTHS))
    for name, vocab in vocabs.vocabs.items():
        assert tuple(vocab.items[: len(SPECIALS)]) == SPECIALS, name
    ids = vocabs.ids(train[0])
    assert all(len(a) == len(train[0]) and a.dtype == np.int32 for a in ids.values())
    assert all(np.all(a != UNK_ID) for a in ids.values())
    # more distinct 4-letter suffixes than 2-letter ones, and far fewer shapes than words
    sizes = vocabs.sizes()
    assert sizes["suffix2"] < sizes["suffix4"]
    assert sizes["shape"] < len({t for s in train for t in s})


def test_unseen_values_get_unk_and_rare_ones_are_dropped() -> None:
    vocabs = FeatureVocabs.build([["Paris", "Paris", "London"]], lengths=(2,), min_count=2)
    ids = vocabs.ids(["Paris", "London", "Qatar"])
    assert ids["prefix2"].tolist() == [len(SPECIALS), UNK_ID, UNK_ID]
    assert ids["shape"].tolist() == [len(SPECIALS)] * 3  # "Xxx" seen 3 times


def test_texts_round_trip_gives_the_same_ids() -> None:
    train, dev = embedded_tokens("train.conll"), embedded_tokens("dev.conll")
    vocabs = FeatureVocabs.build(train, min_count=2)
    again = FeatureVocabs.from_texts(vocabs.to_texts())
    for tokens in dev[:20]:
        got, want = again.ids(tokens), vocabs.ids(tokens)
        assert all(np.array_equal(got[k], want[k]) for k in want)
    with pytest.raises(ValueError, match="feature vocabularies"):
        FeatureVocabs.from_texts(vocabs.to_texts(), lengths=(2, 3))


@given(
    st.lists(st.lists(st.sampled_from(["Paris", "paris", "EU", "Ab1", "x", "Éa", "1999"]))),
    st.integers(1, 3),
)
def test_build_counts_every_occurrence_of_every_value(sentences, min_count):
    """Vocabularies built from distinct tokens equal those of counting every token's values."""
    built = FeatureVocabs.build(sentences, lengths=(2, 3), min_count=min_count)
    for name, func in feature_functions((2, 3)).items():
        counts = Counter(func(t) for tokens in sentences for t in tokens)
        assert built.vocabs[name].items == Vocab.from_counts(counts, min_count).items, name

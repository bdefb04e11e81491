"""Properties checked with hypothesis: CoNLL round trips, tag schemes, metrics, window arrays."""

import io
import warnings
from functools import partial

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities as seqeval_entities

from windowner.corpus import (
    END_ID,
    START_ID,
    Sentence,
    Vocab,
    caps_feature,
    iob1_to_iob2,
    normalize_word,
    parse_conll,
    read_conll,
    tag_vocab,
    word_counts,
    write_conll,
)
from windowner.metrics import evaluate, get_entities
from windowner.train import encode_stream
from windowner.windows import encode

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TYPES = ["PER", "LOC", "ORG", "MISC", "X"]

# A token: any non-empty text without whitespace, control or separator characters.
tokens = st.text(st.characters(blacklist_categories=("Z", "C")), min_size=1, max_size=12).filter(
    lambda t: t != "-DOCSTART-" and len(t.split()) == 1
)
any_tag = st.one_of(
    st.just("O"), st.builds(lambda p, t: f"{p}-{t}", st.sampled_from("BI"), st.sampled_from(TYPES))
)
tag_seqs = st.lists(any_tag, min_size=1, max_size=25)


@st.composite
def sentences(draw, max_sentences=8):
    out = []
    for _ in range(draw(st.integers(1, max_sentences))):
        tags = draw(tag_seqs)
        words = draw(st.lists(tokens, min_size=len(tags), max_size=len(tags)))
        out.append(Sentence(tuple(words), tuple(iob1_to_iob2(tags))))
    return out


@PROPERTY
@given(sentences())
def test_conll_write_then_read_round_trips(sents):
    buf = io.StringIO()
    write_conll(buf, sents)
    back = list(parse_conll(buf.getvalue().splitlines()))
    assert [(s.tokens, s.tags) for s in back] == [(s.tokens, s.tags) for s in sents]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sents=sentences(), crlf=st.booleans(), spaces=st.booleans())
def test_conll_files_round_trip_through_disk(tmp_path, sents, crlf, spaces):
    path = tmp_path / "round.conll"
    write_conll(path, sents)
    text = path.read_text(encoding="utf-8")
    if spaces:
        text = text.replace("\t", "  ")
    if crlf:
        text = text.replace("\n", "\r\n")
    path.write_bytes(text.encode("utf-8"))
    assert [(s.tokens, s.tags) for s in read_conll(path)] == [(s.tokens, s.tags) for s in sents]


@PROPERTY
@given(tag_seqs)
def test_iob1_to_iob2_keeps_entity_spans_and_is_stable(iob1):
    iob2 = iob1_to_iob2(iob1)
    assert get_entities(iob2) == get_entities(iob1)
    assert iob1_to_iob2(iob2) == iob2
    for prev, tag in zip(["O", *iob2], iob2, strict=False):
        if tag.startswith("I-"):  # in IOB2 an I-X always continues an X chunk
            assert prev != "O" and prev[2:] == tag[2:]
    assert sorted(get_entities(iob2)) == sorted(
        (t, s, e + 1) for t, s, e in seqeval_entities(list(iob2))
    )


@st.composite
def gold_and_pred(draw):
    gold = draw(st.lists(tag_seqs, min_size=1, max_size=10))
    pred = [draw(st.lists(any_tag, min_size=len(g), max_size=len(g))) for g in gold]
    return gold, pred


@PROPERTY
@given(gold_and_pred())
def test_entity_scores_equal_seqeval_default_mode(pair):
    gold, pred = pair
    ours = evaluate(gold, pred).overall
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns where a score is undefined (0 then)
        assert ours.precision == pytest.approx(100 * precision_score(gold, pred))
        assert ours.recall == pytest.approx(100 * recall_score(gold, pred))
        assert ours.f1 == pytest.approx(100 * f1_score(gold, pred))


def _encode(sents, window):
    vocab = Vocab.from_counts(word_counts(sents, normalize_word))
    tags = tag_vocab(sents)
    return encode(sents, vocab, tags, window, normalize_word), vocab, tags


@PROPERTY
@given(sentences(), st.sampled_from([1, 3, 5, 7, 9]))
def test_window_arrays_keep_shape_and_padding(sents, window):
    enc, vocab, tags = _encode(sents, window)
    half = window // 2
    n = sum(len(s.tokens) for s in sents)
    words, caps = enc.windows()
    assert words.shape == caps.shape == (n, window)
    assert words.dtype == caps.dtype == np.int32
    assert enc.sent_bounds.tolist()[0] == 0 and enc.sent_bounds[-1] == n
    assert len(enc.words) == len(enc.caps) == n + 2 * half * len(sents)
    for s, sent in enumerate(sents):
        a, b = enc.sent_bounds[s], enc.sent_bounds[s + 1]
        assert b - a == len(sent.tokens)
        for i, token in enumerate(sent.tokens):
            row, crow = words[a + i], caps[a + i]
            assert row[half] == vocab.id(normalize_word(token))
            assert crow[half] == caps_feature(token)
            assert enc.tags[a + i] == tags.id(sent.tags[i], -1)
            for j in range(window):
                k = i + j - half  # the position in the sentence this column looks at
                if k < 0:
                    assert row[j] == START_ID and crow[j] == 0
                elif k >= len(sent.tokens):
                    assert row[j] == END_ID and crow[j] == 0
                else:  # inside the sentence: never a neighbour from another sentence
                    assert row[j] == vocab.id(normalize_word(sent.tokens[k]))


@PROPERTY
@given(sentences(max_sentences=12), st.sampled_from([1, 3, 5]), st.integers(1, 5))
def test_streamed_encoding_equals_encoding_at_once(sents, window, chunk):
    whole, vocab, tags = _encode(sents, window)
    enc = partial(encode, word_vocab=vocab, tag_vocab=tags, window=window, normalize=normalize_word)
    n_tokens = sum(len(s.tokens) for s in sents)
    streamed = encode_stream(iter(sents), len(sents), n_tokens, enc, window, "x", chunk)
    for name in ("words", "caps", "centers", "tags", "sent_bounds"):
        a, b = getattr(whole, name), getattr(streamed, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name

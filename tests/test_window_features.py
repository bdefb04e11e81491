"""Extra window features (prefix/suffix/shape embedding tables): the reference and the fast
path agree, gradients check in float64, encoding lays the ids out like the words, model files
keep the vocabularies, configs turn them on and refuse what cannot work."""

import numpy as np
import pytest

from windowner import gradcheck as gc
from windowner.config import load_config, model_spec
from windowner.corpus import END_ID, SPECIALS, START_ID, Sentence, Vocab, normalize_word
from windowner.errors import ConfigError, ModelFileError
from windowner.features import FeatureVocabs
from windowner.nn.activations import ACTIVATIONS
from windowner.nn.fast import train_step
from windowner.nn.losses import OBJECTIVES
from windowner.optim.optimizers import Optimizer, OptimizerSettings
from windowner.tagger import Tagger
from windowner.windows import encode

from .helpers import (
    assert_grads_close,
    covering_pairs,
    make_batch,
    make_feature_model,
    with_feats,
)

TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def shapes(model):
    return {k: v.shape for k, v in model.params.items()}


# ----------------------------------------------------------------------------- the model


def test_feature_tables_and_input_width():
    model = make_feature_model()
    spec, p = model.spec, model.params
    assert p["E_affix"].shape == (13, 3) and p["E_shape"].shape == (6, 2)
    assert spec.input_dim == 5 * (4 + 2 + 4 * 3 + 2) == p["W"].shape[1]
    assert spec.feature_columns == (slice(0, 4), slice(4, 5))


def test_reference_x_holds_each_table_block_in_order():
    model = make_feature_model()
    batch = with_feats(
        make_batch(model.spec, np.random.default_rng(0)), model.spec, np.random.default_rng(1)
    )
    x, cache = model._embed(batch.words, batch.caps)
    x, _ = model._embed_features(x, cache, batch.feats)
    start = 5 * (4 + 2)
    spec = model.spec
    tables = zip(spec.feature_params, spec.feature_dims, spec.feature_columns, strict=True)
    for name, dim, cols in tables:
        k = cols.stop - cols.start
        block = x[:, start : start + 5 * k * dim].reshape(len(x), 5, k, dim)
        np.testing.assert_array_equal(block, model.params[name][batch.feats[:, :, cols]])
        start += 5 * k * dim
    assert start == x.shape[1]


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("activation", ["tanh", "relu", "hardtanh", "leaky_relu"])
def test_fast_path_equals_reference_with_features(activation, objective):
    model = make_feature_model(
        activation=activation,
        objective=objective,
        keep_prob=0.7,
        input_keep_prob=0.8,
        l2=0.01,
        l2_embeddings=True,
    )
    rng = np.random.default_rng(1)
    batch = with_feats(make_batch(model.spec, rng, k=2), model.spec, rng)
    rng_ref, rng_fast = np.random.default_rng(5), np.random.default_rng(5)
    loss_ref, ref = model.loss_and_grads(batch, rng_ref)
    loss, got = model.loss_and_grads_fast(batch, rng_fast)
    assert loss == pytest.approx(loss_ref, rel=1e-12)
    assert {"E_affix", "E_shape"} <= set(got)
    assert_grads_close(ref, got, shapes(model), rtol=1e-12, atol=1e-15)
    assert rng_ref.bit_generator.state == rng_fast.bit_generator.state


@pytest.mark.parametrize("kw", [{"caps_dim": 0, "train_embeddings": False}, {"window": 3}])
def test_fast_path_features_alone_and_window_3(kw):
    """Only the feature tables train (no caps, frozen words); and another window width."""
    model = make_feature_model(**kw)
    rng = np.random.default_rng(2)
    batch = with_feats(make_batch(model.spec, rng, n=40), model.spec, rng)
    loss_ref, ref = model.loss_and_grads(batch)
    loss, got = model.loss_and_grads_fast(batch)
    assert loss == pytest.approx(loss_ref, rel=1e-12)
    assert_grads_close(ref, got, shapes(model), rtol=1e-12, atol=1e-15)


def test_scores_equal_forward_with_features():
    model = make_feature_model("float32")
    rng = np.random.default_rng(3)
    batch = with_feats(make_batch(model.spec, rng, n=150), model.spec, rng)
    expected = model.forward(batch.words, batch.caps, feats=batch.feats)[0]
    got = model.scores(batch.words, batch.caps, batch_size=64, feats=batch.feats)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_train_step_updates_only_the_used_feature_rows():
    """Adam's lazy rows: a table row no window used keeps its value."""
    model = make_feature_model(keep_prob=1.0)
    rng = np.random.default_rng(4)
    batch = with_feats(make_batch(model.spec, rng, n=3), model.spec, rng)
    before = {k: v.copy() for k, v in model.params.items()}
    train_step(model, batch, Optimizer(OptimizerSettings("adam")), 0.01, rng)
    for name, cols in zip(model.spec.feature_params, model.spec.feature_columns, strict=True):
        used = np.unique(batch.feats[:, :, cols])
        unused = np.setdiff1d(np.arange(len(before[name])), used)
        assert not np.allclose(model.params[name][used], before[name][used])
        np.testing.assert_array_equal(model.params[name][unused], before[name][unused])


def test_missing_feats_is_a_clear_error():
    model = make_feature_model()
    batch = make_batch(model.spec, np.random.default_rng(0))
    with pytest.raises(ValueError, match="need batch feats"):
        model.loss_and_grads(batch)
    with pytest.raises(ValueError, match="need feats"):
        model.scores(batch.words, batch.caps)


# ----------------------------------------------------------------------------- gradient checks


@pytest.mark.parametrize(("activation", "objective"), covering_pairs(list(ACTIVATIONS), OBJECTIVES))
def test_gradcheck_covers_the_feature_tables(activation, objective):
    spec = make_feature_model(
        activation=activation,
        objective=objective,
        l2=0.01,
        l2_embeddings=True,
        keep_prob=0.8,
        input_keep_prob=0.9,
    ).spec
    results = gc.run_for_spec(spec, seed=1, limit=None)
    assert {"E_affix", "E_shape"} <= {r.param for r in results}
    for r in results:
        assert r.max_rel_error < 1e-6 and r.n_checked > 0, r


def test_gradcheck_catches_a_wrong_feature_gradient(monkeypatch):
    """Scale the feature tables' gradient: the checker reports exactly those tables."""
    from windowner.nn.model import WindowScorer

    real = WindowScorer._features_backward

    def wrong(self, dx, cache):
        return {k: type(g)(g.ids, 1.01 * g.rows) for k, g in real(self, dx, cache).items()}

    monkeypatch.setattr(WindowScorer, "_features_backward", wrong)
    results = gc.run_for_spec(make_feature_model().spec, seed=1, limit=None)
    assert {r.param for r in results if not r.ok} == {"E_affix", "E_shape"}


def test_gradcheck_of_a_config_with_features(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("features: {affix_dim: 2, affix_min: 3, affix_max: 3, shape_dim: 2}\n")
    results = gc.run_for_config(path)
    assert {"E_affix", "E_shape"} <= {r.param for r in results}
    assert all(r.ok for r in results)


# ----------------------------------------------------------------------------- encoding and files


SENTS = [
    Sentence(("Museums", "in", "Paris"), ("O", "O", "B-LOC")),
    Sentence(("Obama",), ("B-PER",)),
]


def vocabs():
    return FeatureVocabs.build([s.tokens for s in SENTS], lengths=(2, 3))


def test_encode_lays_feature_ids_out_like_words():
    """Each column is a feature's id plus its offset in its table; padding is <s>/</s>."""
    feats = vocabs()
    words = Vocab([*SPECIALS, "museums", "in", "paris"])
    tables = ("affix", "shape")
    names = ("prefix2", "suffix2", "prefix3", "suffix3", "shape")
    assert feats.columns(tables) == names
    sizes = feats.sizes()
    offsets = [0, sizes["prefix2"], sizes["prefix2"] + sizes["suffix2"]]
    offsets += [offsets[2] + sizes["prefix3"], 0]
    np.testing.assert_array_equal(feats.offsets(tables), offsets)
    assert feats.table_rows(tables) == {
        "affix": offsets[3] + sizes["suffix3"],
        "shape": sizes["shape"],
    }
    enc = encode(SENTS, words, Vocab(TAGS), 5, normalize_word, feats, tables)
    assert enc.feats.shape == (len(enc.words), 5)
    for special in (START_ID, END_ID):
        pad = enc.words == special
        np.testing.assert_array_equal(enc.feats[pad], special + np.array([offsets] * pad.sum()))
    got = enc.feats[enc.centers]
    tokens = [t for s in SENTS for t in s.tokens]
    raw = np.array([feats.token_ids(t, names) for t in tokens])
    np.testing.assert_array_equal(got, raw + offsets)
    assert feats.token_ids("Paris", ("suffix3",)) == (feats.vocabs["suffix3"].id("ris"),)
    windows = enc.feature_windows(np.array([1]))
    assert windows.shape == (1, 5, 5)
    np.testing.assert_array_equal(windows[0], enc.feats[enc.centers[1] - 2 : enc.centers[1] + 3])
    assert encode(SENTS, words, Vocab(TAGS), 5, normalize_word).feature_windows() is None


@pytest.mark.parametrize("lengths", [[], [0], [0, 2, 0], [1, 0, 3]])
def test_encode_with_features_lays_out_empty_sentences_and_corpora(lengths):
    """No sentence, or empty ones among others: the same layout as the words, one row each."""
    feats, words = vocabs(), Vocab([*SPECIALS, "museums", "in", "paris"])
    pool = iter(["Museums", "in", "Paris", "in", "Paris"])
    sents = [Sentence(tuple(next(pool) for _ in range(n)), ("O",) * n) for n in lengths]
    enc = encode(sents, words, Vocab(TAGS), 5, normalize_word, feats, ("affix", "shape"))
    assert enc.feats.shape == (len(enc.words), 5) and len(enc.words) == sum(lengths) + 4 * len(
        lengths
    )
    assert len(enc.centers) == sum(lengths) and enc.sent_bounds.tolist() == [0, *np.cumsum(lengths)]
    np.testing.assert_array_equal(enc.feats[:, 4] == START_ID, enc.words == START_ID)


def feature_tagger():
    feats = vocabs()
    rows = feats.table_rows(("affix", "shape"))
    words = Vocab([*SPECIALS, "museums", "in", "paris"])
    tables = {"affix": (rows["affix"], 2, 4), "shape": (rows["shape"], 3, 1)}
    model = make_feature_model(tables=tables, vocab_size=len(words), n_out=len(TAGS))
    return Tagger(model=model, words=words, tags=TAGS, features=feats)


def test_a_model_with_features_saves_loads_and_tags_identically(tmp_path):
    tagger = feature_tagger()
    tagger.save(tmp_path / "m.npz")
    back = Tagger.load(tmp_path / "m.npz")
    assert back.features.to_texts() == tagger.features.to_texts()
    assert back.model.spec == tagger.model.spec
    tokens = [["Museums", "in", "Paris", "Xyzzy"], ["Obama"]]
    sentences = [Sentence(tuple(t), ("O",) * len(t)) for t in tokens]
    np.testing.assert_array_equal(
        back.scores(back.encode(sentences)), tagger.scores(tagger.encode(sentences))
    )
    assert back.tag(tokens) == tagger.tag(tokens)


def test_a_model_file_without_its_feature_vocabularies_is_refused(tmp_path):
    tagger = feature_tagger()
    tagger.features = None
    tagger.save(tmp_path / "m.npz")
    with pytest.raises(ModelFileError, match="vocabularies of the features"):
        Tagger.load(tmp_path / "m.npz")


def test_a_feature_vocabulary_of_the_wrong_size_is_refused(tmp_path):
    tagger = feature_tagger()
    tagger.features = FeatureVocabs.build([["a", "b"]], lengths=(2, 3))
    tagger.save(tmp_path / "m.npz")
    with pytest.raises(ModelFileError, match="feature table affix has"):
        Tagger.load(tmp_path / "m.npz")


# ----------------------------------------------------------------------------- config


def test_config_turns_features_on(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("features: {affix_dim: 4, affix_min: 2, affix_max: 3, shape_dim: 3}\n")
    conf = load_config(path)
    assert conf.features.table_names() == ("affix", "shape")
    spec = model_spec(conf, 20, 5, {"affix": 30, "shape": 10})
    assert spec.feature_names == ("affix", "shape") and spec.feature_dims == (4, 3)
    assert spec.feature_slots == (4, 1) and spec.feature_rows == (30, 10)
    assert spec.input_dim == 5 * (50 + 5 + 4 * 4 + 3)
    assert load_config().features.table_names() == ()  # off by default


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["features.affix_dim=2", "features.affix_min=4", "features.affix_max=3"], "affix_max"),
        (["features.shape_dim=2", "negatives.k=1"], "corrupted windows cannot"),
        (["features.affix_dim=-1"], "affix_dim: must be >= 0"),
    ],
)
def test_config_refuses_impossible_features(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_token_ids_are_the_feature_functions_values():
    from windowner.features import feature_functions

    feats = FeatureVocabs.build([["Paris", "paris", "1984", "e.g.", "Zoë", "x"]] * 2, (2, 3, 4))
    funcs = feature_functions((2, 3, 4))
    for token in ["Paris", "PARIS", "1984", "e.g.", "Zoë", "x", "unseen", ""]:
        expected = tuple(feats.vocabs[n].id(f(token)) for n, f in funcs.items())
        assert feats.token_ids(token, tuple(funcs)) == expected, token

"""Activations, layers, losses and the whole model against central differences."""

from dataclasses import fields, replace

import numpy as np
import pytest

from windowner import gradcheck as gc
from windowner.config import Config, EmbeddingsConfig, FeaturesConfig, ModelConfig, model_spec
from windowner.corpus import CAPS_CLASSES
from windowner.nn import layers, losses
from windowner.nn.activations import ACTIVATIONS, DERIVATIVES, KINKS
from windowner.nn.initializers import init_weight
from windowner.nn.model import Batch, ModelSpec, WindowScorer

from .helpers import covering_pairs


def numeric(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for ix in np.ndindex(x.shape):
        old = x[ix]
        x[ix] = old + eps
        plus = f(x)
        x[ix] = old - eps
        minus = f(x)
        x[ix] = old
        grad[ix] = (plus - minus) / (2 * eps)
    return grad


def away_from_kinks(name, rng, shape):
    z = rng.uniform(-3, 3, size=shape)
    for k in KINKS[name]:
        z = np.where(np.abs(z - k) < 0.05, z + 0.2, z)
    return z


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_derivative_matches_numeric(name):
    rng = np.random.default_rng(1)
    z = away_from_kinks(name, rng, (50,))
    slope = 0.05
    a = ACTIVATIONS[name](z, slope)
    num = np.array(
        [
            (
                ACTIVATIONS[name](np.array([v + 1e-6]), slope)[0]
                - ACTIVATIONS[name](np.array([v - 1e-6]), slope)[0]
            )
            / 2e-6
            for v in z
        ]
    )
    np.testing.assert_allclose(DERIVATIVES[name](a, slope), num, rtol=1e-6, atol=1e-8)


def test_activation_formulas_correct_the_notes():
    z = np.array([-2.0, -0.5, 0.5, 2.0])
    np.testing.assert_allclose(ACTIVATIONS["hardtanh"](z), [-1.0, -0.5, 0.5, 1.0])
    a = ACTIVATIONS["softsign"](z)
    np.testing.assert_allclose(DERIVATIVES["softsign"](a), 1 / (1 + np.abs(z)) ** 2)
    np.testing.assert_allclose(ACTIVATIONS["sigmoid"](z), 1 / (1 + np.exp(-z)))


def test_affine_and_linear_backward():
    rng = np.random.default_rng(0)
    x, W, b = rng.normal(size=(4, 6)), rng.normal(size=(3, 6)), rng.normal(size=3)
    dz = rng.normal(size=(4, 3))
    z, cache = layers.affine_forward(x, W, b)
    dx, dW, db = layers.affine_backward(dz, cache)

    def f_of(which):
        def f(v):
            args = {"x": x, "W": W, "b": b}
            args[which] = v
            return float(np.sum(layers.affine_forward(args["x"], args["W"], args["b"])[0] * dz))

        return f

    np.testing.assert_allclose(dx, numeric(f_of("x"), x.copy()), rtol=1e-6)
    np.testing.assert_allclose(dW, numeric(f_of("W"), W.copy()), rtol=1e-6)
    np.testing.assert_allclose(db, numeric(f_of("b"), b.copy()), rtol=1e-6)
    U = rng.normal(size=(6, 2))
    ds = rng.normal(size=(4, 2))
    _, lc = layers.linear_forward(x, U)
    da, dU = layers.linear_backward(ds, lc)
    np.testing.assert_allclose(
        dU, numeric(lambda u: float(np.sum((x @ u) * ds)), U.copy()), rtol=1e-6
    )
    np.testing.assert_allclose(da, ds @ U.T)


def test_embedding_backward_is_sparse_and_sums_repeats():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(1000, 3))
    ids = np.array([[5, 7, 5], [7, 999, 5]])
    out, cache = layers.embedding_forward(table, ids)
    assert out.shape == (2, 9)
    dout = rng.normal(size=(2, 9))
    g = layers.embedding_backward(dout, cache)
    assert g.ids.tolist() == [5, 7, 999]
    assert g.rows.shape == (3, 3)  # never a vocabulary-sized array
    dense = gc.dense_grad(g, table.shape)
    f = lambda t: float(np.sum(layers.embedding_forward(t, ids)[0] * dout))  # noqa: E731
    np.testing.assert_allclose(dense[[5, 7, 999]], numeric(f, table.copy())[[5, 7, 999]], rtol=1e-6)


def test_dropout_is_inverted_and_off_without_mask():
    rng = np.random.default_rng(0)
    mask = layers.dropout_mask(rng, (20000,), 0.8, np.float64)
    assert set(np.unique(mask)) <= {0.0, 1.25}
    assert abs(mask.mean() - 1.0) < 0.02
    x = np.ones(5)
    assert layers.dropout_forward(x, None)[0] is x
    np.testing.assert_allclose(
        layers.dropout_backward(np.ones(3), np.array([0, 2.0, 0])), [0, 2, 0]
    )


def test_losses_by_hand():
    scores = np.array([[1.0, 2.0, 0.5]])
    loss, d = losses.multiclass_hinge(scores.copy(), np.array([0]), 1.0)
    # margins: c=1: 1 + 2 - 1 = 2; c=2: 1 + 0.5 - 1 = 0.5
    assert loss == pytest.approx(2.5)
    np.testing.assert_allclose(d, [[-2.0, 1.0, 1.0]])
    loss, d_true, d_c = losses.ranking_hinge(np.array([2.0, 0.0]), np.array([1.5, -3.0]), 1.0)
    assert loss == pytest.approx((0.5 + 0.0) / 2)
    np.testing.assert_allclose(d_true, [-0.5, 0.0])
    np.testing.assert_allclose(d_c, [0.5, 0.0])
    loss, d = losses.softmax_cross_entropy(np.array([[0.0, 0.0]]), np.array([1]))
    assert loss == pytest.approx(np.log(2))
    np.testing.assert_allclose(d, [[0.5, -0.5]])


@pytest.mark.parametrize(
    ("activation", "objective"), covering_pairs(list(ACTIVATIONS), losses.OBJECTIVES)
)
def test_whole_model_gradcheck(activation, objective):
    results = gc.run_default((activation,), (objective,), caps_dim=2)
    transitions = {"A", "start", "end"} if objective in losses.SENTENCE_OBJECTIVES else set()
    assert {r.param for r in results} == {"E_word", "E_caps", "W", "b", "U"} | transitions
    for r in results:
        assert r.max_rel_error < 1e-6, r
        assert r.n_checked > 0


@pytest.mark.parametrize("l2,keep", [(0.0, 1.0), (0.05, 1.0), (0.0, 0.5)])
def test_gradcheck_without_l2_or_dropout(l2, keep):
    for objective in losses.OBJECTIVES:
        model, batch, mask, rng = gc.safe_example("tanh", objective, 3, l2=l2, keep_prob=keep)
        for name, (err, _, _) in gc.check_example(model, batch, mask, rng).items():
            assert err < 1e-6, (objective, name, err)


def test_broken_backward_is_caught(monkeypatch):
    """Flip the sign of the hidden layer's δ: the checker must report large errors."""
    real = layers.activation_backward
    monkeypatch.setattr(layers, "activation_backward", lambda da, cache: -real(da, cache))
    results = gc.run_default(("tanh",), ("multiclass",))
    bad = {r.param for r in results if not r.ok}
    assert {"W", "b", "E_word"} <= bad
    assert max(r.max_rel_error for r in results) > 0.5


def test_broken_l2_is_caught(monkeypatch):
    """Use λ||W|| (not squared) gradient: caught on W and U."""
    original = WindowScorer._l2

    def wrong(self, grads):
        value = original(self, grads)
        for name in ("W", "U"):
            grads[name] = grads[name] - self.spec.l2 * self.params[name]
        return value

    monkeypatch.setattr(WindowScorer, "_l2", wrong)
    results = gc.run_default(("sigmoid",), ("softmax",))
    assert {r.param for r in results if not r.ok} == {"W", "U"}


def test_xavier_uniform_bound_and_variance():
    rng = np.random.default_rng(0)
    W = init_weight("xavier_uniform", rng, 200, 300, dtype=np.float64)
    bound = np.sqrt(6 / 500)
    assert W.shape == (200, 300)
    assert np.abs(W).max() <= bound
    assert np.abs(W).max() > 0.99 * bound
    assert W.var() == pytest.approx(bound**2 / 3, rel=0.03)
    assert abs(W.mean()) < 0.003


@pytest.mark.parametrize(
    "name,var",
    [
        ("xavier_normal", 2 / 500),
        ("he_uniform", 2 / 300),
        ("he_normal", 2 / 300),
        ("uniform", 0.2**2 / 3),
        ("normal", 0.2**2),
    ],
)
def test_initializer_variances(name, var):
    W = init_weight(name, np.random.default_rng(0), 200, 300, scale=0.2, dtype=np.float64)
    assert W.var() == pytest.approx(var, rel=0.03)


def test_unknown_initializer_lists_choices():
    with pytest.raises(KeyError, match="xavier_uniform"):
        init_weight("glorot", np.random.default_rng(0), 2, 2)


def test_model_float32_by_default_and_scores_shape():
    spec = ModelSpec(vocab_size=30, n_out=9, window=5, word_dim=6, caps_dim=2, hidden=7)
    model = WindowScorer.create(spec, np.random.default_rng(0))
    assert all(p.dtype == np.float32 for p in model.params.values())
    words = np.random.default_rng(1).integers(0, 30, (11, 5))
    caps = np.zeros((11, 5), dtype=np.int64)
    assert model.scores(words, caps).shape == (11, 9)
    loss, grads = model.loss_and_grads(Batch(words, caps, np.zeros(11, dtype=np.int64)))
    assert np.isfinite(loss)
    assert grads["W"].dtype == np.float32


def test_model_spec_takes_every_shared_field_from_the_config():
    """ModelSpec fields named like a features/model config field are derived from it, field by
    field; the others are set explicitly. Non-default config values prove each one is read."""
    model = ModelConfig(
        hidden=17, activation="relu", leaky_slope=0.2, keep_prob=0.6, input_keep_prob=0.9,
        objective="softmax", margin=2.0, l2=0.3, l2_embeddings=True, dtype="float64",
    )  # fmt: skip
    features = FeaturesConfig(window=3, caps_dim=4, affix_dim=6, affix_min=3, affix_max=4)
    features = replace(features, shape_dim=2)
    embeddings = EmbeddingsConfig(dim=7, train=False)
    config = Config(model=model, features=features, embeddings=embeddings)
    rows = {"affix": 11, "shape": 13}
    spec = model_spec(config, vocab_size=123, n_tags=9, feature_rows=rows)
    explicit = {
        "vocab_size": 123,
        "n_out": 9,
        "word_dim": 7,
        "train_embeddings": False,
        "caps_classes": len(CAPS_CLASSES),
        "feature_names": ("affix", "shape"),
        "feature_dims": (6, 2),
        "feature_rows": (11, 13),
        "feature_slots": (4, 1),
    }
    for f in fields(ModelSpec):
        if f.name in explicit:
            assert getattr(spec, f.name) == explicit[f.name], f.name
            continue
        source = model if hasattr(model, f.name) else features
        assert getattr(spec, f.name) == getattr(source, f.name), f.name
        assert getattr(spec, f.name) != f.default, f.name  # a non-default value was read
    ranking = replace(config, model=replace(model, objective="ranking"))
    assert model_spec(ranking, 5, 9, rows).n_out == 1


def test_caps_table_has_caps_classes_rows():
    spec = ModelSpec(vocab_size=10, n_out=3, caps_dim=2, caps_classes=4)
    assert WindowScorer.create(spec, np.random.default_rng(0)).params["E_caps"].shape == (4, 2)
    assert ModelSpec(vocab_size=10, n_out=3).caps_classes == len(CAPS_CLASSES)  # old files

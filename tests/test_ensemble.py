"""Ensembles: averaged per-token scores (probabilities for softmax models, standardized scores
otherwise), one decode, the same tag set required; ``eval``/``predict`` with several --model."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from windowner.cli import app
from windowner.corpus import SPECIALS, Sentence, Vocab
from windowner.ensemble import Ensemble, standardize
from windowner.errors import UsageError
from windowner.nn.losses import log_softmax
from windowner.nn.model import ModelSpec, WindowScorer
from windowner.tagger import Tagger

from .conftest import strip_ansi

TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
WORDS = ["museums", "in", "paris", "are", "amazing", "obama"]
TOKENS = [["Museums", "in", "Paris", "are", "amazing"], ["Obama", "in", "Paris"], ["x"]]


def tagger(seed, objective="softmax", tags=TAGS, decode="viterbi", window=5):
    words = Vocab([*SPECIALS, *WORDS])
    spec = ModelSpec(
        vocab_size=len(words), n_out=1 if objective == "ranking" else len(tags), window=window,
        word_dim=4, caps_dim=2, hidden=6, objective=objective, dtype="float64",
    )  # fmt: skip
    model = WindowScorer.create(spec, np.random.default_rng(seed), embed_scale=1.0)
    return Tagger(model=model, words=words, tags=list(tags), decode=decode)


def sentences():
    return [Sentence(tuple(t), ("O",) * len(t)) for t in TOKENS]


def test_softmax_members_average_probabilities():
    members = [tagger(0), tagger(1, window=3), tagger(2)]
    ens = Ensemble(members)
    assert ens.objective == "softmax"
    enc = ens.encode(sentences())
    probs = [
        np.exp(log_softmax(m.scores(m.encode(sentences())).astype(np.float64))) for m in members
    ]
    np.testing.assert_allclose(np.exp(ens.scores(enc)), np.mean(probs, axis=0), rtol=1e-12)
    np.testing.assert_allclose(np.exp(ens.scores(enc)).sum(axis=1), 1.0)


def test_one_softmax_member_tags_as_the_member():
    member = tagger(3)
    assert Ensemble([member]).tag(TOKENS) == member.tag(TOKENS)


def test_hinge_members_average_standardized_scores():
    members = [tagger(0, "multiclass"), tagger(1, "softmax")]
    ens = Ensemble(members)
    assert ens.objective == "multiclass"
    raw = [m.scores(m.encode(sentences())).astype(np.float64) for m in members]
    expected = (standardize(raw[0]) + standardize(raw[1])) / 2
    np.testing.assert_allclose(ens.scores(ens.encode(sentences())), expected, rtol=1e-12)
    z = standardize(raw[0])
    np.testing.assert_allclose(z.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=1), 1.0)
    assert np.all(standardize(np.ones((2, 3))) == 0.0)


def test_argmax_of_one_hinge_member_is_the_member():
    member = tagger(4, "multiclass", decode="argmax")
    assert Ensemble([member]).tag(TOKENS) == member.tag(TOKENS)


def test_members_with_the_tags_in_another_order_are_aligned():
    a = tagger(5)
    b = tagger(5, tags=TAGS[::-1])  # the same weights; its columns mean other tags
    b.model.params["U"] = a.model.params["U"][:, ::-1].copy()  # … now the same model
    ens = Ensemble([a, b])
    expected = log_softmax(a.scores(a.encode(sentences())).astype(np.float64))
    got = ens.scores(ens.encode(sentences()))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert ens.tag(TOKENS) == a.tag(TOKENS)


def test_other_tag_sets_and_ranking_models_are_refused():
    with pytest.raises(UsageError, match="same tag set"):
        Ensemble([tagger(0), tagger(1, tags=[*TAGS, "B-ORG"])], ["a.npz", "b.npz"])
    with pytest.raises(UsageError, match="b.npz is a ranking model"):
        Ensemble([tagger(0), tagger(1, "ranking")], ["a.npz", "b.npz"])
    with pytest.raises(UsageError, match="at least one"):
        Ensemble([])


def test_cli_eval_and_predict_with_several_models(tmp_path):
    paths = []
    for seed in (0, 1):
        member = tagger(seed)
        member.config = {"data": {"dev": None}}
        path = tmp_path / f"m{seed}.npz"
        member.save(path)
        paths.append(path)
    data = tmp_path / "dev.conll"
    data.write_text("Museums O\nin O\nParis B-LOC\n\nObama B-PER\n")
    runner = CliRunner()
    args = ["eval", "-m", str(paths[0]), "-m", str(paths[1]), "--data", str(data), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    ens = Ensemble.load(paths)
    from windowner.corpus import read_conll
    from windowner.evaluate import evaluate_split

    sents = read_conll(data)
    assert json.loads(result.stdout)["f1"] == evaluate_split(ens, sents, ens.encode(sents))["f1"]
    args = ["predict", "-m", str(paths[0]), "-m", str(paths[1]), "-f", "json", "Obama in Paris"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    explain = runner.invoke(app, [*args, "--explain"])
    assert explain.exit_code == 2
    assert "single --model" in strip_ansi(explain.output)


def crf_tagger(seed, objective="crf", tags=TAGS):
    """A sentence-level tagger with random (non-zero) transitions."""
    member = tagger(seed, objective, tags=tags)
    rng = np.random.default_rng(100 + seed)
    for name in ("A", "start", "end"):
        member.model.params[name] = rng.normal(size=member.model.params[name].shape)
    return member


def test_crf_members_average_scores_and_transitions():
    from windowner.decode import allowed_transitions, split_tags
    from windowner.nn.crf import Transitions, viterbi_decode

    members = [crf_tagger(0), crf_tagger(1)]
    ens = Ensemble(members)
    assert ens.objective == "crf"
    enc = ens.encode(sentences())
    raw = [m.scores(m.encode(sentences())).astype(np.float64) for m in members]
    np.testing.assert_allclose(ens.scores(enc), (raw[0] + raw[1]) / 2, rtol=1e-12)
    mean = {
        n: (members[0].model.params[n] + members[1].model.params[n]) / 2
        for n in ("A", "start", "end")
    }
    trans = Transitions(mean["A"], mean["start"], mean["end"], allowed_transitions(TAGS))
    ids = viterbi_decode((raw[0] + raw[1]) / 2, enc.sent_bounds, trans)
    assert ens.tag(TOKENS) == split_tags(ids, enc.sent_bounds, TAGS)


def test_one_crf_member_twice_tags_as_the_member_in_any_tag_order():
    a = crf_tagger(6)
    order = [4, 3, 2, 1, 0]
    b = crf_tagger(6, tags=[TAGS[i] for i in order])  # the same model with permuted columns
    b.model.params["U"] = a.model.params["U"][:, order].copy()
    b.model.params["A"] = a.model.params["A"][np.ix_(order, order)].copy()
    b.model.params["start"] = a.model.params["start"][order].copy()
    b.model.params["end"] = a.model.params["end"][order].copy()
    assert Ensemble([a, b]).tag(TOKENS) == a.tag(TOKENS)
    assert Ensemble([a, a]).tag(TOKENS) == a.tag(TOKENS)


def test_sentence_and_window_members_cannot_be_mixed():
    with pytest.raises(UsageError, match="sentence-level"):
        Ensemble([crf_tagger(0), tagger(1)])
    with pytest.raises(UsageError, match="sentence-level"):
        Ensemble([crf_tagger(0), crf_tagger(1, "structured")])

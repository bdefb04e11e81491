"""Sentence-level training (objectives crf and structured) wired into the model, the trainer,
the model files and decoding. The CRF math itself is tested in test_crf.py."""

import signal
from pathlib import Path

import numpy as np
import pytest

from windowner import config as cfg
from windowner.checkpoint import load_npz, save_npz
from windowner.decode import allowed_transitions, decode_sentences
from windowner.errors import ConfigError, ModelFileError
from windowner.nn.crf import Transitions, crf_loss, structured_hinge_loss, viterbi_decode
from windowner.nn.fast import train_step
from windowner.nn.losses import SENTENCE_OBJECTIVES
from windowner.nn.model import sentence_loss
from windowner.optim.optimizers import Optimizer, OptimizerSettings
from windowner.tagger import Tagger
from windowner.train import Interrupted, SilentReporter, Trainer, sentence_tokens

from .helpers import make_batch, make_model, outcome
from .tiny_runs import same_arrays, write_config

# ----------------------------------------------------------------------------- batching


def test_sentence_tokens_lists_the_tokens_of_each_sentence_in_order():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 6, 30)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    chosen = rng.permutation(30)[:11]
    idx, batch_bounds = sentence_tokens(bounds, chosen)
    expected = [t for s in chosen for t in range(bounds[s], bounds[s + 1])]
    assert idx.tolist() == expected
    assert np.diff(batch_bounds).tolist() == lengths[chosen].tolist()
    assert batch_bounds[0] == 0 and batch_bounds[-1] == len(idx)


def tiny_config(tmp_path: Path, objective: str = "crf", **changes) -> cfg.Config:
    path = write_config(
        tmp_path / "data",
        model__objective=objective,
        negatives__k=0,
        train__batch_size=4,
        train__epochs=3,
        **changes,
    )
    return cfg.load_config(path)


def test_batches_count_sentences_and_every_token_is_seen_once_per_epoch(tmp_path):
    config = tiny_config(tmp_path)
    trainer = Trainer(config, tmp_path / "run", SilentReporter())
    bounds = trainer.data.train_enc.sent_bounds
    n_sentences = int(np.count_nonzero(np.diff(bounds)))
    assert len(trainer.train_idx) == n_sentences
    assert trainer.n_batches == -(-n_sentences // 4)
    seen = []
    trainer._step = lambda idx, lr: seen.append(idx.copy()) or 0.0
    trainer._run_epoch()
    assert sorted(np.concatenate(seen).tolist()) == trainer.train_idx.tolist()
    assert trainer.state.windows_done == trainer.data.train_enc.n_tokens


def test_sentence_objectives_take_no_corrupted_windows(tmp_path):
    path = write_config(tmp_path, model__objective="structured", negatives__k=1)
    with pytest.raises(ConfigError, match="negatives.k: the structured objective"):
        cfg.load_config(path)


# ----------------------------------------------------------------------------- the objective


@pytest.mark.parametrize("objective", SENTENCE_OBJECTIVES)
def test_loss_is_the_sum_over_sentences_divided_by_the_tokens(objective):
    rng = np.random.default_rng(4)
    model = make_model(objective=objective)
    bounds = np.array([0, 3, 3, 7, 8, 13])
    scores, tags = rng.normal(size=(13, 5)), rng.integers(0, 5, 13)
    for name in ("A", "start", "end"):
        model.params[name] = rng.normal(size=model.params[name].shape)
    trans = Transitions(model.params["A"], model.params["start"], model.params["end"])
    loss, dscores, own = sentence_loss(model.spec, trans, scores, tags, bounds)
    per_sentence = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b > a:
            one = np.array([0, b - a])
            if objective == "crf":
                per_sentence.append(crf_loss(scores[a:b], tags[a:b], one, trans)[0])
            else:
                per_sentence.append(structured_hinge_loss(scores[a:b], tags[a:b], one, trans, 1)[0])
    assert loss == pytest.approx(sum(per_sentence) / 13, rel=1e-12)
    # and the gradients scale the same way: nn/crf.py's mean over 4 sentences × 4/13
    mean_loss, g = (crf_loss if objective == "crf" else structured_hinge_loss)(
        scores, tags, bounds, trans, *([] if objective == "crf" else [1.0])
    )
    np.testing.assert_allclose(dscores, g.dscores * 4 / 13, rtol=1e-14)
    np.testing.assert_allclose(own["A"], g.dA * 4 / 13, rtol=1e-14)
    np.testing.assert_allclose(own["end"], g.dend * 4 / 13, rtol=1e-14)


def test_sentence_objectives_need_bounds():
    model = make_model(objective="crf")
    batch = make_batch(make_model().spec, np.random.default_rng(0))  # no bounds
    with pytest.raises(ValueError, match="needs sentence bounds"):
        model.loss_and_grads(batch)


@pytest.mark.parametrize("objective", SENTENCE_OBJECTIVES)
def test_train_steps_fast_equal_reference_with_transition_state(objective):
    """Adam on every parameter, A/start/end included; batches of several sizes."""
    fast, ref = make_model(objective=objective), make_model(objective=objective)
    for m in (fast, ref):
        m.constraints = allowed_transitions(["O", "B-LOC", "I-LOC", "B-PER", "I-PER"])
    opt_fast, opt_ref = Optimizer(OptimizerSettings("adam")), Optimizer(OptimizerSettings("adam"))
    data = np.random.default_rng(8)
    for n in (13, 5, 13, 9):
        batch = make_batch(fast.spec, data, n=n)
        batch = type(batch)(batch.words, batch.caps, valid_tags(batch.tags), bounds=batch.bounds)
        train_step(fast, batch, opt_fast, 0.05)
        _, grads = ref.loss_and_grads(batch)
        opt_ref.step(ref.params, grads, 0.05)
    assert {"A.m", "A.v", "start.m", "end.v"} <= set(opt_fast.state)
    assert np.abs(fast.params["A"]).sum() > 0
    for k in ref.params:
        np.testing.assert_allclose(fast.params[k], ref.params[k], rtol=1e-10, atol=1e-12)
    for k in opt_ref.state:
        np.testing.assert_allclose(opt_fast.state[k], opt_ref.state[k], rtol=1e-9, atol=1e-12)
    # the transitions the IOB2 rules forbid get no gradient, so they stay exactly 0
    allowed, allowed_start = fast.constraints
    assert np.all(fast.params["A"][~allowed] == 0) and np.all(
        fast.params["start"][~allowed_start] == 0
    )


def valid_tags(tags: np.ndarray) -> np.ndarray:
    """Random ids → ids of O/B-LOC/B-PER only, a path the IOB2 rules always allow."""
    return np.array([0, 1, 3])[tags % 3]


# ----------------------------------------------------------------------------- runs and files


@pytest.fixture(scope="module")
def crf_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("sll")
    config = tiny_config(base)
    Trainer(config, base / "one-go", SilentReporter()).run()
    return config, base


def test_model_file_holds_the_transitions_and_decodes_with_them(crf_run):
    config, base = crf_run
    tagger = Tagger.load(base / "one-go" / "model.npz")
    C = len(tagger.tags)
    assert tagger.model.params["A"].shape == (C, C)
    assert tagger.model.params["start"].shape == tagger.model.params["end"].shape == (C,)
    assert np.abs(tagger.model.params["A"]).max() > 0  # learned
    enc = tagger.encode(tagger_dev(config))
    scores = tagger.scores(enc)
    p = tagger.model.params
    for decode, constraints in (("viterbi", allowed_transitions(tagger.tags)), ("argmax", None)):
        tagger.decode = decode
        trans = Transitions(p["A"], p["start"], p["end"], constraints)
        ids = viterbi_decode(scores, enc.sent_bounds, trans)
        flat = [t for sent in tagger.tag_encoded(enc, scores) for t in sent]
        assert flat == [tagger.tags[i] for i in ids]
    # the transitions matter: with a large enough A the output is not the window-level Viterbi
    p["A"][...] = 0.0
    p["A"][:, 1] = 100.0  # everything wants to be followed by B-LOC
    tagger.decode = "viterbi"
    pred = tagger.tag_encoded(enc, scores)
    assert pred != decode_sentences(scores, enc.sent_bounds, tagger.tags)
    assert all(t == "B-LOC" for sent in pred for t in sent[1:])


def tagger_dev(config: cfg.Config):
    from windowner.corpus import read_conll

    return read_conll(config.data.dev, config.data.scheme)


@pytest.mark.parametrize("name,shape", [("A", (2, 2)), ("end", (1,))])
def test_model_file_with_wrong_transition_shapes_is_refused(crf_run, tmp_path, name, shape):
    _, base = crf_run
    arrays, meta = load_npz(base / "one-go" / "model.npz")
    arrays[f"param/{name}"] = np.zeros(shape, dtype=np.float32)
    meta = {k: v for k, v in meta.items() if k not in ("format", "version", "arrays")}
    save_npz(tmp_path / "bad.npz", arrays, meta)
    with pytest.raises(ModelFileError, match=f"parameter {name} is"):
        Tagger.load(tmp_path / "bad.npz")
    del arrays[f"param/{name}"]
    save_npz(tmp_path / "missing.npz", arrays, meta)
    with pytest.raises(ModelFileError, match=f"parameter {name} is missing"):
        Tagger.load(tmp_path / "missing.npz")


def test_training_uses_the_iob2_rules_only_when_decoding_does(crf_run, tmp_path):
    config, base = crf_run
    trainer = Trainer(config, base / "unused", SilentReporter())
    assert trainer.tagger.model.constraints is not None
    argmax = tiny_config(tmp_path, model__decode="argmax")
    assert Trainer(argmax, tmp_path / "unused", SilentReporter()).tagger.model.constraints is None


@pytest.mark.parametrize("objective", SENTENCE_OBJECTIVES)
def test_interrupted_sentence_level_run_resumes_bit_for_bit(tmp_path, objective):
    config = tiny_config(tmp_path, objective)
    Trainer(config, tmp_path / "one-go", SilentReporter()).run()
    run = tmp_path / "run"
    stopping = Trainer(config, run, SilentReporter())
    stop_at = stopping.n_batches + 2  # in the middle of epoch 2
    step = stopping._step

    def step_then_stop(idx, lr):
        loss = step(idx, lr)
        if stopping.state.step == stop_at:
            signal.raise_signal(signal.SIGINT)
        return loss

    stopping._step = step_then_stop
    with pytest.raises(Interrupted):
        stopping.run()
    Trainer(config, run, SilentReporter(), resume=True).run()
    got, expected = outcome(run), outcome(tmp_path / "one-go")
    assert "opt/A.m" in got["last"] and "loop/perm" in got["last"]
    assert same_arrays(got["last"], expected["last"])
    assert same_arrays(got["model"], expected["model"])
    assert got["metrics"] == expected["metrics"] and got["summary"] == expected["summary"]

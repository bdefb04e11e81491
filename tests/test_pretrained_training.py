"""Training with pretrained vectors: coverage, frozen rows kept for prediction, exact resume."""

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from windowner.cli import app
from windowner.tagger import Tagger

from .conftest import ROOT, embedded_data, strip_ansi

runner = CliRunner()
UNSEEN = ["zorblat", "quenfield"]  # not in data/train.conll


@pytest.fixture(scope="module")
def glove(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = ["paris", "london", "museums", "in", "the", "berlin", *UNSEEN, "tokyo", "said"]
    path = tmp_path_factory.mktemp("vec") / "tiny.txt"
    path.write_text(
        "".join(w + " " + " ".join(f"{v:.5f}" for v in rng.normal(size=8)) + "\n" for w in words),
        encoding="utf-8",
    )
    vectors = {
        line.split()[0]: np.array(line.split()[1:], dtype=np.float32)
        for line in path.read_text().splitlines()
    }
    return path, vectors


def train(out, glove_path, epochs):
    args = [
        "train",
        "--config",
        ROOT / "configs/adam.yaml",
        "--out",
        out,
        *embedded_data(test=False),
        "--set",
        f"embeddings.init={glove_path}",
        "--set",
        "embeddings.dim=8",
        "--set",
        "embeddings.keep_pretrained=100",
        "--set",
        f"train.epochs={epochs}",
        "--set",
        "model.hidden=16",
    ]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, strip_ansi(result.output)
    return strip_ansi(result.output)


def test_unseen_pretrained_words_are_kept_frozen_and_small(tmp_path, glove):
    path, vectors = glove
    text = train(tmp_path / "run", path, 2)
    assert "of 1749 training-vocabulary words found" in text
    assert "2 more kept for prediction" in text
    with np.load(tmp_path / "run/model.npz", allow_pickle=False) as npz:
        assert npz["frozen/E_word"].dtype == np.float16
        assert npz["frozen/E_word"].shape == (2, 8)
        assert npz["param/E_word"].shape == (1749, 8)
    tagger = Tagger.load(tmp_path / "run/model.npz")
    assert tagger.frozen_rows == 2
    for word in UNSEEN:
        row = tagger.model.params["E_word"][tagger.words.id(word)]
        np.testing.assert_array_equal(row, vectors[word].astype(np.float16).astype(np.float32))


@pytest.mark.slow
def test_resume_with_frozen_rows_is_exact(tmp_path, glove):
    path, _ = glove
    train(tmp_path / "straight", path, 2)
    train(tmp_path / "split", path, 1)
    config = tmp_path / "split/config.yaml"
    data = yaml.safe_load(config.read_text())
    data["train"]["epochs"] = 2
    config.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "split")])
    assert result.exit_code == 0, strip_ansi(result.output)
    with np.load(tmp_path / "straight/last.npz") as a, np.load(tmp_path / "split/last.npz") as b:
        for key in ("param/E_word", "frozen/E_word", "param/W", "opt/E_word.m", "opt/E_word.v"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)

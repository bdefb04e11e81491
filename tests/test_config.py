"""Config files and --set overrides: every problem reported together, with its key path."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from windowner import config as cfg
from windowner.cli import app
from windowner.errors import ConfigError

from .conftest import ROOT, strip_ansi, write

runner = CliRunner()


def problems_of(path: Path | None, overrides: list[str] = ()) -> list[str]:
    with pytest.raises(ConfigError) as info:
        cfg.load_config(path, list(overrides))
    return info.value.problems


def train_cli(*args) -> tuple[int, str]:
    result = runner.invoke(app, ["train", *map(str, args)])
    assert not isinstance(result.exception, AssertionError | TypeError | AttributeError)
    return result.exit_code, strip_ansi(result.output)


BAD = """\
seed: 0
modle:
  hidden: 10
model:
  hidden: 0
  keep_prob: 1.5
  activation: relux
  initializer: glorot
  objective: rank
  lr: 0.1
optimizer:
  name: adamw
  lr: -1
schedule:
  name: cosine
features:
  window: 4
train:
  epochs: 0
  batch_size: "32"
  shuffle: maybe
"""


def test_every_problem_of_a_file_is_reported_together_with_its_key_path(tmp_path):
    problems = problems_of(write(tmp_path / "bad.yaml", BAD))
    text = "\n".join(problems)
    expected = [
        "modle: unknown key; did you mean 'model'?",
        "model.lr: unknown key",
        "train.batch_size: expected an integer, got str '32'",
        "train.shuffle: expected true/false, got str 'maybe'",
        "model.hidden: must be > 0, got 0",
        "model.keep_prob: must be in (0, 1], got 1.5",
        "optimizer.lr: must be > 0, got -1.0",
        "features.window: must be a positive odd number, got 4",
        "train.epochs: must be > 0, got 0",
    ]
    for line in expected:
        assert line in text, line
    for key, valid in [
        ("model.activation", "sigmoid, tanh, hardtanh, softsign, relu, leaky_relu"),
        ("model.initializer", "xavier_uniform"),
        ("model.objective", "ranking, multiclass, softmax, crf, structured"),
        ("optimizer.name", "sgd, momentum, nesterov, adagrad, rmsprop, adam"),
        ("schedule.name", "constant, step, exponential, inverse"),
    ]:
        line = next(p for p in problems if p.startswith(f"{key}: unknown value"))
        assert valid in line, line
    assert len(problems) == 14


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("optimizer.lr", "0", "optimizer.lr: must be > 0"),
        ("optimizer.lr", "-0.5", "optimizer.lr: must be > 0"),
        ("model.keep_prob", "0", "model.keep_prob: must be in (0, 1]"),
        ("model.keep_prob", "1.01", "model.keep_prob: must be in (0, 1]"),
        ("features.window", "6", "features.window: must be a positive odd number"),
        ("features.window", "-3", "features.window: must be a positive odd number"),
        ("features.window", "0", "features.window: must be a positive odd number"),
        ("model.hidden", "0", "model.hidden: must be > 0"),
        ("model.hidden", "-5", "model.hidden: must be > 0"),
        ("train.epochs", "0", "train.epochs: must be > 0"),
        ("train.epochs", "2.5", "train.epochs: expected an integer, got float 2.5"),
        ("train.epochs", "true", "train.epochs: expected an integer, got bool True"),
        ("optimizer.lr", ".nan", "optimizer.lr: expected a finite number, got float nan"),
        ("optimizer.lr", ".inf", "optimizer.lr: expected a finite number"),
        ("optimizer.lr", "fast", "optimizer.lr: expected a finite number, got str 'fast'"),
        ("model.activation", "gelu", "model.activation: unknown value 'gelu'; choose from:"),
        ("model.initializer", "orthogonal", "model.initializer: unknown value 'orthogonal'"),
        ("optimizer.name", "lbfgs", "optimizer.name: unknown value 'lbfgs'; choose from:"),
        ("schedule.name", "cosine", "schedule.name: unknown value 'cosine'; choose from:"),
        ("model.objective", "hmm", "model.objective: unknown value 'hmm'; choose from:"),
        ("model.hiden", "3", "model.hiden: unknown key; did you mean 'model.hidden'?"),
        ("optimzer.lr", "3", "optimzer: unknown key; did you mean 'optimizer'?"),
    ],
)
def test_set_overrides_are_checked_like_the_file(key, value, message):
    problems = problems_of(None, [f"{key}={value}"])
    assert len(problems) == 1, problems
    assert problems[0].startswith(message), problems
    assert problems[0].endswith("(from --set)")


def test_nested_sections_of_the_wrong_type_name_their_key_path(tmp_path):
    path = write(tmp_path / "c.yaml", "model: 3\ntrain: [1, 2]\ndata:\n  train: 5\n")
    assert problems_of(path) == [
        "data.train: expected a string, got int 5",
        "model: expected a mapping of keys, got int 3",
        "train: expected a mapping of keys, got list [1, 2]",
    ]
    # A good value elsewhere is still checked while a section is broken.
    path = write(tmp_path / "d.yaml", "model: 3\noptimizer:\n  lr: 0\n")
    assert problems_of(path) == [
        "model: expected a mapping of keys, got int 3",
        "optimizer.lr: must be > 0, got 0.0",
    ]


def test_unknown_key_without_a_close_match_lists_the_valid_keys():
    (problem,) = problems_of(None, ["model.zzz=1"])
    assert "model.zzz: unknown key; valid keys in model: hidden, activation" in problem


@pytest.mark.parametrize(
    "text",
    [
        'seed: !!python/object/apply:os.system ["touch {marker}"]\n',
        "seed: !!python/object:collections.OrderedDict {{}}\n",
        "seed: !!python/name:os.system\n",
        "model: !custom {{hidden: 3}}\n",
    ],
)
def test_yaml_tags_are_refused_and_nothing_runs(tmp_path, text):
    marker = tmp_path / "PWNED"
    path = write(tmp_path / "evil.yaml", text.format(marker=marker))
    code, out = train_cli("--config", path)
    assert code == 2
    assert "is not allowed" in out and "Traceback" not in out
    assert not marker.exists()


def test_a_yaml_tag_in_set_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    problems = problems_of(None, [f'seed=!!python/object/apply:os.system ["touch {marker}"]'])
    assert len(problems) == 1 and "YAML tag '!!python/object/apply:os.system'" in problems[0]
    assert not marker.exists()


def test_yaml_syntax_errors_duplicate_keys_and_odd_files(tmp_path):
    with pytest.raises(ConfigError, match=r"b\.yaml:2: invalid YAML"):
        cfg.load_config(write(tmp_path / "b.yaml", "seed: 0\nmodel: hidden: 3\n"))
    with pytest.raises(ConfigError, match=r"dup\.yaml:3: duplicate key 'hidden'"):
        cfg.load_config(write(tmp_path / "dup.yaml", "model:\n  hidden: 3\n  hidden: 4\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping, got list"):
        cfg.load_config(write(tmp_path / "l.yaml", "- a\n- b\n"))
    with pytest.raises(ConfigError, match="no such file"):
        cfg.load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        cfg.load_config(tmp_path)
    (tmp_path / "bin.yaml").write_bytes(b"seed: \xff\n")
    with pytest.raises(ConfigError, match="undecodable"):
        cfg.load_config(tmp_path / "bin.yaml")
    assert cfg.load_config(write(tmp_path / "empty.yaml", "")) == cfg.Config()


def test_scientific_notation_without_a_dot_is_a_number(tmp_path):
    # YAML 1.1 reads 1e-3 as a string; a learning rate written that way must still work.
    path = write(tmp_path / "c.yaml", "optimizer:\n  lr: 1e-3\n  eps: 1E-8\n")
    config = cfg.load_config(path, ["schedule.tau=2e2"])
    assert config.optimizer.lr == 1e-3 and config.optimizer.eps == 1e-8
    assert config.schedule.tau == 200.0
    assert problems_of(None, ["train.epochs=1e3"])[0].startswith("train.epochs: expected an int")


def test_malformed_set_items(tmp_path):
    problems = problems_of(None, ["noequals", "=3", "model..hidden=3"])
    assert problems == [
        "--set 'noequals': expected key.path=value",
        "--set '=3': expected key.path=value",
        "--set 'model..hidden=3': expected key.path=value",
    ]


def test_cli_reports_all_problems_with_exit_2_and_no_traceback(tmp_path):
    path = write(tmp_path / "bad.yaml", BAD)
    code, out = train_cli("--config", path, "--set", "model.hiden=3", "--out", tmp_path / "run")
    assert code == 2
    assert f"error: {path}: 15 problems" in out
    assert "model.hiden: unknown key; did you mean 'model.hidden'? (from --set)" in out
    assert "Traceback" not in out
    assert not (tmp_path / "run").exists()


def test_shipped_configs_load():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        if "conll03" not in path.name:  # that one needs ${CONLL03_DIR} data only
            assert cfg.load_config(path).train.epochs > 0


def test_stored_config_round_trips():
    config = cfg.load_config(ROOT / "configs/seed.yaml")
    assert cfg.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="stored config: model.hidden: must be > 0"):
        cfg.from_dict({**config.to_dict(), "model": {**config.to_dict()["model"], "hidden": 0}})

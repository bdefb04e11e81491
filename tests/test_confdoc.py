"""``windowner config show``, the config reference in the README, and readable --help."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from windowner import confdoc
from windowner import config as cfg
from windowner.cli import app

from .conftest import ROOT, strip_ansi

runner = CliRunner()
README_START = "<!-- config-reference:"
README_END = "<!-- end config-reference -->"


def readme_reference() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(README_START)
    body = text[text.index("-->", start) + len("-->\n") : text.index(README_END)]
    return body


def test_readme_reference_is_the_generated_table():
    result = runner.invoke(app, ["config", "show", "--markdown"])
    assert result.exit_code == 0
    assert result.stdout == confdoc.markdown()
    assert readme_reference() == confdoc.markdown(), (
        "README's config reference is stale: paste `windowner config show --markdown` into it"
    )


def test_every_key_has_one_meaning_and_no_meaning_is_stale():
    keys = set(cfg.flatten(cfg.Config().to_dict()))
    assert keys == set(confdoc.HELP)
    assert all(text.strip() and "\n" not in text for text in confdoc.HELP.values())


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("model.keep_prob", ["KEEP", "Not a dropout rate"]),
        ("model.input_keep_prob", ["KEEP", "Not a dropout rate"]),
        ("negatives.k", ["per true window"]),
        ("negatives.power", ["unigram count ^ power"]),
    ],
)
def test_the_easily_misread_keys_are_explained(key, words):
    for word in words:
        assert word in confdoc.HELP[key]


def test_config_show_lists_every_key_with_value_default_and_meaning():
    result = runner.invoke(
        app,
        ["config", "show", "-c", str(ROOT / "configs/adam.yaml"), "--set", "model.hidden=7"],
    )
    assert result.exit_code == 0, result.output
    out = strip_ansi(result.stdout)
    for row in confdoc.rows():
        assert re.search(rf"^{re.escape(row.key)} = ", out, re.M), row.key
        assert row.help in out
    assert "model.hidden = 7   (default 100)" in out


def test_config_show_json_is_the_resolved_config():
    args = ["config", "show", "-c", str(ROOT / "configs/adam.yaml"), "--set", "train.epochs=3"]
    result = runner.invoke(app, [*args, "--json"])
    data = json.loads(result.stdout)
    expected = cfg.resolved(cfg.load_config(ROOT / "configs/adam.yaml", ["train.epochs=3"]))
    assert data["config"] == expected.to_dict()
    by_key = {row["key"]: row for row in data["keys"]}
    assert set(by_key) == set(confdoc.HELP)
    assert by_key["train.epochs"]["value"] == 3
    assert by_key["train.epochs"]["default"] == cfg.Config().train.epochs
    assert by_key["model.keep_prob"]["help"] == confdoc.HELP["model.keep_prob"]


def test_config_show_refuses_a_bad_key_like_train():
    result = runner.invoke(app, ["config", "show", "--set", "model.hiden=3"])
    assert result.exit_code == 2
    assert "did you mean 'model.hidden'" in strip_ansi(result.output)


COMMANDS = [[], ["train"], ["eval"], ["predict"], ["gradcheck"], ["report"], ["serve"],
            ["config"], ["config", "show"]]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "windowner")
def test_dash_h_is_help_and_placeholders_are_readable(command):
    short = runner.invoke(app, [*command, "-h"])
    long = runner.invoke(app, [*command, "--help"])
    assert short.exit_code == long.exit_code == 0
    assert short.stdout == long.stdout
    text = strip_ansi(long.stdout)
    assert "Usage:" in text and "-h, --help" in text
    assert not re.search(r"<[a-z\[\]|]+>", text), text  # no <path>, <list[str]>, <str>

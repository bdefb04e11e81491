"""predict streams: CoNLL in (file, TEXT or stdin) → CoNLL out line for line, --explain in
batches, and -f html as one page."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from windowner import cli, conllio
from windowner import html as html_module
from windowner.cli import app
from windowner.conllio import ConllDocument, stream_conll
from windowner.train import train

from .conftest import strip_ansi, write
from .helpers import tiny_config

runner = CliRunner()
MUSEUMS = "Museums in Paris are amazing . Camille Rousseau visited Berlin ."


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny model trained on the embedded corpus (helpers.tiny_config)."""
    run = tmp_path_factory.mktemp("stream") / "run"
    train(tiny_config(), {}, out_dir=run)
    return run / "model.npz"


def invoke(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args], input=stdin)
    return result.exit_code, result.stdout_bytes.decode("utf-8"), strip_ansi(result.stderr)


def fake_tags(token_lists: list[list[str]], docs: list[int] | None = None) -> list[list[str]]:
    """Deterministic IOB2 tags that depend on the tokens (B-PER for capitalised words)."""
    return [["B-PER" if t[:1].isupper() else "O" for t in tokens] for tokens in token_lists]


# ----------------------------------------------------------------------------- CoNLL stream

NOT_IN_TOKENS = "\r\n\t \x00"
TOKEN = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters=NOT_IN_TOKENS),
    min_size=1,
    max_size=5,
)
LINE = st.one_of(
    st.tuples(TOKEN, st.sampled_from([" ", "\t"]), st.sampled_from(["O", "B-LOC", "S-LOC"])).map(
        "".join
    ),
    TOKEN,
    st.sampled_from(["", "  ", "-DOCSTART- -X- O"]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(LINE, min_size=1, max_size=30), st.sampled_from(["\n", "\r\n", "\r"]), st.data())
def test_the_stream_renders_like_the_whole_document(lines, ending, data):
    text = ending.join(lines) + ending
    try:
        expected = ConllDocument.from_text(text)
    except Exception as exc:  # no token line: the stream refuses it the same way
        with pytest.raises(type(exc), match="nothing to tag"):
            list(stream_conll([text], "<input>", fake_tags))
        return
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    got = "".join(stream_conll(pieces, "<input>", fake_tags))
    assert got == expected.render(fake_tags(expected.sentences))


def test_the_stream_tags_whole_documents_with_their_numbers(monkeypatch):
    """Document features need whole documents: a batch never cuts one (unless it is longer
    than MAX_DOC_SENTENCES), and each sentence comes with its document's number."""
    monkeypatch.setattr(conllio, "BATCH_SENTENCES", 2)
    monkeypatch.setattr(conllio, "MAX_DOC_SENTENCES", 4)
    doc = "-DOCSTART- -X- O\n\n" + "A O\n\nB O\n\nC O\n\n"
    calls: list[list[int]] = []

    def tag(token_lists: list[list[str]], docs: list[int]) -> list[list[str]]:
        assert len(docs) == len(token_lists)
        calls.append(docs)
        return fake_tags(token_lists)

    long_doc = "-DOCSTART- -X- O\n\n" + "D O\n\n" * 6
    text = doc + doc + long_doc
    got = "".join(stream_conll([text], "<input>", tag))
    expected = ConllDocument.from_text(text)
    assert got == expected.render(fake_tags(expected.sentences))
    assert calls == [[0, 0, 0], [1, 1, 1], [2, 2, 2, 2], [3, 3]]


def test_the_stream_reads_lazily_and_batches_sentences(monkeypatch):
    monkeypatch.setattr(conllio, "HEAD_SENTENCES", 3)
    monkeypatch.setattr(conllio, "BATCH_SENTENCES", 2)
    read = itertools.count()

    def endless() -> Iterator[str]:
        for i in itertools.count():
            next(read)
            yield f"Word{i} B-PER\nword O\n\n"

    batches: list[int] = []

    def tag(token_lists: list[list[str]], docs: list[int]) -> list[list[str]]:
        batches.append(len(token_lists))
        return fake_tags(token_lists)

    first = next(stream_conll(endless(), "<stdin>", tag, whole_documents=False))
    assert first == "Word0 B-PER B-PER\nword O O\n\nWord1 B-PER B-PER\nword O O\n\n"
    assert batches == [2] and next(read) <= 6


def test_conll_on_stdin_is_the_file_passed_through(model, tmp_path):
    text = (
        "\ufeff-DOCSTART- -X- O\r\n\r\nCamille NNP S-PER\r\nvisited VBD O\rParis NNP S-LOC\n\nHi\n"
    )
    path = tmp_path / "odd.conll"
    path.write_bytes(text.encode("utf-8"))
    args = ["predict", "-m", model, "--input-format", "conll", "-f", "conll"]
    code, from_file, err = invoke(*args, "-i", path)
    assert code == 0, err
    code, from_stdin, err = invoke(*args, stdin=text.encode("utf-8"))
    assert code == 0, err
    code, from_dash, _ = invoke(*args, "-i", "-", stdin=text.encode("utf-8"))
    assert from_stdin == from_file == from_dash
    assert from_file.startswith("\ufeff-DOCSTART- -X- O O\r\n\r\nCamille NNP S-PER ")
    expected = ConllDocument.from_text(text.removeprefix("\ufeff"), bom=True)
    assert len(from_file.splitlines()) == len(expected.lines)
    code, from_text, _ = invoke(*args, "Paris O\nis O\n")
    assert code == 0 and from_text.startswith("Paris O ")


def test_a_files_scheme_is_read_from_the_whole_file_stdins_from_its_head(model, monkeypatch):
    monkeypatch.setattr(conllio, "HEAD_SENTENCES", 1)
    text = "Paris O\n\nRome O\n\nNew B-LOC\nYork E-LOC\n\nOslo S-LOC\n"
    args = ["predict", "-m", model, "--input-format", "conll", "-f", "conll"]
    code, whole, err = invoke(*args, text)
    assert code == 0, err
    expected = ConllDocument.from_text(text)
    assert expected.scheme == "iobes"
    assert whole == expected.render(cli_tags(model, expected.sentences))
    code, head_only, _ = invoke(*args, stdin=text.encode("utf-8"))
    assert code == 0
    expected.scheme = "iob2"  # the first sentence shows no S-/E- tag
    assert head_only == expected.render(cli_tags(model, expected.sentences))


def cli_tags(model: Path, sentences: list[list[str]]) -> list[list[str]]:
    from windowner.api import load

    return load(model).tag_tokens(sentences)


def test_conll_in_json_out_is_one_document_per_batch(model, monkeypatch):
    monkeypatch.setattr(conllio, "BATCH_SENTENCES", 2)
    conll = "".join(f"{w}\n\n" for w in ["Paris", "Berlin", "Rome"])
    code, out, err = invoke("predict", "-m", model, "--input-format", "conll", "-f", "json", conll)
    assert code == 0, err
    assert [len(d["sentences"]) for d in json.loads(out)] == [2, 1]
    code, _, err = invoke("predict", "-m", model, "--input-format", "conll", "\n\n-DOCSTART-\n")
    assert code == 2 and "nothing to tag" in err


# ----------------------------------------------------------------------------- --explain


def test_explain_streams_in_batches_with_the_same_output(model, tmp_path, monkeypatch):
    """One sentence at a time gives the same records (scores up to float32 rounding: BLAS
    sums a batch of one in another order)."""
    path = write(tmp_path / "in.txt", f"{MUSEUMS}\n\nBerlin is big .\n\nRome too .\n")
    outputs = {}
    for batch in (256, 1):
        monkeypatch.setattr(cli, "EXPLAIN_BATCH", batch)
        for fmt in ("json", "jsonl"):
            code, out, err = invoke("predict", "-m", model, "--explain", "-f", fmt, "-i", path)
            assert code == 0, err
            outputs[batch, fmt] = (
                json.loads(out)
                if fmt == "json"
                else [json.loads(line) for line in out.splitlines()]
            )
    records = outputs[256, "json"]
    assert outputs[256, "jsonl"] == records
    assert [r["tokens"][0] for r in records] == ["Museums", "Camille", "Berlin", "Rome"]
    assert all(len(r["explain"]) == len(r["tokens"]) for r in records)
    for one, whole in zip(outputs[1, "json"], records, strict=True):
        assert (one["tokens"], one["tags"], one["entities"]) == (
            whole["tokens"],
            whole["tags"],
            whole["entities"],
        )
        for a, b in zip(one["explain"], whole["explain"], strict=True):
            assert a["scores"] == pytest.approx(b["scores"], rel=1e-5, abs=1e-5)
    code, table, _ = invoke("predict", "-m", model, "--explain", "-i", path)
    assert "sentence 4" in table and "sentence 5" not in table


# ----------------------------------------------------------------------------- html


def test_html_is_one_page_with_every_entity(model, tmp_path):
    path = write(tmp_path / "in.txt", f"{MUSEUMS}\n\nAngela <Merkel> & Macron met in Rome .\n")
    code, page, err = invoke("predict", "-m", model, "-f", "html", "-i", path)
    assert code == 0, err
    assert page.startswith("<!doctype html>") and page.count("<html") == 1
    assert page.count('<div class="doc">') == 2
    assert "&lt;" in page and "&gt; &amp;" in page and "<Merkel" not in page
    code, out, _ = invoke("predict", "-m", model, "-f", "jsonl", "-i", path)
    n_entities = sum(len(json.loads(line)["entities"]) for line in out.splitlines())
    assert page.count('<mark class="ent"') == n_entities
    code, explained, _ = invoke("predict", "-m", model, "-f", "html", "--explain", MUSEUMS)
    assert code == 0 and 'class="tok"' in explained and "<script>" in explained


def test_html_refuses_a_big_input_before_writing(model, monkeypatch):
    monkeypatch.setattr(html_module, "HTML_MAX_CHARS", 20)
    code, out, err = invoke("predict", "-m", model, "-f", "html", MUSEUMS)
    assert code == 2 and out == ""
    assert "up to 20 characters" in err and "-f jsonl" in err

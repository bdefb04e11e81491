"""Tag schemes (IOB1, IOB2, IOBES; data.scheme: auto) and CoNLL in → CoNLL out for predict."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seqeval.metrics import f1_score
from typer.testing import CliRunner

from windowner.cli import app
from windowner.conllio import ConllDocument, looks_like_conll
from windowner.corpus import (
    SchemeEvidence,
    from_iob2,
    iob1_to_iob2,
    read_conll,
    to_iob2,
)
from windowner.errors import DataError, UsageError
from windowner.metrics import evaluate, get_entities
from windowner.train import train

from .conftest import ROOT, strip_ansi, write
from .helpers import tiny_config

runner = CliRunner()

iob2_tags = st.lists(st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]), max_size=30).map(
    iob1_to_iob2
)


def convert_file(src: Path, dst: Path, scheme: str) -> Path:
    """``src`` (IOB2) with its tag column rewritten in ``scheme``, sentence by sentence."""
    blocks = src.read_text(encoding="utf-8").rstrip("\n").split("\n\n")
    out = []
    for block in blocks:
        rows = [line.rsplit(" ", 1) for line in block.split("\n")]
        tags = from_iob2([tag for _, tag in rows], scheme)
        out.append("\n".join(f"{tok} {tag}" for (tok, _), tag in zip(rows, tags, strict=True)))
    return write(dst, "\n\n".join(out) + "\n")


# ----------------------------------------------------------------------------- schemes


@given(iob2_tags)
def test_every_scheme_round_trips_through_iob2_with_the_same_entities(tags):
    for scheme in ("iob1", "iob2", "iobes", "bioes"):
        written = from_iob2(tags, scheme)
        assert to_iob2(written) == tags
        assert get_entities(written) == get_entities(tags) or scheme in ("iobes", "bioes")
        evidence = SchemeEvidence()
        evidence.add(written)
        if scheme in ("iobes", "bioes") and tags != ["O"] * len(tags):
            assert evidence.scheme == "iobes"


@given(iob2_tags)
def test_iobes_output_is_what_seqeval_reads_as_the_same_entities(tags):
    from seqeval.metrics.sequence_labeling import get_entities as seqeval_entities

    iobes = from_iob2(tags, "iobes")
    assert sorted((t, s, e + 1) for t, s, e in seqeval_entities(iobes)) == sorted(
        get_entities(tags)
    )


def test_iobes_examples():
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-ORG"]
    assert from_iob2(tags, "iobes") == [
        "B-PER",
        "E-PER",
        "O",
        "S-LOC",
        "B-LOC",
        "E-LOC",
        "O",
        "S-ORG",
    ]
    assert from_iob2(tags, "iob1") == [
        "I-PER",
        "I-PER",
        "O",
        "I-LOC",
        "B-LOC",
        "I-LOC",
        "O",
        "I-ORG",
    ]


@pytest.mark.parametrize("scheme", ["iob1", "iob2", "iobes"])
def test_auto_detects_each_scheme_and_reads_the_same_sentences(tmp_path, scheme):
    gold = read_conll(ROOT / "data/dev.conll", "iob2")
    path = convert_file(ROOT / "data/dev.conll", tmp_path / f"dev.{scheme}", scheme)
    found = SchemeEvidence()
    assert read_conll(path, "auto", found) == gold
    assert found.scheme == scheme
    assert found.describe().startswith(scheme.upper())


def test_iob2_refuses_iobes_tags_with_a_hint(tmp_path):
    path = write(tmp_path / "a.conll", "Paris S-LOC\nis O\n")
    with pytest.raises(
        DataError, match=r"a.conll:1: invalid tag 'S-LOC' .*data.scheme: iobes or auto"
    ):
        read_conll(path, "iob2")
    assert read_conll(path, "iobes")[0].tags == ("B-LOC", "O")
    with pytest.raises(DataError, match="expected O, B-TYPE, I-TYPE, E-TYPE or S-TYPE"):
        read_conll(write(tmp_path / "b.conll", "Paris X-LOC\n"), "auto")


def tiny_train(tmp_path: Path, name: str, splits: dict[str, Path], scheme: str = "auto"):
    """Train the tiny config on ``splits``; returns (summary, log lines)."""
    lines: list[str] = []

    class Log:
        def log(self, message: str) -> None:
            lines.append(message)

        def epoch_start(self, *args) -> None: ...
        def batch_progress(self, *args) -> None: ...
        def epoch_end(self, record) -> None: ...

    overrides = {f"data.{k}": str(v) for k, v in splits.items()}
    overrides["data.scheme"] = scheme
    overrides["data.test"] = None
    summary = train(tiny_config(), overrides, out_dir=tmp_path / name, reporter=Log())
    return summary, lines


def test_training_on_iobes_logs_the_scheme_and_equals_training_on_iob2(tmp_path):
    iob2 = {"train": ROOT / "data/train.conll", "dev": ROOT / "data/dev.conll"}
    iobes = {k: convert_file(p, tmp_path / f"{k}.iobes", "iobes") for k, p in iob2.items()}
    first, log2 = tiny_train(tmp_path, "iob2", iob2)
    second, log_es = tiny_train(tmp_path, "iobes", iobes)
    assert [x for x in log_es if x.startswith("tag scheme")][0].startswith(
        "tag scheme (data.scheme: auto): train IOBES ("
    )
    assert "dev IOBES" in [x for x in log_es if x.startswith("tag scheme")][0]
    assert any(x.startswith("tag scheme (data.scheme: auto): train IOB2 (") for x in log2)
    assert first["dev"] == second["dev"]
    with pytest.raises(DataError, match="invalid tag 'E-"):
        tiny_train(tmp_path, "strict", iobes, scheme="iob2")


# ----------------------------------------------------------------------------- CoNLL out


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fmt") / "run"
    splits = {
        "data.train": str(ROOT / "data/train.conll"),
        "data.dev": str(ROOT / "data/dev.conll"),
    }
    train(tiny_config(), {**splits, "data.test": None}, out_dir=out)
    return out / "model.npz"


def predict_conll(model: Path, path: Path) -> str:
    result = runner.invoke(
        app,
        ["predict", "-m", str(model), "-i", str(path), "--input-format", "conll", "-f", "conll"],
    )
    assert result.exit_code == 0, result.output
    return result.stdout_bytes.decode("utf-8")  # .stdout would turn CRLF into LF


def assert_input_plus_column(source: bytes, output: str) -> list[str]:
    """Every input line is in the output, unchanged, with `` tag``/``\\ttag`` appended to the
    non-blank ones; returns the appended tags."""
    src_lines = source.decode("utf-8").splitlines()
    out_lines = output.splitlines()
    assert len(out_lines) == len(src_lines)
    appended = []
    for src, out in zip(src_lines, out_lines, strict=True):
        if not src.strip():
            assert out == src
            continue
        sep = "\t" if "\t" in src or " " not in src.strip(" ") else " "
        assert out.startswith(src + sep)
        appended.append(out[len(src) + 1 :])
        assert " " not in appended[-1] and "\t" not in appended[-1]
    return appended


def test_conll_out_keeps_every_line_and_scores_like_eval(model, tmp_path):
    source = (ROOT / "data/dev.conll").read_bytes()
    output = predict_conll(model, ROOT / "data/dev.conll")
    assert_input_plus_column(source, output)
    path = write(tmp_path / "pred.conll", output)
    gold, pred = [], []
    for block in path.read_text().strip("\n").split("\n\n"):
        rows = [line.split(" ") for line in block.split("\n")]
        gold.append([r[-2] for r in rows])
        pred.append([r[-1] for r in rows])
    result = runner.invoke(
        app, ["eval", "-m", str(model), "-d", str(ROOT / "data/dev.conll"), "--json"]
    )
    import json

    expected = json.loads(result.stdout)["f1"]
    assert evaluate(gold, pred).to_dict()["f1"] == pytest.approx(expected, abs=1e-9)
    assert 100 * f1_score(gold, pred) == pytest.approx(expected, abs=1e-9)


def test_conll_out_keeps_docstart_tabs_crlf_bom_and_writes_the_input_scheme(model, tmp_path):
    iobes = convert_file(ROOT / "data/dev.conll", tmp_path / "dev.iobes", "iobes")
    text = iobes.read_text()
    odd = "\ufeff-DOCSTART- -X- O\r\n\r\n" + text.replace("\n", "\r\n", 3).replace(" ", "\t", 5)
    path = tmp_path / "odd.conll"
    path.write_bytes(odd.encode())
    output = predict_conll(model, path)
    raw = path.read_bytes()
    assert output.startswith("\ufeff-DOCSTART- -X- O O\r\n\r\n")
    assert output.count("\r\n") == odd.count("\r\n")
    appended = assert_input_plus_column(raw.removeprefix(b"\xef\xbb\xbf"), output.lstrip("\ufeff"))
    assert appended[0] == "O"  # the -DOCSTART- line
    assert any(t.startswith(("S-", "E-")) for t in appended)
    pred = [t for t in appended[1:]]
    ev = SchemeEvidence()
    ev.add(pred)
    assert ev.scheme == "iobes"
    # the same predictions as for the IOB2 file, converted
    plain = predict_conll(model, ROOT / "data/dev.conll")
    plain_tags = [line.rsplit(" ", 1)[1] for line in plain.splitlines() if line.strip()]
    assert to_iob2(pred) == plain_tags


def test_a_token_only_file_gets_iob2_tags(model, tmp_path):
    path = write(tmp_path / "tokens.txt", "Camille\nRousseau\nvisited\nParis\n.\n\nHello\n")
    output = predict_conll(model, path)
    tags = assert_input_plus_column(path.read_bytes(), output)
    assert len(tags) == 6 and all(t == "O" or t[:2] in ("B-", "I-") for t in tags)


def test_conll_looking_text_input_is_warned_about(model, tmp_path):
    path = write(tmp_path / "x.conll", "Paris B-LOC\nis O\nnice O\n")
    result = runner.invoke(app, ["predict", "-m", str(model), "-i", str(path)])
    assert result.exit_code == 0
    assert "looks like CoNLL" in strip_ansi(result.stderr)
    plain = write(tmp_path / "x.txt", "Camille Rousseau visited Paris.\nIt was O.\n")
    result = runner.invoke(app, ["predict", "-m", str(model), "-i", str(plain)])
    assert "looks like CoNLL" not in strip_ansi(result.stderr)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Paris B-LOC\nis O\n", True),
        ("-DOCSTART- -X- O\n\nEU NNP B-NP S-ORG\nrejects VBZ B-VP O\n", True),
        ("Camille Rousseau visited Paris.\nI like B-movies O\n", False),
        ("Paris B-LOC\n", False),
        ("", False),
    ],
)
def test_looks_like_conll(text, expected):
    assert looks_like_conll(text) is expected


def test_document_alignment_matches_the_corpus_reader(tmp_path):
    text = "a\u00a0b O\r\nc\tB-X\rd I-X\n\n\n-DOCSTART- O\ne O"
    doc = ConllDocument.from_text(text)
    path = write(tmp_path / "d.conll", text)
    assert doc.sentences == [list(s.tokens) for s in read_conll(path, "auto")]
    assert doc.render([["O", "B-X", "I-X"], ["O"]]) == (
        "a\u00a0b O O\r\nc\tB-X\tB-X\rd I-X I-X\n\n\n-DOCSTART- O O\ne O O"
    )


# ----------------------------------------------------------------------------- properties

token = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\t \x00"),
    min_size=1,
    max_size=6,
)
tag = st.sampled_from(["O", "B-PER", "I-PER", "E-LOC", "S-LOC"])
line = st.one_of(
    st.tuples(token, st.sampled_from([" ", "\t", "  "]), tag).map("".join),
    st.just(""),
    st.just("  "),
    st.just("-DOCSTART- -X- O"),
)


@given(st.lists(line, max_size=25), st.sampled_from(["\n", "\r\n", "\r"]), st.booleans())
def test_any_conll_text_comes_back_line_for_line(lines, ending, final_newline):
    text = ending.join(lines) + (ending if final_newline and lines else "")
    try:
        doc = ConllDocument.from_text(text)
    except UsageError as exc:  # only a text without token lines is refused
        assert "nothing to tag" in str(exc)
        assert not any(x.strip() and not x.startswith("-DOCSTART-") for x in lines)
        return
    tags = [["O"] * len(s) for s in doc.sentences]
    out = doc.render(tags)
    out_lines = out.split(ending)
    in_lines = text.split(ending)
    assert len(out_lines) == len(in_lines)
    for src, got in zip(in_lines, out_lines, strict=True):
        assert got == src if not src.strip() else got in (src + " O", src + "\tO")


def test_a_scheme_other_than_auto_notes_a_mismatch():
    from windowner.train import log_schemes

    found = {"train": SchemeEvidence(), "dev": SchemeEvidence(), "test": SchemeEvidence()}
    found["train"].add(["B-PER", "I-PER", "O"])
    lines: list[str] = []
    log_schemes("iob1", found, lines.append)
    assert lines == ["note: data.scheme is iob1 but the train file looks IOB2 (1 chunks start "
                     "with B-, no S-/E- tags)"]  # fmt: skip
    lines.clear()
    log_schemes("iob2", found, lines.append)
    assert lines == []

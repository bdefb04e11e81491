"""The Python API (windowner.load / NER / Doc / windowner.train), calibrated scores, and
``windowner predict`` on raw text: stdin, files, json, jsonl, conll, the table's size switch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import unicodedata
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import windowner
from windowner import output
from windowner.api import GC_THRESHOLD, tagging_gc
from windowner.calibrate import fit_temperature, golden_section, tag_probabilities
from windowner.cli import app
from windowner.corpus import Sentence, read_conll
from windowner.errors import ModelFileError, UsageError

from .conftest import ROOT, strip_ansi

TEXT = "Angela Merkel met Emmanuel Macron in Paris.\nThe European Union rejected the plan."
DOC_KEYS = {"text", "sentences", "entities"}
SENTENCE_KEYS = {"start_char", "end_char", "tokens"}
TOKEN_KEYS = {"text", "start_char", "end_char", "tag", "score"}
ENTITY_KEYS = {"text", "label", "start_char", "end_char", "sentence", "start_token", "end_token"}
ENTITY_KEYS |= {"score"}
runner = CliRunner()


def data_overrides() -> dict[str, str]:
    return {
        f"data.{split}": str(ROOT / f"data/{split}.conll") for split in ("train", "dev", "test")
    }


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """windowner.train on the embedded corpus, 3 epochs (multiclass hinge: calibrated)."""
    out = tmp_path_factory.mktemp("api") / "run"
    summary = windowner.train(
        ROOT / "configs/adam.yaml", {"train.epochs": 3, **data_overrides()}, out_dir=out
    )
    assert Path(summary["run_dir"]) == out
    return out


@pytest.fixture(scope="session")
def ner(run_dir: Path):
    return windowner.load(run_dir)


def check_record(record: dict) -> None:
    """The JSON record's keys, and offsets/scores that hold for any text."""
    text = record["text"]
    assert set(record) == DOC_KEYS
    for sent in record["sentences"]:
        assert set(sent) == SENTENCE_KEYS
        assert sent["start_char"] == sent["tokens"][0]["start_char"]
        assert sent["end_char"] == sent["tokens"][-1]["end_char"]
        for token in sent["tokens"]:
            assert set(token) == TOKEN_KEYS
            assert text[token["start_char"] : token["end_char"]] == token["text"]
            assert 0.0 <= token["score"] <= 1.0
    for entity in record["entities"]:
        assert set(entity) == ENTITY_KEYS
        assert text[entity["start_char"] : entity["end_char"]] == entity["text"]
        tokens = record["sentences"][entity["sentence"]]["tokens"]
        span = tokens[entity["start_token"] : entity["end_token"]]
        assert span and span[0]["start_char"] == entity["start_char"]
        assert span[-1]["end_char"] == entity["end_char"]
        assert span[0]["tag"].endswith(entity["label"])
        mean = sum(t["score"] for t in span) / len(span)
        assert entity["score"] == pytest.approx(mean, abs=1e-4)


# ----------------------------------------------------------------------------- the API


def test_load_run_dir_model_file_and_default_run(run_dir, ner, monkeypatch, tmp_path):
    by_file = windowner.load(run_dir / "model.npz")
    assert by_file(TEXT).to_dict() == ner(TEXT).to_dict()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs/latest").symlink_to(run_dir)
    monkeypatch.chdir(tmp_path)
    assert windowner.load().path.resolve() == (run_dir / "model.npz").resolve()
    with pytest.raises(ModelFileError, match="no such model file or run directory"):
        windowner.load(tmp_path / "nothing")
    with pytest.raises(UsageError, match="unknown tokenizer 'nope'"):
        windowner.load(run_dir, tokenizer="nope")


def test_a_text_becomes_sentences_tokens_and_entities(ner):
    doc = ner(TEXT)
    record = doc.to_dict()
    check_record(record)
    assert json.loads(doc.to_json()) == record
    assert len(doc.sentences) == 2
    assert [t.text for t in doc.sentences[0].tokens][-2:] == ["Paris", "."]
    assert doc.tokens == [t for s in doc.sentences for t in s.tokens]
    assert ner.tag_tokens([[t.text for t in s.tokens] for s in doc.sentences]) == [
        [t.tag for t in s.tokens] for s in doc.sentences
    ]


def test_pipe_streams_a_generator_in_batches(ner):
    texts = [f"Talks in Paris number {i} ." if i % 3 else "" for i in range(10)]
    pulled = []

    def source():
        for text in texts:
            pulled.append(text)
            yield text

    docs = ner.pipe(source(), batch_size=4)
    first = next(docs)
    assert len(pulled) == 4  # one batch read, not the whole input
    rest = list(docs)
    assert [d.to_dict() for d in [first, *rest]] == [ner(t).to_dict() for t in texts]
    assert rest[2].sentences == [] and rest[2].entities == []  # the empty text


def test_tag_tokens_and_doc_from_tokens(ner):
    sentences = [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]
    tags = ner.tag_tokens(sentences)
    assert tags == ner.tagger.tag(sentences) and ner.tag_tokens([]) == []
    doc = ner.doc_from_tokens(sentences)
    assert doc.text == "EU rejects German call\nPeter Blackburn"
    assert [[t.tag for t in s.tokens] for s in doc.sentences] == tags
    check_record(doc.to_dict())


def test_encoding_from_the_type_cache_equals_a_fresh_one(ner):
    words = [["EU", "rejects", "German", "call", "."], ["Zoë"], ["1996-08-30", "PARIS", "a\nb"]]
    sentences = [Sentence(tuple(w), ("O",) * len(w)) for w in words]
    ner.tagger.type_cache.clear()
    first = ner.tagger.encode(sentences)
    assert set(ner.tagger.type_cache) == {w for ws in words for w in ws}
    again = ner.tagger.encode(sentences)  # every token from the cache now
    fresh = replace(ner.tagger, type_cache={}).encode(sentences)
    for name in ("words", "caps", "centers", "tags", "sent_bounds"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
        np.testing.assert_array_equal(getattr(fresh, name), getattr(first, name))
    assert first.words[first.centers[5]] == ner.tagger.words.id("zoë")


def blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_pipe_sets_the_blas_threads_for_big_batches_only_and_restores_them(ner):
    from windowner.api import THREADED_CHARS

    before = blas_threads()
    small = ["EU rejects German call."] * 3
    assert all(blas_threads() == before for _ in ner.pipe(small, threads=1))
    big = ["Peter Blackburn flew to Brussels on Monday. " * 40] * (THREADED_CHARS // 1700 + 1)
    seen = [blas_threads() for _ in ner.pipe(big, threads=1)]
    assert seen and all(t == [1] * len(before) for t in seen)
    assert blas_threads() == before  # restored when the pipe ends
    assert [d.to_dict() for d in ner.pipe(big[:2], threads=None)] == [
        d.to_dict() for d in ner.pipe(big[:2])
    ]


def test_explain_and_card(ner):
    record = ner.explain("Museums in Paris are amazing .")
    paris = record["sentences"][0]["tokens"][2]
    assert paris["window"][2] == "paris" and set(paris["scores"]) == set(ner.tagger.output_tags)
    card = ner.card()
    assert card["temperature"] == ner.tagger.temperature and card["tokenizer"] == "default"
    assert card["labels"] == ["LOC", "MISC", "ORG", "PER"]


def test_the_whitespace_tokenizer_keeps_pretokenised_text(run_dir):
    ner = windowner.load(run_dir, tokenizer="whitespace")
    doc = ner("Obama 's U.S.-based advisers\nSecond line")
    assert [[t.text for t in s.tokens] for s in doc.sentences] == [
        ["Obama", "'s", "U.S.-based", "advisers"],
        ["Second", "line"],
    ]


# ----------------------------------------------------------------------------- property

PIECES = st.sampled_from(
    ["Paris", "Angela Merkel", "Dr.", "U.S.", "'s", ",", ".", "\n", "\n\n", " ", "\u00a0",
     "e\u0301", "A\u0308", "\u0301", "\u200f", "\u200b", "\U0001f468\u200d\U0001f469", "\u2019"]
)  # fmt: skip
TEXTS = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(PIECES, st.text(min_size=1, max_size=3)), max_size=30).map("".join),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
def test_records_slice_the_original_text(ner, text):
    for form in (text, unicodedata.normalize("NFD", text)):
        check_record(ner(form).to_dict())


# ----------------------------------------------------------------------------- scores


def test_probabilities_are_softmax_or_sigmoid_with_the_temperature():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(7, 4)).astype(np.float32)
    p = tag_probabilities(scores, "multiclass", temperature=0.5)
    z = np.exp(scores.astype(np.float64) / 0.5)
    np.testing.assert_allclose(p, z / z.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(
        tag_probabilities(scores, "softmax", temperature=0.5),
        tag_probabilities(scores, "softmax"),
    )
    ranked = tag_probabilities(scores[:, :1], "ranking", threshold=0.3, temperature=2.0)
    expected = 1.0 / (1.0 + np.exp(-(scores[:, 0].astype(np.float64) - 0.3) / 2.0))
    np.testing.assert_allclose(ranked[:, 1], expected)
    np.testing.assert_allclose(ranked.sum(axis=1) - ranked[:, 2], 1.0)


def test_golden_section_finds_a_minimum():
    assert golden_section(lambda x: (x - 1.234) ** 2, -5.0, 5.0) == pytest.approx(1.234, abs=1e-9)


def dev_nll(tagger, enc, temperature: float) -> float:
    p = tag_probabilities(tagger.scores(enc), tagger.objective, tagger.threshold, temperature)
    return float(-np.mean(np.log(p[np.arange(len(enc.tags)), enc.tags])))


def test_training_stores_the_temperature_that_minimises_dev_nll(ner):
    tagger = ner.tagger
    assert tagger.objective == "multiclass" and ner.meta["temperature"] == tagger.temperature
    dev = read_conll(ROOT / "data/dev.conll")
    enc = tagger.encode(dev)
    assert fit_temperature(tagger, enc) == pytest.approx(tagger.temperature, rel=1e-6)
    best = dev_nll(tagger, enc, tagger.temperature)
    for factor in (0.8, 1.25):
        assert best < dev_nll(tagger, enc, tagger.temperature * factor)
    assert tagger.temperature != 1.0


def test_a_model_file_without_a_temperature_uses_1(run_dir, tmp_path):
    from windowner.checkpoint import load_npz, save_npz

    arrays, meta = load_npz(run_dir / "model.npz")
    del meta["temperature"]
    save_npz(tmp_path / "old.npz", arrays, meta)
    assert windowner.load(tmp_path / "old.npz").tagger.temperature == 1.0
    meta["temperature"] = -1.0
    save_npz(tmp_path / "bad.npz", arrays, meta)
    with pytest.raises(ModelFileError, match="temperature -1.0 is not a positive number"):
        windowner.load(tmp_path / "bad.npz")


# ----------------------------------------------------------------------------- predict CLI


def predict(run_dir, *args, input=None):
    result = runner.invoke(app, ["predict", "--model", str(run_dir), *map(str, args)], input=input)
    return result.exit_code, strip_ansi(result.stdout), strip_ansi(result.stderr)


def test_predict_jsonl_from_piped_stdin_one_record_per_paragraph(run_dir, ner):
    paragraphs = ["Angela Merkel visited Paris.\nShe met Macron.", "EU rejects German call."]
    piped = "\n\n".join(paragraphs) + "\n"
    for args in ((), ("--input", "-")):
        code, out, _ = predict(run_dir, "-f", "jsonl", *args, input=piped)
        assert code == 0
        records = [json.loads(line) for line in out.splitlines()]
        assert records == [ner(p).to_dict() for p in paragraphs]
    code, out, _ = predict(run_dir, "-f", "jsonl", "--per-line", input=piped)
    assert [json.loads(x)["text"] for x in out.splitlines()] == piped.split("\n")[:2] + [
        paragraphs[1]
    ]


def test_predict_json_file_and_text(run_dir, ner, tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"\xef\xbb\xbfParis is nice.\r\n\r\n\r\nRome too.\r\n")
    code, out, _ = predict(run_dir, "-f", "json", "--input", path)
    records = json.loads(out)
    assert code == 0 and [r["text"] for r in records] == ["Paris is nice.", "Rome too."]
    code, out, _ = predict(run_dir, "-f", "json", TEXT)
    assert json.loads(out) == [ner(TEXT).to_dict()]
    check_record(json.loads(out)[0])


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES, st.sampled_from(["", "  ", "    "]))
def test_indented_json_reads_back_as_the_value(value, margin):
    """``output.indented`` (the -f json writer) is JSON that reads back as the value (NaN and
    infinities as json writes them), with objects and lists of plain values on one line."""
    text = output.indented(value, margin)
    assert json.dumps(json.loads(text), sort_keys=True) == json.dumps(value, sort_keys=True)
    if not isinstance(value, dict | list) or not any(
        isinstance(v, dict | list) for v in (value.values() if isinstance(value, dict) else value)
    ):
        assert "\n" not in text  # (a newline inside a string is written \\n)


def test_predict_json_puts_each_token_and_entity_on_one_line(run_dir, ner):
    code, out, _ = predict(run_dir, "-f", "json", TEXT)
    record = ner(TEXT).to_dict()
    lines = out.splitlines()
    tokens = [t for s in record["sentences"] for t in s["tokens"]]
    assert code == 0 and json.loads(out) == [record]
    assert [json.loads(x.strip().rstrip(",")) for x in lines if '"tag": ' in x] == tokens
    assert lines[:3] == ["[", "  {", f'    "text": {json.dumps(TEXT, ensure_ascii=False)},']


def test_predict_table_and_its_switch_to_entity_lines(run_dir, ner, monkeypatch):
    code, out, err = predict(run_dir, TEXT)
    doc = ner(TEXT)
    assert code == 0 and err == ""
    assert "entities: " + ", ".join(f"{e.text} ({e.label})" for e in doc.entities) in out
    assert re.search(r"│ Paris\s+│ \S+\s+│\s+\d\.\d\d │", out)
    monkeypatch.setattr(output, "TABLE_MAX_TOKENS", 10)
    code, out, err = predict(run_dir, input=f"{TEXT}\n\n{TEXT}\n")
    assert code == 0 and "one line per entity instead of a table" in err
    lines = [line.split("\t") for line in out.splitlines()]
    expected = [[str(i), str(e.start_char), str(e.end_char), e.label, f"{e.score:.3f}", e.text]
                for i in (0, 1) for e in doc.entities]  # fmt: skip
    assert lines == expected


def test_predict_conll_and_whitespace_tokenizer(run_dir):
    code, out, _ = predict(run_dir, "-f", "conll", "--tokenizer", "whitespace", "EU 's call\nA b")
    assert code == 0
    expected = ["EU", "'s", "call", "", "A", "b", "", ""]
    assert [ln.split("\t")[0] for ln in out.split("\n")] == expected


def test_predict_refuses_bad_input(run_dir, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\n\nstill fine\nnot \xff fine\n")
    code, _, err = predict(run_dir, "--input", bad, "-f", "jsonl")
    assert code == 2 and f"{bad}:4: undecodable bytes (not UTF-8)" in err
    code, _, err = predict(run_dir, "--tokenizer", "nope", "Paris")
    assert code == 2 and "unknown tokenizer 'nope'; choose from: default, whitespace" in err
    code, _, err = predict(run_dir, "-f", "jsonl", input="\n \n\t\n")
    assert code == 2 and "nothing to tag" in err
    code, _, err = predict(run_dir, "--input", tmp_path / "missing.txt")
    assert code == 2 and "cannot read" in err


@pytest.mark.slow
def test_predict_jobs_gives_the_same_records_in_order(run_dir, tmp_path):
    path = tmp_path / "many.txt"
    path.write_text("\n\n".join(f"Talks {i} in Paris with Angela Merkel." for i in range(300)))
    exe = Path(sys.executable).with_name("windowner")
    base = [str(exe), "predict", "--model", str(run_dir), "--input", str(path), "-f", "jsonl"]
    one = subprocess.run(base, capture_output=True, text=True, check=True).stdout
    for _ in range(3):  # the pool ends its workers with SIGTERM: they must die quietly
        two = subprocess.run([*base, "--jobs", "2"], capture_output=True, text=True, check=True)
        assert two.stdout == one and len(one.splitlines()) == 300
        assert "Traceback" not in two.stderr and "Terminated" not in two.stderr, two.stderr


# ----------------------------------------------------------------------------- package


@pytest.mark.slow
def test_import_windowner_is_light_and_exports_load_and_train():
    code = (
        "import sys, windowner\n"
        "assert not {'numpy', 'windowner.api', 'windowner.train'} & set(sys.modules)\n"
        "assert callable(windowner.load) and callable(windowner.train)\n"
        "import windowner.train\nassert callable(windowner.train)\n"
        "assert 'typer' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    """The README's Python API code, run as written in a directory with configs/ and data/."""
    for name in ("configs", "data"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", readme_section("Python API"), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})  # noqa: S102 - our own README
    assert (tmp_path / "runs/latest/model.npz").is_file()
    assert "Paris" in capsys.readouterr().out


def test_readme_record_example_has_the_records_keys(ner):
    blocks = re.findall(r"```json\n(.*?)```", readme_section("Predict"), re.S)
    example = json.loads(blocks[0])
    check_keys = (DOC_KEYS, SENTENCE_KEYS, TOKEN_KEYS, ENTITY_KEYS)
    assert (set(example), set(example["sentences"][0])) == check_keys[:2]
    assert set(example["sentences"][0]["tokens"][0]) == TOKEN_KEYS
    assert set(example["entities"][0]) == ENTITY_KEYS
    check_record(example)


def test_tagging_gc_freezes_and_restores(ner):
    import gc

    before = gc.get_threshold()
    with tagging_gc():
        assert gc.get_threshold()[0] == GC_THRESHOLD and gc.get_freeze_count() > 0
        doc = ner("Museums in Paris are amazing .")
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    assert doc.to_dict() == ner("Museums in Paris are amazing .").to_dict()

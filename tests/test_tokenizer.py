"""windowner.tokenizer: CoNLL-2003 tokens with exact character offsets into the original text."""

from __future__ import annotations

import itertools
import sys
import unicodedata
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from windowner import tokenizer as tokenizer_module
from windowner.errors import UsageError
from windowner.tokenizer import TOKENIZERS, Token, iter_sentences, tokenize

REFERENCE = "Dr. Smith met Obama's advisers in St. Louis, Mo., on Friday."
FORMAT_CHARS = (
    "\u00ad\u200b\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2066\u2067\u2068\u2069\ufeff"
)


def texts(text: str, tokenizer: str = "default") -> list[list[str]]:
    return [[token.text for token in sentence] for sentence in tokenize(text, tokenizer)]


def test_reference_sentence_is_one_sentence_with_exact_offsets() -> None:
    (sentence,) = tokenize(REFERENCE)
    expected = [
        ("Dr.", 0, 3), ("Smith", 4, 9), ("met", 10, 13), ("Obama", 14, 19), ("'s", 19, 21),
        ("advisers", 22, 30), ("in", 31, 33), ("St.", 34, 37), ("Louis", 38, 43),
        (",", 43, 44), ("Mo.", 45, 48), (",", 48, 49), ("on", 50, 52), ("Friday", 53, 59),
        (".", 59, 60),
    ]  # fmt: skip
    assert [(t.text, t.start, t.end) for t in sentence] == expected
    assert all(REFERENCE[t.start : t.end] == t.text == t.norm for t in sentence)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mr. Obama backs A.C. Milan.", "Mr. Obama backs A.C. Milan ."),
        ("The U.S.-based fund paid $1,200.50.", "The U.S.-based fund paid $ 1,200.50 ."),
        ("I don't know; they can't.", "I do n't know ; they ca n't ."),
        ("He said on 29/11/2026 and 1996-08-30.", "He said on 29/11/2026 and 1996-08-30 ."),
        ("O'Brien's all-rounder McCague won.", "O'Brien 's all-rounder McCague won ."),
        ("Rates rose +44 .596 C$ 1.5 WON'T.", "Rates rose +44 .596 C$ 1.5 WO N'T ."),
        ("A Ph.D. student, e.g. Bo.", "A Ph.D. student , e.g. Bo ."),
    ],
)
def test_conll_conventions(text: str, expected: str) -> None:
    """One sentence each, tokens as CoNLL-2003 writes them (space-separated here)."""
    assert texts(text) == [expected.split(" ")]


def test_money_dates_and_contractions_follow_conll() -> None:
    (sentence,) = texts("The U.S.-based fund paid $1,200.50 on 1996-08-30.")
    assert sentence[-5:] == ["$", "1,200.50", "on", "1996-08-30", "."]
    assert texts("WON'T") == [["WO", "N'T"]]


def test_sentence_final_abbreviation_is_written_as_conll_does() -> None:
    """CoNLL-2003 writes ``... in the U.S .``: the dot ends the sentence."""
    assert texts("He lives in the U.S. She lives in St. Louis.") == [
        ["He", "lives", "in", "the", "U.S", "."],
        ["She", "lives", "in", "St.", "Louis", "."],
    ]
    assert texts('He said "Acme Corp."') == [["He", "said", '"', "Acme", "Corp", ".", '"']]


def test_numbered_lists_start_sentences_with_their_numbers() -> None:
    results = "Women 100 metres 1. Ann Lee (Jamaica) 12.71 2. Eve Ho (Cuba) 12.74 3. Al Mo 12.80"
    assert [sentence[0] for sentence in texts(results)] == ["Women", "1.", "2.", "3."]
    prose = "He died aged 76. His wife was 75. She lives."
    died, wife = texts(prose)[:2]
    assert (died[-2:], wife[-2:]) == (["76", "."], ["75", "."])


def test_nfd_accents_stay_in_their_word_and_norm_is_nfc() -> None:
    text = "Ame\u0301lie met Zu\u0308rich's mayor."
    (sentence,) = tokenize(text)
    assert [t.text for t in sentence][:3] == ["Ame\u0301lie", "met", "Zu\u0308rich"]
    assert [t.norm for t in sentence][:3] == ["Amélie", "met", "Zürich"]
    assert all(text[t.start : t.end] == t.text for t in sentence)


def test_emoji_bidi_marks_and_nbsp() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    text = f"Hi\u00a0there {family} \u200fok\u200f."
    (sentence,) = tokenize(text)
    assert [t.text for t in sentence] == ["Hi", "there", family, "ok", "."]


def test_format_characters_inside_a_word_are_kept_in_text_but_not_in_norm() -> None:
    (sentence,) = tokenize("co\u00adoperate now")
    assert [(t.text, t.norm) for t in sentence] == [
        ("co\u00adoperate", "cooperate"),
        ("now", "now"),
    ]


def test_typographic_quotes_split_like_ascii_and_norm_is_ascii() -> None:
    (sentence,) = tokenize("O\u2019Brien\u2019s aides don\u2019t say \u201cno\u201d.")
    assert [(t.text, t.norm) for t in sentence] == [
        ("O\u2019Brien", "O'Brien"), ("\u2019s", "'s"), ("aides", "aides"), ("do", "do"),
        ("n\u2019t", "n't"), ("say", "say"), ("\u201c", '"'), ("no", "no"), ("\u201d", '"'),
        (".", "."),
    ]  # fmt: skip


def test_hard_wrapped_paragraphs_and_blank_lines() -> None:
    text = "Dr.\nSmith met the\r\npress in St.\nLouis.\n\n  \nNew paragraph without a stop\nNext"
    got = texts(text)
    assert got == [
        ["Dr.", "Smith", "met", "the", "press", "in", "St.", "Louis", "."],
        ["New", "paragraph", "without", "a", "stop", "Next"],
    ]
    assert tokenize(text)[1][0].start == text.index("New")


WRAPPED = (
    "Emmanuel Macron, the French president, met Olaf Scholz and the heads of\n"
    "government of Italy and Spain on Friday in the chancellery, where they\n"
    "talked about trade with the U.S. and China. Then Macron flew back to\n"
    "Paris.\n"
)


def test_hard_wrapped_prose_still_joins() -> None:
    got = texts(WRAPPED)
    assert [s[-2:] for s in got] == [["China", "."], ["Paris", "."]]
    assert texts("Macron met Scholz in\nBerlin on Friday.") == [
        ["Macron", "met", "Scholz", "in", "Berlin", "on", "Friday", "."]
    ]


def test_headline_dateline_and_byline_lines_end_sentences() -> None:
    text = (
        "SOCCER - JAPAN GET LUCKY WIN, CHINA IN SURPRISE DEFEAT\n"
        "Nadim Ladki\n"
        "AL-AIN, United Arab Emirates 1996-12-06\n"
        "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria\n"
        "in a Group C championship match on Friday.\n"
    )
    got = texts(text)
    assert [s[0] for s in got] == ["SOCCER", "Nadim", "AL-AIN", "Japan"]
    assert got[-1][-4:] == ["match", "on", "Friday", "."]


def test_table_rows_are_sentences_but_a_lowercase_continuation_is_not() -> None:
    rows = "Results on Friday:\nChicago 4 HOUSTON 3\nCincinnati 18 COLORADO 7\nAtlanta 5 Boston 2\n"
    assert [s[0] for s in texts(rows)] == ["Results", "Chicago", "Cincinnati", "Atlanta"]
    assert len(texts("Leading scores in\nthe $1.2 million Greater Milwaukee Open")) == 1
    assert len(texts("He met Dr.\nSmith and J.\nDoe and the\nEU")) == 1


def test_datelines_are_sentences_of_their_own_inside_a_line() -> None:
    text = (
        "Jones Medical completes acquisition. ST. LOUIS 1996-08-30 Jones Medical "
        "Industries Inc said it completed the deal. PARIS, Aug. 30 (Reuters) - France said no."
    )
    got = texts(text)
    assert got[1] == ["ST.", "LOUIS", "1996-08-30"]
    assert got[3] == ["PARIS", ",", "Aug.", "30", "(", "Reuters", ")", "-"]
    wrapped = "SOCCER - CANADA BEAT PANAMA IN QUALIFIER. EDMONTON\n1996-08-31\nCanada won."
    assert texts(wrapped)[1] == ["EDMONTON", "1996-08-31"]
    assert texts("Homegate Hospitality Inc. WASHINGTON 1996-08-30 Company Name")[0][-2:] == [
        "Inc",
        ".",
    ]


def test_whitespace_tokenizer_is_one_sentence_per_line() -> None:
    text = "Obama 's  U.S. visit\n\nDr. Smith\nleft ."
    assert texts(text, "whitespace") == [
        ["Obama", "'s", "U.S.", "visit"],
        ["Dr.", "Smith"],
        ["left", "."],
    ]


def test_unknown_tokenizer_is_a_usage_error_listing_choices() -> None:
    with pytest.raises(UsageError, match="choose from: default, whitespace"):
        tokenize("x", "nltk")


def test_spacy_tokenizer_when_installed() -> None:
    pytest.importorskip("spacy")
    (sentence,) = tokenize(REFERENCE, "spacy")
    assert [t.text for t in sentence][:4] == ["Dr.", "Smith", "met", "Obama"]


def test_spacy_tokenizer_without_spacy_is_a_usage_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "spacy", None)  # makes ``import spacy`` fail
    monkeypatch.setattr(tokenizer_module, "_SPACY", [])
    with pytest.raises(UsageError, match="pip install spacy"):
        tokenize(REFERENCE, "spacy")


def test_empty_and_blank_text() -> None:
    assert tokenize("") == []
    assert tokenize(" \n\n\t\u00a0\n\u200f") == []


def test_file_lines_give_the_same_sentences_as_the_text(tmp_path) -> None:
    text = "First line of a\nwrapped paragraph. Second one.\n\nThird paragraph.\r\nStill third.\n"
    path = tmp_path / "in.txt"
    path.write_bytes(text.encode("utf-8"))
    with path.open(encoding="utf-8", newline="") as handle:
        from_file = list(iter_sentences(handle))
    assert from_file == list(iter_sentences(text))
    assert [s.words for s in from_file][-1] == ["Still", "third", "."]
    assert all(text[s.start : s.end].split()[0] == s.tokens[0].text for s in from_file)


def test_long_paragraph_carries_its_unfinished_sentence_over() -> None:
    """With a small ``max_chars`` a long paragraph is read in pieces without changing the
    sentences, as long as no single sentence is longer than the limit."""
    lines = [
        f"Sentence {i} is about Dr. Who and\n" if i % 2 else f"St. Louis {i}.\n" for i in range(60)
    ]
    text = "".join(lines)
    assert list(iter_sentences(text, max_chars=80)) == list(iter_sentences(text))


def test_iter_sentences_reads_lines_lazily() -> None:
    consumed = itertools.count()

    def endless() -> Iterator[str]:
        for i in itertools.count():
            next(consumed)
            yield f"Paragraph {i} has a sentence.\n"
            yield "\n"

    first = list(itertools.islice(iter_sentences(endless()), 3))
    assert [s.words[:2] for s in first] == [
        ["Paragraph", "0"],
        ["Paragraph", "1"],
        ["Paragraph", "2"],
    ]
    assert next(consumed) <= 5  # the fourth paragraph's line at most


# ----------------------------------------------------------------------------- properties

PIECES = st.sampled_from(
    ["Dr.", "U.S.", "A.C.", "St", ".", ",", "'s", "n't", "O'", "$", "1,200.50", "-", "\u2019",
     "e\u0301", "\u0301", "\u0308", "\u1100\u1161", "\U0001f468\u200d\U0001f469", "\u200d",
     "\u00a0", " ", "\n", "\r\n", "\r", "\n\n", "\t", '"', "(", ")", "...", ";", "+", "C$"]
    + list(FORMAT_CHARS)
)  # fmt: skip
TEXTS = st.one_of(
    st.text(max_size=80),
    st.lists(st.one_of(PIECES, st.text(min_size=1, max_size=4)), max_size=40).map("".join),
)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_offsets(text: str, tokens: list[Token]) -> None:
    """Every token slices the original exactly, in order, without overlaps, and every
    character no token covers is whitespace or an invisible format character."""
    covered = [False] * len(text)
    previous_end = 0
    for token in tokens:
        assert text[token.start : token.end] == token.text
        assert previous_end <= token.start < token.end
        assert token.norm and token.norm == unicodedata.normalize("NFC", token.norm)
        previous_end = token.end
        covered[token.start : token.end] = [True] * (token.end - token.start)
    lost = [ch for ch, hit in zip(text, covered, strict=True) if not hit]
    assert all(ch.isspace() or ch in FORMAT_CHARS for ch in lost), lost


@PROPERTY
@given(TEXTS, st.sampled_from(sorted(set(TOKENIZERS) - {"spacy"})))
def test_offsets_slice_the_original_text(text: str, tokenizer: str) -> None:
    tokens = [token for sentence in tokenize(text, tokenizer) for token in sentence]
    check_offsets(text, tokens)


@PROPERTY
@given(TEXTS, st.integers(min_value=1, max_value=30))
def test_offsets_hold_when_long_paragraphs_are_cut(text: str, max_chars: int) -> None:
    sentences = list(iter_sentences(text, max_chars=max_chars))
    check_offsets(text, [token for sentence in sentences for token in sentence.tokens])
    for sentence in sentences:
        assert (sentence.start, sentence.end) == (sentence.tokens[0].start, sentence.tokens[-1].end)


def test_syntok_split_chars_are_those_of_the_installed_syntok() -> None:
    from syntok._segmentation_states import State

    chars = set("".join(State.terminals)) | set(State.opening_brackets)
    assert chars <= set(tokenizer_module.SYNTOK_SPLIT_CHARS)


SYNTOK_CHARS = tokenizer_module.SYNTOK_SPLIT_CHARS
NO_SPLIT_TEXTS = st.lists(st.one_of(PIECES, st.text(min_size=1, max_size=4)), max_size=40).map(
    lambda parts: "".join(parts).translate({ord(c): " " for c in SYNTOK_CHARS})
)


@PROPERTY
@given(NO_SPLIT_TEXTS)
def test_text_without_a_split_char_skips_the_segmenter_with_the_same_sentences(text: str) -> None:
    from syntok.segmenter import segment
    from syntok.tokenizer import Tokenizer

    tokens = list(Tokenizer(replace_not_contraction=False).tokenize(text))
    by_segmenter = [[(t.offset, t.value) for t in s if t.value] for s in segment(iter(tokens))]
    fast = [[(t.offset, t.value) for t in tokens if t.value]]
    assert [s for s in by_segmenter if s] == [s for s in fast if s]

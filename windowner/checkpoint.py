"""Model and checkpoint files: ``.npz`` only, read with ``allow_pickle=False``, written atomically.

A model file holds ``param/<name>`` arrays, the word vocabulary and the tag list as UTF-8 bytes,
and ``meta``: a JSON object (as UTF-8 bytes) with the format version, the model spec, the
prediction settings and, for each array, its shape and dtype. Loading checks all of it.
A checkpoint (``last.npz``) adds the optimizer state, the RNG state and the loop position.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from windowner.errors import ModelFileError

FORMAT = "windowner-model"
FORMAT_VERSION = 1


# ------------------------------------------------------------------------- atomic writes


TMP_SUFFIX = ".tmp"


@contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` only when complete: written to a temporary file
    beside it, flushed, fsynced, then ``os.replace``d (and the directory fsynced). A crash or
    ``kill -9`` at any moment leaves either the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make shared models unreadable
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_open``)."""
    with atomic_open(path) as fh:
        fh.write(data)


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete temporary files that a killed writer left in ``directory``; returns them."""
    stale = [p for p in Path(directory).glob(f".*{TMP_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------- encoding helpers


def text_array(text: str) -> np.ndarray:
    """A string as a uint8 array (no object arrays, no pickles)."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def array_text(arr: np.ndarray) -> str:
    return arr.tobytes().decode("utf-8")


def save_npz(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write arrays plus a ``meta`` JSON (with every array's shape and dtype) atomically."""
    meta = dict(meta)
    meta["format"], meta["version"] = FORMAT, FORMAT_VERSION
    meta["arrays"] = {k: [list(v.shape), str(v.dtype)] for k, v in arrays.items()}
    with atomic_open(path) as fh:  # streamed into the file: no second copy in memory
        np.savez(fh, meta=text_array(json.dumps(meta)), **arrays)


def load_npz(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and validate a windowner ``.npz``; raises ModelFileError with a clear reason."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ModelFileError(f"{path}: model files are .npz files (this is {path.suffix or 'no'})")
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    _check_magic(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise ModelFileError(f"{path}: refused: {UNSAFE}") from None
        raise ModelFileError(f"{path}: truncated or corrupt model file ({exc})") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError) as exc:
        raise ModelFileError(f"{path}: truncated or corrupt model file ({exc})") from None
    odd = sorted(k for k, v in arrays.items() if not isinstance(v, np.ndarray))
    if odd:
        raise ModelFileError(f"{path}: refused: members that are not .npy arrays: {odd}")
    meta = _read_meta(path, arrays)
    _check_arrays(path, arrays, meta)
    return arrays, meta


UNSAFE = (
    "the file holds pickled or object data, which windowner never loads "
    "(unpickling can run code); nothing from it was executed"
)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _check_magic(path: Path) -> None:
    """Refuse what is not a zip archive before numpy looks at it (a bare pickle, a .npy)."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head[:4] in _ZIP_MAGIC:
        return
    if head.startswith(b"\x93NUMPY"):
        raise ModelFileError(f"{path}: a single .npy array, not a windowner .npz model file")
    if head[:1] == b"\x80":  # a pickle (protocol 2 and later)
        raise ModelFileError(f"{path}: refused: {UNSAFE}")
    what = "the file is empty" if not head else "not a zip archive"
    raise ModelFileError(f"{path}: not a windowner .npz model file ({what})")


def _read_meta(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    if "meta" not in arrays:
        raise ModelFileError(f"{path}: not a windowner model file (no metadata)")
    raw = arrays.pop("meta")
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError("metadata must be UTF-8 bytes")
        meta = json.loads(array_text(raw))
    except (ValueError, UnicodeDecodeError):
        raise ModelFileError(f"{path}: unreadable metadata") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: unreadable metadata")
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a windowner model file")
    if meta.get("version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: format version {meta.get('version')} is not supported "
            f"(this windowner reads version {FORMAT_VERSION})"
        )
    return meta


def _check_arrays(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    expected = meta.get("arrays", {})
    if not isinstance(expected, dict):
        raise ModelFileError(f"{path}: unreadable metadata (arrays)")
    if set(expected) != set(arrays):
        missing = sorted(set(expected) - set(arrays))
        extra = sorted(set(arrays) - set(expected))
        raise ModelFileError(
            f"{path}: arrays do not match the metadata (missing {missing}, unexpected {extra})"
        )
    for name, entry in expected.items():
        arr = arrays[name]
        shape, dtype = entry if isinstance(entry, list) and len(entry) == 2 else (None, None)
        if list(arr.shape) != shape or str(arr.dtype) != dtype:
            raise ModelFileError(
                f"{path}: array {name!r} is {arr.dtype}{list(arr.shape)}, "
                f"metadata says {dtype}{shape}"
            )

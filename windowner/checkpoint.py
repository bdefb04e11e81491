"""Model and checkpoint files: ``.npz`` only, read with ``allow_pickle=False``, written atomically.

A model file holds ``param/<name>`` arrays, the word vocabulary and the tag list as UTF-8 bytes,
and ``meta``: a JSON object (as UTF-8 bytes) with the format version, the model spec, the
prediction settings and, for each array, its shape and dtype. Loading checks all of it.
A checkpoint (``last.npz``) adds the optimizer state, the RNG state and the loop position.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from windowner.errors import ModelFileError

FORMAT = "windowner-model"
FORMAT_VERSION = 1


# ------------------------------------------------------------------------- atomic writes


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush, fsync, then os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


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
    buf = io.BytesIO()
    np.savez(buf, meta=text_array(json.dumps(meta)), **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_npz(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and validate a windowner ``.npz``; raises ModelFileError with a clear reason."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise ModelFileError(
                f"{path}: refused: the file holds pickled/object data, which windowner never "
                "loads (it could run code)"
            ) from None
        raise ModelFileError(f"{path}: not a valid .npz model file ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        raise ModelFileError(f"{path}: truncated or corrupt model file ({exc})") from None
    meta = _read_meta(path, arrays)
    _check_arrays(path, arrays, meta)
    return arrays, meta


def _read_meta(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    if "meta" not in arrays:
        raise ModelFileError(f"{path}: not a windowner model file (no metadata)")
    try:
        meta = json.loads(array_text(arrays.pop("meta")))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{path}: unreadable metadata") from None
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
    if set(expected) != set(arrays):
        missing = sorted(set(expected) - set(arrays))
        extra = sorted(set(arrays) - set(expected))
        raise ModelFileError(
            f"{path}: arrays do not match the metadata (missing {missing}, unexpected {extra})"
        )
    for name, (shape, dtype) in expected.items():
        arr = arrays[name]
        if list(arr.shape) != shape or str(arr.dtype) != dtype:
            raise ModelFileError(
                f"{path}: array {name!r} is {arr.dtype}{list(arr.shape)}, "
                f"metadata says {dtype}{shape}"
            )

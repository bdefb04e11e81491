"""Model and checkpoint files: ``.npz`` only, read with ``allow_pickle=False``, written atomically.

A model file holds ``param/<name>`` arrays, the word vocabulary and the tag list as UTF-8 bytes,
and ``meta``: a JSON object (as UTF-8 bytes) with the format version, the model spec, the
prediction settings and, for each array, its shape and dtype. Loading checks all of it.
A checkpoint (``last.npz``) adds the optimizer state, the RNG state and the loop position.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from windowner.errors import ModelFileError, WriteError

HASH_PIECE = 1 << 20  # bytes read at a time while hashing a file


def file_sha256(path: str | Path) -> str | None:
    """The SHA-256 of a regular file, read in 1 MiB pieces (never whole); None for a pipe, a
    device, a missing or unreadable file (nothing that could be compared later)."""
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while piece := fh.read(HASH_PIECE):
                digest.update(piece)
    except OSError:
        return None
    return digest.hexdigest()


FORMAT = "windowner-model"
FORMAT_VERSION = 1


# ------------------------------------------------------------------------- atomic writes


TMP_SUFFIX = ".tmp"


@contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` only when complete: written to a temporary file
    beside it, flushed, fsynced, then ``os.replace``d (and the directory fsynced). A crash or
    ``kill -9`` at any moment leaves either the old file or the new one, never a part. An OS
    error (disk full, read-only filesystem …) removes the temporary file and becomes a
    WriteError naming ``path``; the old file is untouched."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make shared models unreadable
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise
    _fsync_dir(path.parent)


def write_error(path: Path, exc: OSError) -> WriteError:
    """``cannot write PATH: <reason>`` (the previous file, if any, is kept)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return WriteError(f"cannot write {path}: {reason} (any previous version is unchanged)")


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
    """Read and validate a windowner ``.npz``; raises ModelFileError with a clear reason.

    Nothing is inflated before it is checked: the zip's member list (names, compression,
    encryption, sizes) and every member's ``.npy`` header (shape, dtype) are compared with the
    metadata first, and each array is then read into an array of exactly its declared size."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ModelFileError(
            f"{path}: model files are .npz files "
            + (f"(this is {path.suffix})" if path.suffix else "(this name has no suffix)")
        )
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    _check_magic(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = _members(path, archive)
            meta = _read_meta(path, _read_member(path, archive, members["meta"], MAX_META_BYTES))
            expected = _expected_arrays(path, meta, members)
            headers = {k: _check_header(path, archive, members[k], expected[k]) for k in expected}
            arrays = {k: _read_array(path, archive, members[k], headers[k]) for k in expected}
    except (
        zipfile.BadZipFile,
        zlib.error,
        OSError,
        EOFError,
        ValueError,
        NotImplementedError,
    ) as exc:
        raise ModelFileError(f"{path}: truncated or corrupt model file ({exc})") from None
    _check_finite(path, arrays)
    return arrays, meta


MAX_META_BYTES = 16 << 20  # the JSON metadata: a few kB in practice
MAX_MEMBERS = 1000  # zip members (a checkpoint has about 20)
MAX_HEADER_BYTES = 10_000  # an .npy header (numpy's own default limit)
MAX_EXPANSION = 16  # a compressed member may inflate to 16x its stored size (plus 1 MiB) ...
MAX_INFLATED_BYTES = 32 << 20  # ... and all compressed members together by this much more
_ENCRYPTED = 0x1 | 0x40  # zip flag bits: traditional and strong encryption


def _members(path: Path, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Array name → zip entry, after refusing what windowner never writes: encrypted entries,
    compression other than stored/deflate, duplicate or non-.npy names, compression bombs."""
    members: dict[str, zipfile.ZipInfo] = {}
    inflated = 0
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ModelFileError(f"{path}: refused: {len(infos)} zip members (limit {MAX_MEMBERS})")
    odd = sorted(_short(i.filename) for i in infos if not i.filename.endswith(".npy"))
    if odd:
        raise ModelFileError(f"{path}: refused: members that are not .npy arrays: {odd[:10]}")
    for info in infos:
        name = info.filename
        if info.flag_bits & _ENCRYPTED:
            raise ModelFileError(f"{path}: refused: member {_short(name)!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ModelFileError(
                f"{path}: refused: member {_short(name)!r} uses zip compression method "
                f"{info.compress_type} (windowner reads stored or deflated members only)"
            )
        if name[:-4] in members:
            raise ModelFileError(f"{path}: refused: zip member {_short(name)!r} appears twice")
        if info.compress_type == zipfile.ZIP_DEFLATED:
            if info.file_size > MAX_EXPANSION * info.compress_size + (1 << 20):
                raise ModelFileError(_bomb(path, name, info))
            inflated += info.file_size
        members[name[:-4]] = info
    if inflated > MAX_INFLATED_BYTES + MAX_EXPANSION * path.stat().st_size:
        raise ModelFileError(f"{path}: refused: compressed members inflate to {inflated} bytes")
    if "meta" not in members:
        raise ModelFileError(f"{path}: not a windowner model file (no metadata)")
    return members


def _bomb(path: Path, name: str, info: zipfile.ZipInfo) -> str:
    return (
        f"{path}: refused: member {_short(name)!r} would inflate from {info.compress_size} "
        f"to {info.file_size} bytes (a compression bomb; windowner writes uncompressed members)"
    )


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _expected_arrays(
    path: Path, meta: dict[str, Any], members: dict[str, zipfile.ZipInfo]
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Array name → (shape, dtype) as the metadata declares them; the same names as the
    zip's members (besides ``meta``), each a plain numeric or byte array."""
    declared = meta.get("arrays", {})
    if not isinstance(declared, dict):
        raise ModelFileError(f"{path}: unreadable metadata (arrays)")
    present = set(members) - {"meta"}
    if set(declared) != present:
        missing = sorted(set(declared) - present)[:10]
        extra = sorted(map(_short, present - set(declared)))[:10]
        raise ModelFileError(
            f"{path}: arrays do not match the metadata (missing {missing}, unexpected {extra})"
        )
    expected = {}
    for name, entry in declared.items():
        shape, dtype = entry if isinstance(entry, list) and len(entry) == 2 else (None, None)
        if not _is_shape(shape) or dtype not in ARRAY_DTYPES:
            raise ModelFileError(
                f"{path}: unreadable metadata for array {_short(name)!r}: {_short(repr(entry))}"
            )
        expected[name] = (tuple(shape), np.dtype(dtype))
    return expected


ARRAY_DTYPES = ("float16", "float32", "float64", "int32", "int64", "uint8", "uint32", "uint64")


def _is_shape(shape: Any) -> bool:
    return (
        isinstance(shape, list)
        and len(shape) <= 32
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    )


def _header(path: Path, fh: BinaryIO, name: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, header bytes) of the .npy stream ``fh``, read from its
    header alone; pickled/object dtypes are refused."""
    version = np.lib.format.read_magic(fh)
    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    if version not in readers:
        raise ModelFileError(f"{path}: member {name!r}: unsupported .npy version {version}")
    try:
        shape, fortran, dtype = readers[version](fh, MAX_HEADER_BYTES)
    except Exception as exc:  # numpy parses the header text with ast and tokenize
        raise ModelFileError(
            f"{path}: member {name!r}: unreadable .npy header ({type(exc).__name__})"
        ) from None
    if dtype.hasobject:
        raise ModelFileError(f"{path}: refused: {UNSAFE}")
    return shape, fortran, dtype, fh.tell()


def _check_header(
    path: Path,
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    expected: tuple[tuple[int, ...], np.dtype],
) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """The member's header against the metadata, and its size against the zip's record:
    exactly header + shape × itemsize bytes, so reading it later allocates what was checked."""
    name = info.filename[:-4]
    with archive.open(info) as fh:
        header = _header(path, fh, name)
    shape, _, dtype, header_bytes = header
    if shape != expected[0] or dtype != expected[1]:
        raise ModelFileError(
            f"{path}: array {name!r} is {dtype}{list(shape)}, "
            f"metadata says {expected[1]}{list(expected[0])}"
        )
    size = header_bytes + math.prod(shape) * dtype.itemsize
    if info.file_size != size:
        raise ModelFileError(
            f"{path}: array {name!r} is stored in {info.file_size} bytes; its header "
            f"{dtype}{list(shape)} needs {size}"
        )
    return header


def _read_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int):
    """A small .npy member (the metadata), refused when larger than ``limit`` bytes."""
    if info.file_size > limit:
        raise ModelFileError(f"{path}: metadata of {info.file_size} bytes (limit {limit})")
    with archive.open(info) as fh:
        shape, fortran, dtype, header_bytes = _header(path, fh, info.filename[:-4])
    return _read_array(path, archive, info, (shape, fortran, dtype, header_bytes))


def _read_array(
    path: Path,
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    header: tuple[tuple[int, ...], bool, np.dtype, int],
) -> np.ndarray:
    """The array of a checked member, read straight into a new array of its declared size."""
    shape, fortran, dtype, header_bytes = header
    if info.file_size != header_bytes + math.prod(shape) * dtype.itemsize:
        raise ModelFileError(f"{path}: member {info.filename!r} does not match its header")
    try:
        arr = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
    except MemoryError:
        raise ModelFileError(f"{path}: array {info.filename!r} is too large to load") from None
    view = memoryview(arr.reshape(-1).view(np.uint8))
    with archive.open(info) as fh:
        fh.read(header_bytes)
        filled = 0
        while filled < len(view):  # in 1 MiB pieces: no second copy of a large array
            n = fh.readinto(view[filled : filled + (1 << 20)])
            if not n:
                raise ModelFileError(f"{path}: member {info.filename!r} is truncated")
            filled += n
    return arr.T if fortran else arr


def _check_finite(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Refuse NaN or infinite weights (they would predict nothing but O, silently)."""
    for name, arr in arrays.items():
        if not name.startswith(("param/", "frozen/")) or arr.dtype.kind != "f":
            continue
        flat = arr.reshape(-1)
        for start in range(0, len(flat), 1 << 20):  # bounded temporaries for huge tables
            bad = np.flatnonzero(~np.isfinite(flat[start : start + (1 << 20)]))
            if len(bad):
                where = np.unravel_index(start + int(bad[0]), arr.shape)
                raise ModelFileError(
                    f"{path}: array {name!r} holds a non-finite value "
                    f"({flat[start + bad[0]]} at {tuple(map(int, where))})"
                )


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


def _read_meta(path: Path, raw: np.ndarray) -> dict[str, Any]:
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError("metadata must be UTF-8 bytes")
        meta = json.loads(array_text(raw))
    except (ValueError, UnicodeDecodeError, RecursionError):
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

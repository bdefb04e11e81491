"""Model files: .npz only, no pickles, validated against their metadata, written atomically."""

import io
import json
import os
import pickle
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from windowner.checkpoint import (
    atomic_open,
    atomic_write_text,
    load_npz,
    remove_stale_temporaries,
    save_npz,
)
from windowner.cli import app
from windowner.corpus import SPECIALS, Vocab
from windowner.errors import ModelFileError
from windowner.nn.model import ModelSpec, WindowScorer
from windowner.tagger import Tagger, load_checkpoint

from .conftest import strip_ansi

TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def tiny_tagger() -> Tagger:
    words = Vocab([*SPECIALS, "museums", "in", "paris", "are", "amazing"])
    spec = ModelSpec(vocab_size=len(words), n_out=len(TAGS), word_dim=4, caps_dim=2, hidden=6)
    model = WindowScorer.create(spec, np.random.default_rng(0))
    return Tagger(model=model, words=words, tags=TAGS)


@pytest.fixture
def model_file(tmp_path) -> Path:
    path = tmp_path / "model.npz"
    tiny_tagger().save(path)
    return path


def refused(path: Path, match: str) -> None:
    with pytest.raises(ModelFileError, match=match):
        Tagger.load(path)


class RunsCode:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_saved_model_loads_back_identically(model_file):
    tagger = tiny_tagger()
    loaded, _, meta = load_checkpoint(model_file)
    assert meta["format"] == "windowner-model" and meta["version"] == 1
    assert loaded.words.items == tagger.words.items and loaded.tags == TAGS
    for name, value in tagger.model.params.items():
        np.testing.assert_array_equal(loaded.model.params[name], value)
        assert loaded.model.params[name].dtype == value.dtype
    assert loaded.tag([["Museums", "in", "Paris"]]) == tagger.tag([["Museums", "in", "Paris"]])


def test_a_pickle_is_refused_and_nothing_from_it_runs(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps(RunsCode(marker)))
    refused(path, "refused: the file holds pickled or object data")
    assert not marker.exists()


def test_an_object_array_is_refused_and_nothing_from_it_runs(tmp_path, model_file):
    marker = tmp_path / "PWNED"
    arrays, meta = load_npz(model_file)
    arrays["param/b"] = np.array([RunsCode(marker)], dtype=object)
    path = tmp_path / "objects.npz"
    np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    refused(path, "refused: the file holds pickled or object data")
    assert not marker.exists()


def test_a_zip_member_that_is_not_an_array_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "zip.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("meta.pkl", pickle.dumps(RunsCode(marker)))
    refused(path, r"refused: members that are not \.npy arrays: \['meta\.pkl'\]")
    assert not marker.exists()


def test_not_npz_files(tmp_path, model_file):
    np.save(tmp_path / "one.npy", np.zeros(3))
    os.replace(tmp_path / "one.npy", tmp_path / "one.npz")
    refused(tmp_path / "one.npz", "a single .npy array")
    (tmp_path / "text.npz").write_text("hello")
    refused(tmp_path / "text.npz", r"not a windowner \.npz model file \(not a zip archive\)")
    (tmp_path / "empty.npz").write_bytes(b"")
    refused(tmp_path / "empty.npz", "the file is empty")
    refused(tmp_path / "missing.npz", "no such model file")
    other = tmp_path / "model.pkl"
    other.write_bytes(model_file.read_bytes())
    refused(other, r"model files are \.npz files \(this is \.pkl\)")
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.zeros(2))
    refused(plain, "not a windowner model file")


def test_every_truncation_gives_a_clear_error(tmp_path, model_file):
    data = model_file.read_bytes()
    cut = tmp_path / "cut.npz"
    for size in sorted({0, 1, 4, 10, 100, len(data) // 3, len(data) // 2, len(data) - 22}):
        cut.write_bytes(data[:size])
        with pytest.raises(ModelFileError):
            Tagger.load(cut)
    for size in range(len(data) - 200, len(data), 7):
        cut.write_bytes(data[:size])
        with pytest.raises(ModelFileError, match="truncated or corrupt|not a windowner"):
            Tagger.load(cut)


def test_a_flipped_byte_inside_an_array_is_caught(tmp_path, model_file):
    data = bytearray(model_file.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.getinfo("param/W.npy")
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    data[middle] ^= 0xFF
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(data))
    refused(bad, "truncated or corrupt")


def rewrite(model_file: Path, path: Path, arrays=None, meta=None, keep_meta=False) -> Path:
    """Save edited arrays/metadata (the shape table recomputed unless ``keep_meta``)."""
    old_arrays, old_meta = load_npz(model_file)
    arrays = old_arrays if arrays is None else arrays
    meta = old_meta if meta is None else meta
    if keep_meta:
        np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    else:
        save_npz(path, arrays, {k: v for k, v in meta.items() if k != "arrays"})
    return path


def test_shapes_dtypes_vocabulary_and_version_are_validated(tmp_path, model_file):
    arrays, meta = load_npz(model_file)
    # An array that disagrees with the stored shape/dtype table.
    table = dict(meta["arrays"], **{"param/b": [[6], "float64"]})
    path = rewrite(model_file, tmp_path / "a.npz", meta={**meta, "arrays": table}, keep_meta=True)
    refused(path, r"array 'param/b' is float32\[6\], metadata says float64\[6\]")
    # Parameters that disagree with the model spec.
    path = rewrite(model_file, tmp_path / "b.npz", {**arrays, "param/W": arrays["param/W"][:, 1:]})
    refused(path, r"parameter W is float32\(6, 29\), expected float32\(6, 30\)")
    path = rewrite(model_file, tmp_path / "c.npz", {**arrays, "param/U": arrays["param/U"] * 1.0})
    assert Tagger.load(path).model.params["U"].dtype == np.float32  # same dtype: fine
    path = rewrite(
        model_file, tmp_path / "d.npz", {**arrays, "param/U": arrays["param/U"].astype(np.float64)}
    )
    refused(path, "parameter U is float64")
    # The vocabulary size against the spec.
    spec = dict(meta["spec"], vocab_size=meta["spec"]["vocab_size"] + 1)
    path = rewrite(model_file, tmp_path / "e.npz", meta={**meta, "spec": spec})
    refused(path, "vocabulary has 8 words, spec says 9")
    # Missing arrays, unknown spec values, another format version, broken metadata.
    path = rewrite(model_file, tmp_path / "f.npz", {k: v for k, v in arrays.items() if k != "tags"})
    refused(path, "incomplete or inconsistent model file")
    spec = dict(meta["spec"], activation="os.system")
    path = rewrite(model_file, tmp_path / "g.npz", meta={**meta, "spec": spec})
    refused(path, "activation 'os.system' is unknown")
    path = rewrite(model_file, tmp_path / "h.npz", meta={**meta, "version": 2}, keep_meta=True)
    refused(path, "format version 2 is not supported")
    np.savez(tmp_path / "i.npz", meta=np.frombuffer(b"{not json", np.uint8), **arrays)
    refused(tmp_path / "i.npz", "unreadable metadata")


def test_cli_refuses_a_bad_model_with_exit_2(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps(RunsCode(marker)))
    result = CliRunner().invoke(app, ["predict", "--model", str(path), "Paris"])
    text = strip_ansi(result.output)
    assert result.exit_code == 2 and "refused" in text and "Traceback" not in text
    assert not marker.exists()


def test_an_interrupted_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.jsonl"
    atomic_write_text(path, "old\n")
    with pytest.raises(RuntimeError), atomic_open(path) as fh:
        fh.write(b"half a li")
        raise RuntimeError("killed")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]


def test_written_files_are_readable_by_others_under_the_usual_umask(tmp_path, model_file):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "config.yaml", "seed: 0\n")
        tiny_tagger().save(tmp_path / "shared.npz")
    finally:
        os.umask(old)
    for name in ("config.yaml", "shared.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / ".last.npz.abc123.tmp").write_bytes(b"partial")
    (tmp_path / "model.npz").write_bytes(b"keep")
    assert [p.name for p in remove_stale_temporaries(tmp_path)] == [".last.npz.abc123.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]

"""Hostile input: samplers that could loop, YAML bombs, inflated model files, odd data files.

Each case ends with a result or an exit-2 error class (ConfigError, DataError, ModelFileError),
quickly and in bounded memory; the subprocess tests (marked slow) check the CLI's exit code,
message, CPU time and peak RSS for each case of issue 13.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from windowner import config as cfg
from windowner.checkpoint import MAX_MEMBERS, load_npz
from windowner.corpus import MAX_ENTITY_TYPES, MAX_LINE_BYTES, SPECIALS, read_conll
from windowner.errors import ConfigError, DataError, ModelFileError
from windowner.tagger import Tagger
from windowner.windows import Encoded, NegativeSampler, unigram_weights

from .conftest import write
from .tiny_runs import write_config

HUGE_POWERS = (100.0, 200.0, 1e10, 1e308)


# ----------------------------------------------------------------------------- the sampler


def encoded_of(words: list[int], tags: list[int] | None = None, window: int = 3) -> Encoded:
    """One sentence of word ids (>= 3) as an Encoded corpus."""
    half = window // 2
    flat = [1] * half + list(words) + [2] * half
    return Encoded(
        words=np.asarray(flat, dtype=np.int32),
        caps=np.zeros(len(flat), dtype=np.int32),
        centers=np.arange(half, half + len(words), dtype=np.int64),
        tags=np.asarray(tags if tags is not None else [0] * len(words), dtype=np.int32),
        sent_bounds=np.asarray([0, len(words)], dtype=np.int64),
        window=window,
    )


# word 3 is far the most frequent, 5 the rarest
SKEWED = [3] * 1000 + [4] * 10 + [5] * 1 + [6] * 100


def expected_without(counts: np.ndarray, power: float, excluded: int) -> np.ndarray:
    """The exact distribution ∝ count^power over words other than ``excluded``, computed
    with Python floats in log space (independent of the code under test)."""
    logs = {w: np.log(c) for w, c in enumerate(counts) if c > 0 and w != excluded}
    top = max(logs.values())
    weights = np.zeros(len(counts))
    with np.errstate(over="ignore"):
        for w, value in logs.items():
            weights[w] = np.exp(power * (value - top)) if value < top else 1.0
    return weights / weights.sum()


@pytest.mark.parametrize("power", [0.0, 0.75, 1.0, *HUGE_POWERS])
def test_center_corruption_ends_and_draws_the_exact_distribution(power):
    enc = encoded_of(SKEWED)
    counts = np.bincount(SKEWED, minlength=7).astype(float)
    sampler = NegativeSampler(enc, 7, "center", k=4, power=power)
    words, caps = enc.windows()
    start = time.process_time()
    neg_w, neg_c = sampler.sample(words, caps, np.random.default_rng(0))
    assert time.process_time() - start < 1.0
    original = np.tile(words[:, 1], 4)
    assert (neg_w[:, 1] != original).all() and (neg_w[:, 1] >= len(SPECIALS)).all()
    np.testing.assert_array_equal(neg_c, np.tile(caps, (4, 1)))
    for excluded in (3, 6):  # the heaviest word, and another
        drawn = neg_w[original == excluded, 1]
        freq = np.bincount(drawn, minlength=7) / len(drawn)
        exact = expected_without(counts, power, excluded)
        tolerance = 4 * np.sqrt(exact * (1 - exact) / len(drawn)) + 1e-12
        assert (np.abs(freq - exact) <= tolerance).all(), (power, excluded, freq, exact)


@pytest.mark.parametrize("power", [0.0, 0.75, *HUGE_POWERS])
def test_unigram_weights_are_finite_and_never_nan(power):
    counts = np.array([0, 0, 0, 1000, 10, 1, 100, 0], dtype=float)
    weights = unigram_weights(counts, power)
    assert np.isfinite(weights).all() and (weights >= 0).all()
    assert (weights[counts == 0] == 0).all()  # specials and unseen words are never drawn
    assert weights.argmax() == counts.argmax() and weights.sum() > 0


def test_usual_powers_keep_the_plain_formula():
    counts = np.array([0, 0, 0, 7, 3, 1], dtype=float)
    np.testing.assert_array_equal(
        unigram_weights(counts, 0.75), np.where(counts > 0, counts**0.75, 0)
    )


def test_draw_excluding_is_exact_when_one_word_holds_all_the_mass():
    enc = encoded_of(SKEWED)
    sampler = NegativeSampler(enc, 7, "center", k=1, power=1e308)
    rows = np.full(20000, 3, dtype=np.int32)
    drawn = sampler.draw_excluding(rows, np.random.default_rng(1))
    # without word 3, the mass of count^1e308 is all on the next most frequent word
    second = int(np.argsort(np.bincount(SKEWED))[-2])
    assert (drawn == second).all()


def test_one_word_vocabulary_is_a_data_error():
    with pytest.raises(DataError, match="at least two distinct words"):
        NegativeSampler(encoded_of([5, 5, 5]), 6, "center", k=1)
    with pytest.raises(DataError, match="at least two distinct words"):
        NegativeSampler(encoded_of([5, 5, 5]), 6, "mixed", k=1)
    NegativeSampler(encoded_of([5, 5, 5]), 6, "non_entity", k=1)  # needs no other word


def test_non_entity_without_o_tokens_is_a_data_error():
    enc = encoded_of([3, 4, 5], tags=[1, 2, 1])
    for strategy in ("non_entity", "mixed"):
        with pytest.raises(DataError, match="tagged O"):
            NegativeSampler(enc, 6, strategy, k=1)


# ----------------------------------------------------------------------------- config loader


def alias_bomb(levels: int = 8) -> str:
    """~400 bytes that expand to 10^levels strings when aliases are followed."""
    lines = ["a: &a [" + ",".join(['"xxxxxxxxxx"'] * 10) + "]"]
    names = "abcdefghij"
    for prev, name in zip(names, names[1 : levels + 1], strict=False):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    lines.append(f"seed: *{names[levels - 1]}")
    return "\n".join(lines) + "\n"


def config_problem(tmp_path: Path, text: str, *overrides: str) -> str:
    path = write(tmp_path / "c.yaml", text)
    with pytest.raises(ConfigError) as info:
        cfg.load_config(path, list(overrides))
    return str(info.value)


def test_alias_bomb_is_refused_without_expanding(tmp_path):
    text = alias_bomb()
    assert len(text.encode()) < 500
    tracemalloc.start()
    start = time.process_time()
    message = config_problem(tmp_path, text)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "anchors and aliases" in message and ":1:" in message
    assert time.process_time() - start < 1.0 and peak < 10 * 2**20


@pytest.mark.parametrize(
    "text",
    ["model: &m {hidden: 3}\n", "model: {hidden: 3}\nfeatures: *m\n", "<<: *base\n"],
)
def test_every_anchor_and_alias_is_refused(tmp_path, text):
    assert "anchors and aliases" in config_problem(tmp_path, text)


def test_alias_in_a_set_override_is_refused(tmp_path):
    assert "anchors and aliases" in config_problem(tmp_path, "", "model.hidden=&a 3")


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 50000 + "]" * 50000 + "\n",
        "a: " + "{a: " * 20000 + "1" + "}" * 20000 + "\n",
        "".join("  " * i + "a:\n" for i in range(2000)),
    ],
)
def test_deep_nesting_is_a_plain_config_error(tmp_path, text):
    if len(text) > cfg.MAX_CONFIG_BYTES:
        text = text[: cfg.MAX_CONFIG_BYTES // 2] + text[-cfg.MAX_CONFIG_BYTES // 2 :]
    assert f"nested deeper than {cfg.MAX_DEPTH} levels" in config_problem(tmp_path, text)


def test_negative_seed_is_refused(tmp_path):
    assert "seed: must be >= 0, got -1" in config_problem(tmp_path, "seed: -1\n")


@pytest.mark.parametrize(
    ("key", "value"),
    [("model.hidden", 10**7), ("features.window", 100001), ("embeddings.dim", 10**6)],
)
def test_resource_limits_are_refused_with_the_memory_needed(tmp_path, key, value):
    message = config_problem(tmp_path, "", f"{key}={value}")
    assert f"{key}: must be <= {cfg.LIMITS[key]} (a resource limit)" in message
    assert "GiB before counting the vocabulary" in message


def test_memory_estimate_of_the_defaults_is_small():
    assert cfg.memory_estimate(cfg.Config()) < cfg.MEMORY_LIMIT / 10


def test_an_integer_of_thousands_of_digits_is_a_config_error(tmp_path):
    assert "unreadable value" in config_problem(tmp_path, "seed: " + "9" * 5000 + "\n")


def test_large_and_binary_config_files_are_refused_unread(tmp_path):
    big = "# padding\n" * (cfg.MAX_CONFIG_BYTES // 10 + 1)
    assert f"larger than {cfg.MAX_CONFIG_BYTES} bytes" in config_problem(tmp_path, big)
    with pytest.raises(ConfigError, match="larger than"):
        cfg.load_config("/dev/zero")
    (tmp_path / "nul.yaml").write_bytes(b"seed: 1\x00\n")
    with pytest.raises(ConfigError, match="NUL byte at byte 7"):
        cfg.load_config(tmp_path / "nul.yaml")


def test_values_shown_in_messages_are_truncated(tmp_path):
    text = f"seed: {'x' * 20000}\nmodel:\n  activation: {'y' * 20000}\n? {'z' * 20000}\n: 1\n"
    message = config_problem(tmp_path, text)
    assert len(message) < 2000
    assert message.count("… (2000") == 3  # 20000 characters, 20002 with quotes


def test_thousands_of_problems_are_capped(tmp_path):
    text = "".join(f"key{i}: 1\n" for i in range(500))
    message = config_problem(tmp_path, text)
    assert f"… and {500 - cfg.MAX_PROBLEMS} more problems" in message
    assert message.count("unknown key") == cfg.MAX_PROBLEMS


def test_config_from_a_fifo_is_read_once(tmp_path):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_text, args=("seed: 4\n",))
    writer.start()
    assert cfg.load_config(fifo).seed == 4
    writer.join()


YAML_ALPHABET = list("ab:-[]{}&*!|>'\"#,?%@`\\ \t\n0123456789.e+") + ["\u00a0", "\x85", "model"]
CONFIG_KEYS = ["seed", "model", "hidden", "features", "window", "negatives", "power", "data"]


def yaml_scalars() -> st.SearchStrategy:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=30),
    )


def yaml_documents() -> st.SearchStrategy:
    values = st.recursive(
        yaml_scalars(),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(CONFIG_KEYS) | st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=20,
    )
    return st.dictionaries(st.sampled_from(CONFIG_KEYS), values, max_size=5).map(yaml.safe_dump)


@settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.one_of(
        st.lists(st.sampled_from(YAML_ALPHABET), max_size=200).map("".join),
        yaml_documents(),
        st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    ),
    overrides=st.lists(st.text(max_size=20).map(lambda t: f"model.hidden={t}"), max_size=2),
)
def test_fuzzed_configs_load_or_raise_config_error(tmp_path, text, overrides):
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    try:
        result = cfg.load_config(path, overrides)
    except ConfigError as exc:
        assert str(exc) and len(str(exc)) < 20000
    else:
        assert isinstance(result, cfg.Config)


@settings(
    max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=400))
def test_fuzzed_config_bytes_load_or_raise_config_error(tmp_path, raw):
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(raw)
    with contextlib.suppress(ConfigError):
        assert isinstance(cfg.load_config(path), cfg.Config)


# ----------------------------------------------------------------------------- model files


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A trained tiny model.npz (2 epochs of the tiny config)."""
    from typer.testing import CliRunner

    from windowner.cli import app

    directory = tmp_path_factory.mktemp("hostile-model")
    config = write_config(directory)
    out = directory / "run"
    result = CliRunner().invoke(
        app, ["train", "--config", str(config), "--set", "train.epochs=2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out / "model.npz"


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def rewrite(
    src: Path,
    dst: Path,
    members: dict[str, bytes] | None = None,
    meta_arrays: dict[str, list] | None = None,
    compression: int = zipfile.ZIP_STORED,
) -> Path:
    """A copy of model ``src`` with members replaced or added (``members``, by zip name) and
    the metadata's array declarations changed (``meta_arrays``)."""
    members = dict(members or {})
    with zipfile.ZipFile(src) as zin:
        original = {info.filename: zin.read(info) for info in zin.infolist()}
    meta = json.loads(np.load(io.BytesIO(original["meta.npy"])).tobytes())
    meta["arrays"].update(meta_arrays or {})
    original["meta.npy"] = npy_bytes(np.frombuffer(json.dumps(meta).encode(), np.uint8))
    original.update(members)
    with zipfile.ZipFile(dst, "w", compression=compression) as zout:
        for name, data in original.items():
            zout.writestr(name, data)
    return dst


def add_deflated_zeros(path: Path, mib: int) -> Path:
    """Append a deflated member ``junk.npy``: an .npy of ``mib`` MiB of zeros (~1000x smaller
    compressed), streamed so that the test itself never holds it."""
    with (
        zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("junk.npy", "w", force_zip64=True) as fh,
    ):
        fh.write(npy_header((mib << 20,), "|u1"))
        for _ in range(mib):
            fh.write(bytes(1 << 20))
    return path


def test_a_deflated_extra_member_is_refused_before_inflating(model, tmp_path):
    bomb = add_deflated_zeros(rewrite(model, tmp_path / "bomb.npz"), 64)
    assert bomb.stat().st_size < 1 << 20
    tracemalloc.start()
    with pytest.raises(ModelFileError, match="compression bomb"):
        load_npz(bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20


def test_many_small_bombs_are_refused_by_their_total(model, tmp_path):
    path = rewrite(model, tmp_path / "many.npz")
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        for i in range(48):  # each 1 MiB of zeros is within the per-member allowance
            z.writestr(f"junk{i}.npy", npy_header((1 << 20,), "|u1") + bytes(1 << 20))
    with pytest.raises(ModelFileError, match="compressed members inflate to"):
        load_npz(path)


def test_a_header_declaring_2_to_the_40_is_refused_unallocated(model, tmp_path):
    b = np.load(model)["param/b"]
    lying = npy_header((2**40,)) + b.tobytes()
    path = rewrite(
        model, tmp_path / "huge.npz", {"param/b.npy": lying}, {"param/b": [[2**40], "float32"]}
    )
    with pytest.raises(ModelFileError, match=r"param/b.*stored in \d+ bytes; its header"):
        load_npz(path)
    path = rewrite(model, tmp_path / "huge2.npz", {"param/b.npy": lying})
    with pytest.raises(ModelFileError, match="metadata says float32"):
        load_npz(path)


def test_a_member_longer_than_its_header_is_refused(model, tmp_path):
    b = np.load(model)["param/b"]
    path = rewrite(model, tmp_path / "long.npz", {"param/b.npy": npy_bytes(b) + bytes(4096)})
    with pytest.raises(ModelFileError, match="stored in"):
        load_npz(path)


def test_deflated_models_still_load(model, tmp_path):
    path = rewrite(model, tmp_path / "deflated.npz", compression=zipfile.ZIP_DEFLATED)
    arrays, _ = load_npz(path)
    plain, _ = load_npz(model)
    assert arrays.keys() == plain.keys()
    for name in plain:
        np.testing.assert_array_equal(arrays[name], plain[name])
    Tagger.load(path)


def test_fortran_ordered_arrays_load(model, tmp_path):
    W = np.load(model)["param/W"]
    path = rewrite(
        model, tmp_path / "fortran.npz", {"param/W.npy": npy_bytes(np.asfortranarray(W))}
    )
    np.testing.assert_array_equal(load_npz(path)[0]["param/W"], W)


def test_encrypted_and_unknown_compression_members_are_refused(model, tmp_path):
    path = tmp_path / "lzma.npz"
    rewrite(model, path, compression=zipfile.ZIP_LZMA)
    with pytest.raises(ModelFileError, match="compression method 14"):
        load_npz(path)
    path = tmp_path / "encrypted.npz"
    raw = bytearray(model.read_bytes())
    central = raw.index(b"PK\x01\x02")  # the first central directory record
    raw[central + 8] |= 0x1  # its general-purpose flags: "encrypted"
    path.write_bytes(raw)
    assert zipfile.ZipFile(path).infolist()[0].flag_bits & 0x1
    with pytest.raises(ModelFileError, match="is encrypted"):
        load_npz(path)


def test_too_many_members_are_refused(model, tmp_path):
    extra = {f"x{i}.npy": npy_bytes(np.zeros(0, np.uint8)) for i in range(MAX_MEMBERS)}
    with pytest.raises(ModelFileError, match="zip members"):
        load_npz(rewrite(model, tmp_path / "members.npz", extra))


def test_deeply_nested_metadata_is_refused(model, tmp_path):
    meta = npy_bytes(np.frombuffer(b"[" * 100000 + b"]" * 100000, np.uint8))
    with pytest.raises(ModelFileError, match="unreadable metadata"):
        load_npz(rewrite(model, tmp_path / "deep.npz", {"meta.npy": meta}))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused(model, tmp_path, bad):
    E = np.load(model)["param/E_word"].copy()
    E[5, 1] = bad
    path = rewrite(model, tmp_path / "nan.npz", {"param/E_word.npy": npy_bytes(E)})
    with pytest.raises(
        ModelFileError, match=r"'param/E_word' holds a non-finite value .* \(5, 1\)"
    ):
        Tagger.load(path)


@settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzzed_model_bytes_load_or_raise_model_file_error(model, tmp_path, data):
    raw = bytearray(model.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(raw) // 2, len(raw)))
    path = tmp_path / "fuzz.npz"
    path.write_bytes(bytes(raw[:cut]))
    try:
        arrays, meta = load_npz(path)
    except ModelFileError as exc:
        assert str(exc).startswith(f"{path}:")
    else:
        assert isinstance(meta, dict) and all(isinstance(a, np.ndarray) for a in arrays.values())


# ----------------------------------------------------------------------------- CoNLL reader


@pytest.mark.parametrize(
    "space", ["\u00a0", "\u2003", "\u3000", "\u202f", "\x1c", "\x85", "\u2028", "\x0c"]
)
def test_unicode_spaces_and_breaks_stay_inside_a_token(tmp_path, space):
    path = write(tmp_path / "x.conll", f"New{space}York B-LOC\nis\tO\n\n")
    (sentence,) = read_conll(path)
    assert sentence.tokens == (f"New{space}York", "is") and sentence.tags == ("B-LOC", "O")


def test_cr_lf_and_lone_cr_still_end_lines(tmp_path):
    path = tmp_path / "x.conll"
    path.write_bytes(b"Paris B-LOC\r\nis O\rnice O\n\r\nRome B-LOC\n")
    assert [s.tokens for s in read_conll(path)] == [("Paris", "is", "nice"), ("Rome",)]


def fifo_with(tmp_path: Path, content: bytes) -> Path:
    """A FIFO that a background thread opens, fills with ``content`` and closes."""
    fifo = tmp_path / "data.fifo"
    os.mkfifo(fifo)
    threading.Thread(target=fifo.write_bytes, args=(content,), daemon=True).start()
    return fifo


def test_an_empty_fifo_is_read_once_and_reported_empty(tmp_path):
    with pytest.raises(DataError, match="data.fifo:1: file is empty"):
        read_conll(fifo_with(tmp_path, b""))


def test_a_fifo_without_sentences_is_read_once(tmp_path):
    with pytest.raises(DataError, match="holds no sentence"):
        read_conll(fifo_with(tmp_path, b"-DOCSTART- -X- O O\n\n"))


def test_dev_zero_is_refused_at_once():
    tracemalloc.start()
    start = time.process_time()
    with pytest.raises(DataError, match="/dev/zero:1: NUL byte"):
        read_conll("/dev/zero")
    assert time.process_time() - start < 1.0
    assert tracemalloc.get_traced_memory()[1] < 4 * MAX_LINE_BYTES
    tracemalloc.stop()


def test_overlong_line_and_nul_bytes_name_their_line(tmp_path):
    path = tmp_path / "long.conll"
    path.write_bytes(b"a O\n\n" + b"x" * (MAX_LINE_BYTES + 1) + b" O\n")
    with pytest.raises(DataError, match=f"long.conll:3: line longer than {MAX_LINE_BYTES}"):
        read_conll(path)
    path.write_bytes(b"a O\nb\x00 O\n")
    with pytest.raises(DataError, match="long.conll:2: NUL byte"):
        read_conll(path)


def test_entity_types_are_bounded(tmp_path):
    types = [f"w{i} B-T{i}\n\n" for i in range(MAX_ENTITY_TYPES + 1)]
    path = write(tmp_path / "types.conll", "".join(types[:-1]))
    assert len(read_conll(path)) == MAX_ENTITY_TYPES
    path = write(tmp_path / "types.conll", "".join(types))
    line = 2 * MAX_ENTITY_TYPES + 1
    with pytest.raises(DataError, match=f"types.conll:{line}: more than {MAX_ENTITY_TYPES} entity"):
        read_conll(path)


def test_long_bad_lines_are_shown_truncated(tmp_path):
    path = write(tmp_path / "x.conll", "y" * 5000 + "\n")
    with pytest.raises(DataError, match=r"\(5000 characters\)") as info:
        read_conll(path)
    assert len(str(info.value)) < 300


CONLL_ALPHABET = list(" \t\n\rOBI-X0") + ["PER", "-DOCSTART-", "\u00a0", "\x00", "\u2028", "é"]


@settings(
    max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.one_of(
        st.binary(max_size=400),
        st.lists(st.sampled_from(CONLL_ALPHABET), max_size=120).map(lambda p: "".join(p).encode()),
    )
)
def test_fuzzed_conll_reads_or_raises_data_error(tmp_path, raw):
    path = tmp_path / "fuzz.conll"
    path.write_bytes(raw)
    try:
        sentences = read_conll(path)
    except DataError as exc:
        assert str(exc).startswith(f"{path}:")
        return
    assert sentences
    for sent in sentences:
        assert len(sent.tokens) == len(sent.tags) > 0
        assert all(tok and " " not in tok and "\t" not in tok for tok in sent.tokens)


# ----------------------------------------------------------------------------- the CLI


MEMORY_TARGET = 200 << 20
CPU_TARGET = 5.0


# Runs windowner as its own child so that RUSAGE_CHILDREN measures windowner alone.
MEASURE = """
import json, resource, subprocess, sys
done = subprocess.run([sys.executable, "-m", "windowner", *sys.argv[1:]], stdout=subprocess.DEVNULL)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu, rss = usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024
print(json.dumps({"code": done.returncode, "cpu": cpu, "rss": rss}))
"""


def run_cli(args: list[str | Path], cwd: Path, stdin: bytes = b"") -> tuple[int, str, float, int]:
    """``windowner ARGS`` in a fresh process: (exit code, stderr, CPU seconds, peak RSS bytes).
    A process still running after 60 s (a hang) is killed, with its group, and fails the test."""
    env = {k: v for k, v in os.environ.items() if k != "WINDOWNER_DEBUG"}
    proc = subprocess.Popen(
        [sys.executable, "-c", MEASURE, *map(str, args)],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(stdin, timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"windowner {args} still running after 60 s")
    result = json.loads(out)
    return result["code"], err.decode("utf-8", "replace"), result["cpu"], result["rss"]


@pytest.fixture(scope="module")
def inputs(model, tmp_path_factory) -> dict[str, list]:
    """Case name → windowner arguments, for every hostile input of issue 13."""
    d = tmp_path_factory.mktemp("hostile-inputs")
    base = yaml.safe_load(write_config(d / "tiny").read_text())
    dev = base["data"]["dev"]

    def config(name: str, **changes) -> Path:
        data = json.loads(json.dumps(base))
        for key, value in changes.items():
            section, _, field = key.partition("__")
            if field:
                data.setdefault(section, {})[field] = value
            else:
                data[section] = value
        return write(d / f"{name}.yaml", yaml.safe_dump(data))

    (d / "one.conll").write_text("Paris B-LOC\nParis O\n\n")
    (d / "no_o.conll").write_text("Paris B-LOC\nRome B-LOC\n\n")
    (d / "bomb.yaml").write_text(alias_bomb())
    (d / "deep.yaml").write_text("a: " + "[" * 30000 + "]" * 30000 + "\n")
    (d / "nbsp.conll").write_text("New\u00a0York B-LOC\nis O\n\n")
    many = "".join(f"w{i} B-T{i}\n\n" for i in range(60000))  # ~1 MB; decoding is types^2
    (d / "types.conll").write_text(many)
    npz_bomb = add_deflated_zeros(rewrite(model, d / "bomb.npz"), 256)
    b = np.load(model)["param/b"]
    huge = rewrite(
        model,
        d / "huge.npz",
        {"param/b.npy": npy_header((2**40,)) + b.tobytes()},
        {"param/b": [[2**40], "float32"]},
    )
    W = np.load(model)["param/W"].copy()
    W[0, 0] = np.nan
    nan = rewrite(model, d / "nan.npz", {"param/W.npy": npy_bytes(W)})
    train = ["train", "--set", "train.epochs=1", "--out", "run", "--config"]  # in the cwd
    single = {"data__dev": None, "data__test": None, "negatives__k": 1}
    return {
        "power-1e308": [*train, config("p", negatives__power=1e308, negatives__k=2)],
        "power-100-mixed": [
            *train,
            config("p100", negatives__power=100.0, negatives__strategy="mixed", negatives__k=2),
        ],
        "one-word": [*train, config("one", data__train=str(d / "one.conll"), **single)],
        "no-o": [
            *train,
            config(
                "no_o",
                data__train=str(d / "no_o.conll"),
                negatives__strategy="non_entity",
                **single,
            ),
        ],
        "alias-bomb": [*train, d / "bomb.yaml"],
        "deep-yaml": [*train, d / "deep.yaml"],
        "seed-1": [*train, config("seed", seed=-1)],
        "hidden-1e7": [*train, config("hidden", model__hidden=10**7)],
        "window-100001": [*train, config("window", features__window=100001)],
        "npz-bomb": ["eval", "--model", npz_bomb, "--data", dev],
        "npz-2^40": ["eval", "--model", huge, "--data", dev],
        "npz-nan": ["eval", "--model", nan, "--data", dev],
        "conll-nbsp": ["eval", "--model", model, "--data", d / "nbsp.conll"],
        "dev-zero": ["eval", "--model", model, "--data", "/dev/zero"],
        "train-dev-zero": [*train, config("zero", data__train="/dev/zero")],
        "many-types": [*train, config("types", data__train=str(d / "types.conll"), **single)],
        "stdin-no-sentence": ["eval", "--model", model, "--data", "/dev/stdin"],
    }


# case → (exit code, a piece of the message); stdin for the /dev/stdin case
EXPECTED = {
    "power-1e308": (0, ""),
    "power-100-mixed": (0, ""),
    "one-word": (2, "needs at least two distinct words"),
    "no-o": (2, "tagged O"),
    "alias-bomb": (2, "anchors and aliases"),
    "deep-yaml": (2, "nested deeper than"),
    "seed-1": (2, "seed: must be >= 0"),
    "hidden-1e7": (2, "GiB before counting the vocabulary"),
    "window-100001": (2, "features.window: must be <= 201"),
    "npz-bomb": (2, "compression bomb"),
    "npz-2^40": (2, "its header float32[1099511627776]"),
    "npz-nan": (2, "holds a non-finite value"),
    "conll-nbsp": (0, ""),
    "dev-zero": (2, "/dev/zero:1: NUL byte"),
    "train-dev-zero": (2, "/dev/zero:1: NUL byte"),
    "many-types": (2, f"types.conll:{2 * MAX_ENTITY_TYPES + 1}: more than"),
    "stdin-no-sentence": (2, "/dev/stdin:1: file holds no sentence"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_cli_ends_every_hostile_case_quickly_in_bounded_memory(inputs, tmp_path, case):
    stdin = b"-DOCSTART- -X- O O\n\n" if case == "stdin-no-sentence" else b""
    code, err, cpu, rss = run_cli(inputs[case], tmp_path, stdin)
    want_code, want_text = EXPECTED[case]
    assert (code, "Traceback" in err, "unexpected" in err) == (want_code, False, False), err
    assert want_text in err
    assert cpu < CPU_TARGET and rss < MEMORY_TARGET, (case, cpu, rss)


@pytest.mark.slow
def test_cli_reads_an_empty_fifo_once(model, tmp_path):
    fifo = tmp_path / "data.fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"exec 3>'{fifo}'; sleep 0.5"])
    code, err, _, _ = run_cli(["eval", "--model", model, "--data", fifo], tmp_path)
    writer.wait()
    assert code == 2 and "data.fifo:1: file is empty" in err

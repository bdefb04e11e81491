"""Run configuration: frozen dataclasses with defaults, read from YAML with ``yaml.safe_load``.

Every problem in a file (unknown key, wrong type, value out of range, unknown name) is collected
and reported together, each with its key path; unknown keys get a "did you mean" suggestion.
``--set key.path=value`` overrides are parsed as YAML scalars and checked the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from windowner.corpus import CAPS_CLASSES, DEFAULT_SCHEME, SCHEMES
from windowner.decode import DECODERS
from windowner.errors import ConfigError
from windowner.nn.activations import ACTIVATIONS
from windowner.nn.initializers import INITIALIZERS
from windowner.nn.losses import OBJECTIVES, SENTENCE_OBJECTIVES
from windowner.optim.optimizers import OPTIMIZERS, OptimizerSettings
from windowner.optim.schedules import SCHEDULES, UNITS, ScheduleSettings
from windowner.windows import NEGATIVE_STRATEGIES

PREPROCESSING = ("none", "mean", "standardize", "whiten")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class DataConfig:
    """Paths may use ``${VAR}`` or ``${VAR:-default}`` environment references."""

    train: str = "data/train.conll"
    dev: str | None = "data/dev.conll"
    test: str | None = "data/test.conll"
    scheme: str = DEFAULT_SCHEME


@dataclass(frozen=True)
class FeaturesConfig:
    window: int = 5
    lowercase: bool = True
    digits_to_zero: bool = True
    min_count: int = 1
    caps_dim: int = 5
    # extra window features (windowner.features), each its own embedding table; 0 = off
    affix_dim: int = 0  # prefix and suffix tables of affix_min … affix_max characters
    affix_min: int = 2
    affix_max: int = 4
    shape_dim: int = 0  # word shape (Xxx, XX, dd-dd, …)
    feature_min_count: int = 2  # rarer affixes/shapes map to <unk>
    # document-level features (windowner.docfeatures), each its own table; 0 = off
    doccase_dim: int = 0  # how the word is written elsewhere in the document
    docseq_dim: int = 0  # the word is in a capitalised run elsewhere in the document
    gazetteer_dim: int = 0  # name-list match (windowner.gazetteer, the gazetteer extra)

    def _tables(self) -> tuple[tuple[str, int, int], ...]:
        """(name, dim, slots) of every extra table, in x's column order (the document-level
        ones last); slots: rows a token looks up (2 per affix length, else 1)."""
        n_affix = 2 * max(self.affix_max - self.affix_min + 1, 0)
        return (
            ("affix", self.affix_dim, n_affix),
            ("shape", self.shape_dim, 1),
            ("doccase", self.doccase_dim, 1),
            ("docseq", self.docseq_dim, 1),
            ("gazetteer", self.gazetteer_dim, 1),
        )

    def table_names(self) -> tuple[str, ...]:
        """The extra feature tables these settings turn on, in x's column order."""
        return tuple(n for n, d, _ in self._tables() if d)

    def table_dims(self) -> tuple[int, ...]:
        return tuple(d for _, d, _ in self._tables() if d)

    def table_slots(self) -> tuple[int, ...]:
        """Rows each token looks up per table: 2 per affix length (prefix, suffix), else 1."""
        return tuple(k for _, d, k in self._tables() if d)


@dataclass(frozen=True)
class EmbeddingsConfig:
    dim: int = 50
    init: str = "random"
    scale: float = 0.1
    train: bool = True
    preprocess: str = "none"
    keep_pretrained: int = 0


@dataclass(frozen=True)
class ModelConfig:
    hidden: int = 100
    activation: str = "tanh"
    leaky_slope: float = 0.01
    initializer: str = "xavier_uniform"
    init_scale: float = 0.1
    keep_prob: float = 1.0
    input_keep_prob: float = 1.0
    objective: str = "multiclass"
    margin: float = 1.0
    l2: float = 0.0
    l2_embeddings: bool = False
    decode: str = "viterbi"
    dtype: str = "float32"


@dataclass(frozen=True)
class NegativesConfig:
    strategy: str = "center"
    k: int = 0
    power: float = 0.75


@dataclass(frozen=True)
class OptimizerConfig(OptimizerSettings):
    """The optimizer's own settings (name, momentum, betas, decay, eps, fan_in_scaling) plus
    the base learning rate, which the schedule turns into lr(t)."""

    lr: float = 0.001


@dataclass(frozen=True)
class ScheduleConfig(ScheduleSettings):
    """The schedule's name and shape (name, factor, every, k, tau, unit); with the base
    learning rate, ``Schedule.from_config`` turns it into lr(t)."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    patience: int = 0
    shuffle: bool = True
    threads: int | str = "auto"  # BLAS threads: "auto" (windowner.threads) or a number


@dataclass(frozen=True)
class Config:
    seed: int = 0
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    embeddings: EmbeddingsConfig = field(default_factory=EmbeddingsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    negatives: NegativesConfig = field(default_factory=NegativesConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------- choices and ranges

CHOICES: dict[str, tuple[str, ...]] = {
    "data.scheme": SCHEMES,
    "model.activation": tuple(ACTIVATIONS),
    "model.initializer": tuple(INITIALIZERS),
    "model.objective": OBJECTIVES,
    "model.decode": DECODERS,
    "model.dtype": DTYPES,
    "embeddings.preprocess": PREPROCESSING,
    "negatives.strategy": NEGATIVE_STRATEGIES,
    "optimizer.name": OPTIMIZERS,
    "schedule.name": SCHEDULES,
    "schedule.unit": UNITS,
}

# Resource limits: far above any sensible run, far below what would exhaust a machine; a config
# past one is refused before anything is read or allocated (see also ``memory_estimate``).
LIMITS: dict[str, int] = {
    "seed": 2**64 - 1,
    "features.window": 201,
    "features.caps_dim": 10_000,
    "features.affix_dim": 10_000,
    "features.affix_max": 64,
    "features.shape_dim": 10_000,
    "features.doccase_dim": 10_000,
    "features.docseq_dim": 10_000,
    "features.gazetteer_dim": 10_000,
    "embeddings.dim": 10_000,
    "embeddings.keep_pretrained": 50_000_000,
    "model.hidden": 100_000,
    "negatives.k": 1_000,
    "train.epochs": 1_000_000,
    "train.batch_size": 1_000_000,
    "train.patience": 1_000_000,
    "train.threads": 1_024,
}
MEMORY_LIMIT = 8 * 2**30  # bytes the config-determined arrays may need, before the vocabulary
SCORING_ROWS = 65536  # windows scored at once when evaluating (train.SCORE_CHUNK)
SENTENCE_TOKENS = 128  # tokens of a long sentence (CoNLL-2003's longest: 124), for crf batches

# key path → (test, what the value must be)
RANGES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "seed": (lambda v: v >= 0, ">= 0"),
    "features.window": (lambda v: v > 0 and v % 2 == 1, "a positive odd number"),
    "features.min_count": (lambda v: v >= 1, ">= 1"),
    "features.caps_dim": (lambda v: v >= 0, ">= 0 (0 turns the feature off)"),
    "features.affix_dim": (lambda v: v >= 0, ">= 0 (0 turns the feature off)"),
    "features.affix_min": (lambda v: v >= 1, ">= 1"),
    "features.affix_max": (lambda v: v >= 1, ">= 1"),
    "features.shape_dim": (lambda v: v >= 0, ">= 0 (0 turns the feature off)"),
    "features.doccase_dim": (lambda v: v >= 0, ">= 0 (0 turns the feature off)"),
    "features.docseq_dim": (lambda v: v >= 0, ">= 0 (0 turns the feature off)"),
    "features.gazetteer_dim": (lambda v: v >= 0, ">= 0 (0 turns the feature off)"),
    "features.feature_min_count": (lambda v: v >= 1, ">= 1"),
    "embeddings.dim": (lambda v: v > 0, "> 0"),
    "embeddings.scale": (lambda v: v > 0, "> 0"),
    "embeddings.keep_pretrained": (lambda v: v >= 0, ">= 0"),
    "model.hidden": (lambda v: v > 0, "> 0"),
    "model.leaky_slope": (lambda v: 0 < v < 1, "in (0, 1)"),
    "model.init_scale": (lambda v: v > 0, "> 0"),
    "model.keep_prob": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "model.input_keep_prob": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "model.margin": (lambda v: v > 0, "> 0"),
    "model.l2": (lambda v: v >= 0, ">= 0"),
    "negatives.k": (lambda v: v >= 0, ">= 0"),
    "negatives.power": (lambda v: v >= 0, ">= 0"),
    "optimizer.lr": (lambda v: v > 0, "> 0"),
    "optimizer.momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "optimizer.beta1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "optimizer.beta2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "optimizer.decay": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "optimizer.eps": (lambda v: v > 0, "> 0"),
    "schedule.factor": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "schedule.every": (lambda v: v > 0, "> 0"),
    "schedule.k": (lambda v: v >= 0, ">= 0"),
    "schedule.tau": (lambda v: v > 0, "> 0"),
    "train.epochs": (lambda v: v > 0, "> 0"),
    "train.batch_size": (lambda v: v > 0, "> 0"),
    "train.patience": (lambda v: v >= 0, ">= 0 (0 turns early stopping off)"),
    "train.threads": (
        lambda v: v == "auto" or (isinstance(v, int) and v >= 1),
        "'auto' or a positive integer",
    ),
}


# ------------------------------------------------------------------------- reading


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Defaults ← YAML file ← ``--set`` overrides; raises ConfigError listing every problem."""
    raw: dict[str, Any] = {}
    source = "config"
    if path is not None:
        source = str(path)
        raw = read_yaml(Path(path))
    problems: list[str] = []
    from_set: set[str] = set()
    for item in overrides:
        key = apply_override(raw, item, problems)
        if key:
            from_set.add(key)
    bad: set[str] = set()
    config = build(Config, raw, "", problems, bad)
    problems += validate(config, skip=bad)
    if problems:
        raise ConfigError(capped([_mark_override(p, from_set) for p in problems]), source)
    return config


def capped(problems: list[str]) -> list[str]:
    """The first ``MAX_PROBLEMS`` problems, and a count of the rest."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    return problems[:MAX_PROBLEMS] + [f"… and {len(problems) - MAX_PROBLEMS} more problems"]


MAX_CONFIG_BYTES = 64 << 10  # a config is a few hundred bytes; PyYAML needs ~1 s per 64 KiB
MAX_DEPTH = 32  # YAML nesting levels (the schema needs 2)
MAX_PROBLEMS = 20  # problems listed in one error; the rest are counted
SHOWN_CHARS = 60  # characters of a value echoed in a message


class _Loader(yaml.SafeLoader):
    """safe_load plus clear refusals: tags (``!!python/object`` …), duplicate keys, anchors and
    aliases (``&a`` / ``*a``: a few hundred bytes of nested aliases expand to 10^8 strings), and
    nesting deeper than ``MAX_DEPTH`` (which would otherwise end in a RecursionError)."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None,
                None,
                "YAML anchors and aliases (&name, *name) are not allowed in a windowner config",
                event.start_mark,
            )
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_undefined(self, node: yaml.Node) -> Any:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"the YAML tag {shorten(node.tag.replace('tag:yaml.org,2002:', '!!'))!r} is not "
            "allowed (windowner reads plain YAML: no tags, nothing is constructed or run)",
            node.start_mark,
        )

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {shorten(key)!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_constructor(None, _Loader.construct_undefined)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` semantics with the refusals of ``_Loader``. Every failure is a
    ``yaml.YAMLError`` (an integer of more than 4300 digits, too: its ValueError is turned into
    one), so callers need to catch only that."""
    if len(text) > MAX_CONFIG_BYTES:
        raise yaml.YAMLError(f"longer than {MAX_CONFIG_BYTES} characters")
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except (ValueError, RecursionError) as exc:  # int('1' * 5000); a pathological document
        raise yaml.YAMLError(f"unreadable value ({shorten(str(exc))})") from None
    finally:
        loader.dispose()


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping read with safe_load; tags such as ``!!python/object`` are refused."""
    text = read_config_text(path)
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if not isinstance(exc, yaml.constructor.ConstructorError | yaml.composer.ComposerError):
            reason = f"invalid YAML: {reason}"
        raise ConfigError(reason, where) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a mapping, got {_show(data)}", str(path))
    return data


def read_config_text(path: Path) -> str:
    """The text of a config file, opened once and read at most ``MAX_CONFIG_BYTES`` + 1 bytes
    (so ``/dev/zero`` or a huge file is refused at once); ConfigError for what cannot be read."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("no such file", str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a YAML config file", str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read ({exc.strerror})", str(path)) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"larger than {MAX_CONFIG_BYTES} bytes: not a config file", str(path))
    nul = raw.find(b"\0")
    if nul >= 0:
        raise ConfigError(f"NUL byte at byte {nul}: not a text file", str(path))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"undecodable bytes (not UTF-8) at byte {exc.start}", str(path)) from None


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections as dotted keys: ``{"model": {"hidden": 50}}`` → ``{"model.hidden": 50}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def apply_override(raw: dict[str, Any], item: str, problems: list[str]) -> str | None:
    """Apply one ``key.path=value`` (value parsed as a YAML scalar) to the raw mapping; returns
    the key path, or None (with a problem recorded) when the override is malformed."""
    key, sep, text = item.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or not all(parts):
        problems.append(f"--set {shorten(item)!r}: expected key.path=value")
        return None
    try:
        value = parse_yaml(text) if text.strip() else ""
    except (yaml.constructor.ConstructorError, yaml.composer.ComposerError) as exc:
        problems.append(f"--set {shorten(item)!r}: {exc.problem}")
        return None
    except yaml.YAMLError:
        value = text  # not YAML (e.g. a path with brackets): take it as a string
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value
    return key


def _mark_override(problem: str, keys: set[str]) -> str:
    path = problem.split(":", 1)[0]
    from_set = any(k == path or k.startswith(path + ".") for k in keys)
    return f"{problem} (from --set)" if from_set else problem


def build(
    cls: type, raw: Any, prefix: str, problems: list[str], bad: set[str] | None = None
) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, recording problems instead of raising;
    the key paths of values that could not be used are added to ``bad``."""
    bad = set() if bad is None else bad
    if not isinstance(raw, dict):
        where = prefix.rstrip(".") or "config"
        problems.append(f"{where}: expected a mapping of keys, got {_show(raw)}")
        bad.add(where)
        return cls()
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    for key in raw:
        if key not in names:
            problems.append(_unknown(prefix, str(key), names))
    values = {}
    for name in names:
        if name not in raw:
            continue
        path = f"{prefix}{name}"
        kind = hints[name]
        if is_dataclass(kind):
            values[name] = build(kind, raw[name], path + ".", problems, bad)
        else:
            ok, value = _coerce(raw[name], kind)
            if ok:
                values[name] = value
            else:
                problems.append(f"{path}: expected {_type_name(kind)}, got {_show(raw[name])}")
                bad.add(path)
    return cls(**values)


def _unknown(prefix: str, key: str, names: list[str]) -> str:
    key = shorten(key)
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        hint = f"; did you mean {prefix + close[0]!r}?"
    else:
        hint = f"; valid keys{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(names)}"
    return f"{prefix}{key}: unknown key{hint}"


def _coerce(value: Any, kind: Any) -> tuple[bool, Any]:
    """(ok, value) for the simple field types used here: bool, int, float, str, X | None."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = typing.get_args(kind)
        if value is None and type(None) in args:
            return True, None
        kinds = [a for a in args if a is not type(None)]
        for one in kinds[:-1]:  # X | Y: the first type that takes the value
            ok, coerced = _coerce(value, one)
            if ok:
                return True, coerced
        kind = kinds[-1]
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        if isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            return False, value
        return ok, float(value) if ok else value
    if kind is str:
        return isinstance(value, str), value
    return False, value


_SCIENTIFIC = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _type_name(kind: Any) -> str:
    if kind is float:
        return "a finite number"
    if isinstance(kind, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(kind))
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        kind, "null" if kind is type(None) else str(kind)
    )


def _show(value: Any) -> str:
    return f"{type(value).__name__} {shorten(repr(value))}" if value is not None else "null"


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters (with ``…`` and the full length) for a message."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _get(config: Config, path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        node = getattr(node, part)
    return node


def validate(config: Config, skip: set[str] = frozenset()) -> list[str]:
    """Range and choice checks, plus the few that involve two keys; key paths in ``skip``
    (values already reported as unusable, and whole sections that were) are not checked."""

    def wanted(path: str) -> bool:
        return not any(path == s or path.startswith(s + ".") for s in skip)

    problems = []
    for path, choices in CHOICES.items():
        value = _get(config, path)
        if wanted(path) and value not in choices:
            shown = shorten(repr(value))
            problems.append(f"{path}: unknown value {shown}; choose from: {', '.join(choices)}")
    for path, (test, what) in RANGES.items():
        value = _get(config, path)
        if wanted(path) and not test(value):
            problems.append(f"{path}: must be {what}, got {shorten(repr(value))}")
        elif wanted(path) and isinstance(value, int | float) and value > LIMITS.get(path, math.inf):
            problems.append(
                f"{path}: must be <= {LIMITS[path]} (a resource limit), got {shorten(repr(value))}"
            )
    ranking = config.model.objective == "ranking"
    if ranking and config.negatives.k < 1 and wanted("negatives.k"):
        problems.append("negatives.k: the ranking objective needs k >= 1 corrupted windows")
    if (
        config.model.objective in SENTENCE_OBJECTIVES
        and config.negatives.k
        and wanted("negatives.k")
    ):
        problems.append(
            f"negatives.k: the {config.model.objective} objective trains on whole sentences "
            "and uses no corrupted windows; set negatives.k: 0"
        )
    problems += _feature_problems(config, wanted)
    if config.embeddings.init == "" and wanted("embeddings.init"):
        problems.append("embeddings.init: must be 'random', 'glove-6b-50d' or a file path")
    if all(wanted(k) and RANGES[k][0](_get(config, k)) for k in SIZE_KEYS):
        need = memory_estimate(config)
        if need > MEMORY_LIMIT:
            problems.append(
                f"network size: this network ({_sizes(config)}) needs about "
                f"{need / 2**30:.1f} GiB before counting the vocabulary; the limit is "
                f"{MEMORY_LIMIT / 2**30:.0f} GiB"
            )
    return problems


def _feature_problems(config: Config, wanted: typing.Callable[[str], bool]) -> list[str]:
    """The extra window features: affix lengths in order, and no corrupted windows (they
    replace a center word by a word id, whose affixes and shape are unknown)."""
    f, problems = config.features, []
    if wanted("features.affix_max") and f.affix_dim > 0 and f.affix_max < f.affix_min:
        problems.append(f"features.affix_max: must be >= affix_min ({f.affix_min})")
    on = bool(f.table_names())
    if on and config.negatives.k > 0 and wanted("negatives.k"):
        problems.append(
            "negatives.k: corrupted windows cannot be used with the extra features "
            "affix_dim, shape_dim, doccase_dim, docseq_dim and gazetteer_dim "
            "(set negatives.k: 0 or turn the features off)"
        )
    return problems


SIZE_KEYS = (
    "features.window",
    "features.caps_dim",
    "embeddings.dim",
    "model.hidden",
    "negatives.k",
    "train.batch_size",
)


def _sizes(config: Config) -> str:
    return ", ".join(f"{k.split('.')[1]} {_get(config, k)}" for k in SIZE_KEYS)


def memory_estimate(config: Config) -> int:
    """Bytes of the arrays whose size the config alone fixes: the hidden layer's weights
    (hidden, window * (dim + caps_dim)) with their gradient and two optimizer moments, and the
    activations of a training batch (batch * (1 + k) windows; for crf/structured, whose
    batch_size counts sentences, batch * SENTENCE_TOKENS) and of a scoring chunk. The
    embedding table (vocabulary * dim) comes on top and is known only once data is read."""
    itemsize = 8 if config.model.dtype == "float64" else 4
    f, hidden = config.features, config.model.hidden
    slots = zip(f.table_slots(), f.table_dims(), strict=True)
    extra = sum(k * d for k, d in slots) if f.affix_max <= LIMITS["features.affix_max"] else 0
    input_dim = f.window * (config.embeddings.dim + f.caps_dim + extra)
    weights = 4 * hidden * (input_dim + 1)
    rows = config.train.batch_size * (1 + config.negatives.k)
    if config.model.objective in SENTENCE_OBJECTIVES:  # batch_size counts sentences
        rows = config.train.batch_size * SENTENCE_TOKENS
    activations = 2 * rows * (input_dim + 3 * hidden) + SCORING_ROWS * (input_dim + 2 * hidden)
    return itemsize * (weights + activations)


# ------------------------------------------------------------------------- paths and output

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_path(value: str) -> str:
    """Expand ``${VAR}`` / ``${VAR:-default}`` and ``~`` in a data path."""

    def sub(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise ConfigError(f"environment variable {name} is not set", "data path")
        return default

    return os.path.expanduser(_ENV_RE.sub(sub, value))


def resolved(config: Config) -> Config:
    """The config with its data paths' environment references expanded."""
    data = config.data
    return replace(
        config,
        data=replace(
            data,
            train=expand_path(data.train),
            dev=expand_path(data.dev) if data.dev else None,
            test=expand_path(data.test) if data.test else None,
        ),
    )


def model_spec(
    config: Config, vocab_size: int, n_tags: int, feature_rows: dict[str, int] | None = None
):
    """The ModelSpec (architecture and objective) a config describes, for a vocabulary of
    ``vocab_size`` words and ``n_tags`` tags (and ``feature_rows``: extra feature table name
    (``affix``, ``shape``) → rows, needed when the config turns extra features on).

    Every ModelSpec field named like a field of ``features`` or ``model`` (window, caps_dim,
    hidden, activation, ..., dtype) takes that field's value; the rest are set here."""
    from windowner.nn.model import ModelSpec

    m, e = config.model, config.embeddings
    named = {**dataclasses.asdict(config.features), **dataclasses.asdict(m)}
    shared = {f.name: named[f.name] for f in fields(ModelSpec) if f.name in named}
    return ModelSpec(
        vocab_size=vocab_size,
        n_out=1 if m.objective == "ranking" else n_tags,
        word_dim=e.dim,
        train_embeddings=e.train,
        caps_classes=len(CAPS_CLASSES),
        **shared,
        **_feature_spec(config.features, feature_rows or {}),
    )


def _feature_spec(f: FeaturesConfig, rows: dict[str, int]) -> dict[str, tuple]:
    """ModelSpec's feature_names/dims/rows for the features ``f`` turns on."""
    names = f.table_names()
    missing = [n for n in names if n not in rows]
    if missing:
        raise ValueError(f"no vocabulary size for the features {missing}")
    return {
        "feature_names": names,
        "feature_dims": f.table_dims(),
        "feature_rows": tuple(rows[n] for n in names),
        "feature_slots": f.table_slots(),
    }


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)


def from_dict(data: dict[str, Any]) -> Config:
    """A Config from a stored mapping (e.g. a model's metadata); raises ConfigError."""
    problems: list[str] = []
    bad: set[str] = set()
    config = build(Config, data, "", problems, bad)
    problems += validate(config, skip=bad)
    if problems:
        raise ConfigError(capped(problems), "stored config")
    return config

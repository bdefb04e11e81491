"""The Tagger (a trained model ready to tag token lists) and the model-file format.

The Tagger bundles what prediction needs besides the parameters: the word vocabulary and its
normalisation, the tag list, the decoder and (for the ranking objective) the score threshold.

Where to change what: what a model file stores is ``Tagger.save`` (plus ``_split_frozen`` for
the float16 block of pretrained rows) and what loading checks is ``_from_file`` /
``_check_spec`` / ``_check_params``; the .npz container itself (atomic writes, metadata,
refusing pickles) is windowner.checkpoint. ``Tagger.load`` is for prediction;
``load_checkpoint`` also returns the extra arrays and metadata that resuming needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from windowner.checkpoint import array_text, load_npz, save_npz, text_array
from windowner.corpus import Sentence, Vocab, normalize_word
from windowner.decode import allowed_transitions, decode_sentences, split_tags
from windowner.errors import ModelFileError
from windowner.evaluate import ENTITY, ranking_tags
from windowner.features import AFFIX_LENGTHS, MAX_RUN, TABLES, FeatureVocabs, table_columns
from windowner.nn.crf import Transitions, viterbi_decode
from windowner.nn.losses import SENTENCE_OBJECTIVES
from windowner.nn.model import ModelSpec, WindowScorer, transitions_of
from windowner.windows import Encoded, encode


@dataclass(kw_only=True)
class Tagger:
    """A trained model ready to tag token lists."""

    model: WindowScorer
    words: Vocab
    tags: list[str]
    lowercase: bool = True
    digits_to_zero: bool = True
    decode: str = "viterbi"
    threshold: float = 0.0
    temperature: float = 1.0  # hinge models' softmax temperature (windowner.calibrate)
    config: dict[str, Any] = field(default_factory=dict)
    frozen_rows: int = 0
    features: FeatureVocabs | None = None  # vocabularies of the extra window features
    # each token's ids (word, caps, own features) once looked up: windows.encode's cache
    type_cache: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def objective(self) -> str:
        return self.model.spec.objective

    @property
    def output_tags(self) -> list[str]:
        """Tags this tagger predicts (untyped ``B-ENT``/``I-ENT`` for a ranking model)."""
        return ["O", f"B-{ENTITY}", f"I-{ENTITY}"] if self.objective == "ranking" else self.tags

    def normalize(self, word: str) -> str:
        return normalize_word(word, self.lowercase, self.digits_to_zero)

    def encode(self, sentences: Sequence[Sentence]) -> Encoded:
        tag_vocab = Vocab(self.tags)
        spec = self.model.spec
        return encode(
            sentences,
            self.words,
            tag_vocab,
            spec.window,
            self.normalize,
            self.features,
            spec.feature_names,
            self.type_cache,
        )

    def scores(self, encoded: Encoded) -> np.ndarray:
        """(N, C) scores for every token of the encoded corpus (C = 1 for ranking)."""
        words, caps = encoded.windows()
        return self.model.scores(words, caps, feats=encoded.feature_windows())

    def tag_encoded(self, encoded: Encoded, scores: np.ndarray | None = None) -> list[list[str]]:
        """Decoded tag strings per sentence."""
        scores = self.scores(encoded) if scores is None else scores
        return decode_scores(self, scores, encoded.sent_bounds)

    def path_transitions(self) -> Transitions:
        """A sentence-level model's learned transitions, plus the hard IOB2 rules when
        ``decode`` is "viterbi" ("argmax": the learned transitions alone)."""
        constraints = allowed_transitions(self.tags) if self.decode == "viterbi" else None
        return transitions_of(self.model.params, constraints)

    def tag(
        self, token_lists: Sequence[Sequence[str]], docs: Sequence[int] | None = None
    ) -> list[list[str]]:
        """Tags of token lists; ``docs``: their document numbers (default: one document)."""
        return self.tag_encoded(self.encode(token_sentences(token_lists, docs)))

    # ------------------------------------------------------------------ files

    def save(
        self,
        path: Path,
        extra_meta: dict[str, Any] | None = None,
        extra_arrays: dict[str, np.ndarray] | None = None,
    ) -> None:
        arrays = {f"param/{k}": v for k, v in self.model.params.items()}
        arrays.update(self._split_frozen())
        arrays["vocab"] = text_array("\n".join(self.words.items))
        arrays["tags"] = text_array("\n".join(self.tags))
        arrays.update(self._feature_arrays())
        arrays.update(extra_arrays or {})
        meta = {
            "spec": self.model.spec.to_dict(),
            "lowercase": self.lowercase,
            "digits_to_zero": self.digits_to_zero,
            "decode": self.decode,
            "threshold": self.threshold,
            "temperature": self.temperature,
            "config": self.config,
            "frozen_rows": self.frozen_rows,
        }
        if self.features is not None:
            meta["feature_lengths"] = list(self.features.lengths)
            meta["feature_max_run"] = self.features.max_run
        meta.update(extra_meta or {})
        save_npz(path, arrays, meta)

    def _feature_arrays(self) -> dict[str, np.ndarray]:
        """The extra features' vocabularies, one text array ``feature/<name>`` each."""
        if self.features is None:
            return {}
        return {f"feature/{n}": text_array(t) for n, t in self.features.to_texts().items()}

    def _split_frozen(self) -> dict[str, np.ndarray]:
        """Pretrained rows that training never touches (words absent from the training data,
        kept for prediction) are stored once, as float16 — they were rounded to float16 when
        the table was built, so the round trip is exact: (V − n, d) float32 + (n, d) float16."""
        n = self.frozen_rows
        if n == 0:
            return {}
        table = self.model.params["E_word"]
        return {"param/E_word": table[:-n], "frozen/E_word": table[-n:].astype(np.float16)}

    @classmethod
    def load(cls, path: str | Path) -> Tagger:
        """The tagger stored in a model (or checkpoint) file; ModelFileError when unusable."""
        return load_checkpoint(path)[0]


def token_sentences(
    token_lists: Sequence[Sequence[str]], docs: Sequence[int] | None = None
) -> list[Sentence]:
    """Untagged Sentences of token lists, numbered ``docs`` (default: all document 0)."""
    numbers = [0] * len(token_lists) if docs is None else docs
    return [
        Sentence(tuple(t), ("O",) * len(t), doc=d)
        for t, d in zip(token_lists, numbers, strict=True)
    ]


def decode_scores(tagger: Any, scores: np.ndarray, bounds: np.ndarray) -> list[list[str]]:
    """Tag strings per sentence from scores (N, C), as ``tagger`` (its objective, decode,
    tags, threshold and, for ``crf``/``structured``, ``path_transitions()``: a Tagger or an
    Ensemble) decodes them."""
    if tagger.objective == "ranking":
        return ranking_tags(scores[:, 0] > tagger.threshold, bounds)
    if tagger.objective in SENTENCE_OBJECTIVES:  # Viterbi with the learned transitions
        ids = viterbi_decode(scores, bounds, tagger.path_transitions())
        return split_tags(ids, bounds, tagger.tags)
    if tagger.objective == "softmax" and tagger.decode == "viterbi":
        from windowner.nn.losses import log_softmax

        scores = log_softmax(scores.astype(np.float64))
    return decode_sentences(scores, bounds, tagger.tags, tagger.decode)


def load_checkpoint(path: str | Path) -> tuple[Tagger, dict[str, np.ndarray], dict[str, Any]]:
    """(tagger, all arrays, meta) from a model or checkpoint file (resuming reads the
    optimizer state and loop position from the arrays and meta)."""
    arrays, meta = load_npz(path)
    try:
        spec = ModelSpec(**meta["spec"])
        params = {k[6:]: v for k, v in arrays.items() if k.startswith("param/")}
        frozen_rows = int(meta.get("frozen_rows", 0))
        if frozen_rows:
            frozen = arrays["frozen/E_word"]
            if len(frozen) != frozen_rows:
                raise ValueError(f"{len(frozen)} frozen rows, metadata says {frozen_rows}")
            params["E_word"] = np.concatenate([params["E_word"], frozen.astype(spec.dtype)])
        words = Vocab.from_text(array_text(arrays["vocab"]))
        tags = array_text(arrays["tags"]).split("\n")
        threshold = meta.get("threshold", 0.0)
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ValueError(f"threshold {str(threshold)[:40]!r} is not a number")
        if not math.isfinite(threshold):
            raise ValueError(f"threshold {threshold} is not finite")
        features = _load_features(arrays, meta, spec)
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: incomplete or inconsistent model file ({exc})") from None
    _check_spec(Path(path), spec, meta.get("decode", "viterbi"))
    temperature = meta.get("temperature", 1.0)
    if not isinstance(temperature, int | float) or not 0 < temperature < float("inf"):
        raise ModelFileError(f"{path}: temperature {temperature!r} is not a positive number")
    _check_params(Path(path), spec, params, len(words), len(tags))
    tagger = Tagger(
        model=WindowScorer(spec, params),
        words=words,
        tags=tags,
        lowercase=meta.get("lowercase", True),
        digits_to_zero=meta.get("digits_to_zero", True),
        decode=meta.get("decode", "viterbi"),
        threshold=float(threshold),
        temperature=float(temperature),
        config=meta.get("config", {}),
        frozen_rows=frozen_rows,
        features=features,
    )
    return tagger, arrays, meta


def _load_features(arrays: dict, meta: dict, spec: ModelSpec) -> FeatureVocabs | None:
    """The extra features' vocabularies (``feature/<name>`` arrays); ValueError when the
    spec's features are missing or their sizes differ from the spec's table rows."""
    texts = {k[8:]: array_text(v) for k, v in arrays.items() if k.startswith("feature/")}
    if not texts:
        if spec.feature_names:
            raise ValueError(f"the vocabularies of the features {spec.feature_names} are missing")
        return None
    lengths = meta.get("feature_lengths", list(AFFIX_LENGTHS))
    features = FeatureVocabs.from_texts(texts, lengths, int(meta.get("feature_max_run", MAX_RUN)))
    sizes = features.table_rows(spec.feature_names)
    for name, rows, slots in zip(
        spec.feature_names, spec.feature_rows, spec.feature_slots, strict=True
    ):
        if sizes[name] != rows:
            raise ValueError(f"feature table {name} has {sizes[name]} values, spec says {rows}")
        if len(table_columns(name, features.lengths)) != slots:
            raise ValueError(f"feature table {name} has {slots} slots in the spec")
    return features


def _check_spec(path: Path, spec: ModelSpec, decode: Any) -> None:
    """The stored architecture names things this windowner knows, with sane sizes."""
    from windowner.decode import DECODERS
    from windowner.nn.activations import ACTIVATIONS
    from windowner.nn.losses import OBJECTIVES

    problems = [
        f"{name} {value!r} is unknown"
        for name, value, known in (
            ("activation", spec.activation, ACTIVATIONS),
            ("objective", spec.objective, OBJECTIVES),
            ("dtype", spec.dtype, ("float32", "float64")),
            ("decoder", decode, DECODERS),
        )
        if not isinstance(value, str) or value not in known
    ]
    for name in ("vocab_size", "n_out", "window", "word_dim", "caps_dim", "hidden"):
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(f"{name} {value!r} is not a size")
    for name in ("feature_dims", "feature_rows", "feature_slots"):
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in getattr(spec, name)
        ):
            problems.append(f"{name} {list(getattr(spec, name))!r} are not sizes")
    if not all(isinstance(n, str) and n in TABLES for n in spec.feature_names):
        problems.append(f"feature_names {list(spec.feature_names)!r} are not names")
    if isinstance(spec.window, int) and spec.window % 2 == 0:
        problems.append(f"window {spec.window} is not odd")
    if problems:
        raise ModelFileError(f"{path}: inconsistent model spec: " + "; ".join(problems))


def _check_params(path: Path, spec: ModelSpec, params: dict, n_words: int, n_tags: int) -> None:
    """Shapes of the parameters against the spec and the vocabulary sizes."""
    n_out = 1 if spec.objective == "ranking" else n_tags
    expected = {
        "E_word": (spec.vocab_size, spec.word_dim),
        "W": (spec.hidden, spec.input_dim),
        "b": (spec.hidden,),
        "U": (spec.hidden, spec.n_out),
    }
    for name, rows, dim in zip(
        spec.feature_params, spec.feature_rows, spec.feature_dims, strict=True
    ):
        expected[name] = (rows, dim)
    if spec.caps_dim:
        expected["E_caps"] = (spec.caps_classes, spec.caps_dim)
    if spec.objective in SENTENCE_OBJECTIVES:
        C = spec.n_out
        expected.update({"A": (C, C), "start": (C,), "end": (C,)})
    problems = []
    if n_words != spec.vocab_size:
        problems.append(f"vocabulary has {n_words} words, spec says {spec.vocab_size}")
    if spec.n_out != n_out:
        problems.append(f"{n_tags} tags do not fit {spec.n_out} outputs")
    for name, shape in expected.items():
        if name not in params:
            problems.append(f"parameter {name} is missing")
        elif params[name].shape != shape or params[name].dtype != np.dtype(spec.dtype):
            problems.append(
                f"parameter {name} is {params[name].dtype}{params[name].shape}, "
                f"expected {spec.dtype}{shape}"
            )
    if problems:
        raise ModelFileError(f"{path}: " + "; ".join(problems))

"""Token windows as integer index arrays, and corrupted (negative) windows.

Each sentence is laid out in one flat id array with ``window // 2`` padding ids on each side
(``<s>`` before, ``</s>`` after). The window of the token at flat position ``p`` is
``flat[p - half : p + half + 1]``, so a batch of windows is one fancy-indexing gather,
``flat[centers[:, None] + offsets]``, shaped (B, window). Nothing on the hot path is a string.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from windowner.corpus import END_ID, SPECIALS, START_ID, Sentence, Vocab, caps_feature
from windowner.docfeatures import FlatTokens, doc_feature
from windowner.errors import DataError
from windowner.features import DOC_TABLES, FeatureVocabs

NEGATIVE_STRATEGIES = ("center", "non_entity", "mixed")


@dataclass(frozen=True)
class Encoded:
    """A corpus as flat id arrays.

    words, caps: (T,) int32 flat ids including sentence padding.
    centers: (N,) int64 flat position of each real token, in sentence order.
    tags: (N,) int32 tag id per token, -1 for a tag the tag vocabulary does not know.
    sent_bounds: (S + 1,) int64; sentence s owns centers[sent_bounds[s]:sent_bounds[s + 1]].
    feats: (T, F) int32 flat ids of the extra window features (prefixes, suffixes, shape: see
    windowner.features; padding ``<s>``/``</s>`` as for words), or None when there are none.
    """

    words: np.ndarray
    caps: np.ndarray
    centers: np.ndarray
    tags: np.ndarray
    sent_bounds: np.ndarray
    window: int
    feats: np.ndarray | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.centers)

    @property
    def offsets(self) -> np.ndarray:
        """(window,) int64 offsets of a window's positions relative to its center."""
        half = self.window // 2
        return np.arange(-half, half + 1, dtype=np.int64)

    def windows(self, token_idx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Word and caps windows, each (B, window) int32, for tokens ``token_idx`` (default all)."""
        centers = self.centers if token_idx is None else self.centers[token_idx]
        return self.windows_at(centers)

    def windows_at(self, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows around flat positions ``centers`` (B,) → two (B, window) int32 arrays."""
        positions = centers[:, None] + self.offsets[None, :]
        return np.take(self.words, positions), np.take(self.caps, positions)

    def feature_windows(self, token_idx: np.ndarray | None = None) -> np.ndarray | None:
        """Extra feature ids (B, window, F) int32 of tokens ``token_idx`` (default all), or
        None when the corpus was encoded without extra features."""
        if self.feats is None:
            return None
        centers = self.centers if token_idx is None else self.centers[token_idx]
        return np.take(self.feats, centers[:, None] + self.offsets[None, :], axis=0)


def encode(
    sentences: Sequence[Sentence],
    word_vocab: Vocab,
    tag_vocab: Vocab,
    window: int,
    normalize: Callable[[str], str],
    features: FeatureVocabs | None = None,
    feature_tables: Sequence[str] = (),
    cache: dict[str, tuple[int, ...]] | None = None,
) -> Encoded:
    """Turn sentences into flat id arrays (see Encoded); unknown words map to ``<unk>``.
    With ``feature_tables`` (vocabularies in ``features``) also the extra feature ids. Each
    distinct token is looked up once (``FlatTokens``; its ids are kept in ``cache`` across
    calls when given: the same vocabularies and tables each time); the rest is numpy."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    token_names, doc_names = feature_columns(features, feature_tables)

    def ids_of(token: str) -> tuple[int, ...]:
        own = features.token_ids(token, token_names) if features and token_names else ()
        return (word_vocab.id(normalize(token)), caps_feature(token), *own)

    flat = FlatTokens.of(sentences)
    width = 2 + len(token_names)  # word id, caps class, the token's own features
    per_token = type_rows(flat.types, ids_of, {} if cache is None else cache, width)
    per_token = per_token[flat.inverse]
    words, centers = padded_layout(flat.bounds, window // 2)
    caps = np.zeros_like(words)
    words[centers], caps[centers] = per_token[:, 0], per_token[:, 1]
    tag_index = tag_vocab.index
    tags = [tag_index.get(tag, -1) for sent in sentences for tag in sent.tags]
    feats = None
    if feature_tables:
        columns = [per_token[:, 2:]]
        columns += [doc_feature(n).flat_ids(flat)[:, None] + len(SPECIALS) for n in doc_names]
        ids = np.concatenate(columns, axis=1)
        feats = feature_rows(features, feature_tables, ids, words, centers)
    return Encoded(
        words=words,
        caps=caps,
        centers=centers,
        tags=np.asarray(tags, dtype=np.int32).reshape(-1),
        sent_bounds=flat.bounds,
        window=window,
        feats=feats,
    )


MAX_CACHED = 1 << 18  # a type cache is emptied when it holds this many tokens


def type_rows(
    types: Sequence[str], ids_of: Callable[[str], tuple[int, ...]], cache: dict, width: int
) -> np.ndarray:
    """(len(types), width) int64: ``ids_of(token)`` (``width`` ints) of each distinct token,
    from ``cache`` when it has them (and stored there)."""
    if len(cache) > MAX_CACHED:
        cache.clear()
    rows = []
    for token in types:
        ids = cache.get(token)
        if ids is None:
            ids = cache[token] = ids_of(token)
        rows.append(ids)
    return np.asarray(rows, dtype=np.int64).reshape(len(types), width)


def padded_layout(bounds: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """The flat layout of S sentences of ``bounds`` (S + 1,) token offsets with ``half`` pads
    each side: (T,) int32 word ids holding ``<s>``/``</s>`` at the pads (the real tokens'
    positions are for the caller to fill) and the (N,) int64 flat position of each of them."""
    lengths = np.diff(bounds)
    n_sent, n_tokens = len(lengths), int(bounds[-1])
    pads_before = (2 * np.arange(n_sent, dtype=np.int64) + 1) * half  # (S,)
    centers = np.arange(n_tokens, dtype=np.int64) + np.repeat(pads_before, lengths)
    words = np.full(n_tokens + 2 * half * n_sent, START_ID, dtype=np.int32)
    words[((bounds[1:] + pads_before)[:, None] + np.arange(half)).ravel()] = END_ID
    return words, centers


def feature_columns(
    features: FeatureVocabs | None, tables: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The features of ``tables`` (``FeatureVocabs.columns``) split into the token's own
    (prefixes, suffixes, shape) and the document-level ones, which must come last."""
    if not tables:
        return (), ()
    if features is None:
        raise ValueError(f"feature tables {list(tables)} need their vocabularies")
    names = features.columns(tables)
    doc_names = tuple(n for n in names if n in DOC_TABLES)
    token_names = names[: len(names) - len(doc_names)]
    if any(n in DOC_TABLES for n in token_names):
        raise ValueError(f"document-level feature tables must come last: {list(tables)}")
    return token_names, doc_names


def feature_rows(
    features: FeatureVocabs,
    tables: Sequence[str],
    per_token: np.ndarray,
    words: np.ndarray,
    centers: np.ndarray,
) -> np.ndarray:
    """(T, F) int32 rows of the feature ``tables``' columns laid out like ``encode``'s
    ``words`` (T,): ``per_token`` (N, F) vocabulary ids at ``centers`` (N,), ``<s>``/``</s>``
    where ``words`` pads; plus each column's offset in its table (``FeatureVocabs.offsets``)."""
    out = np.repeat(
        np.where(words == START_ID, START_ID, END_ID)[:, None], per_token.shape[1], axis=1
    )
    out[centers] = per_token
    return out.astype(np.int32) + features.offsets(tables)


def unigram_weights(counts: np.ndarray, power: float) -> np.ndarray:
    """(V,) float64 sampling weights ∝ count^power for (V,) counts; a zero count weighs 0.

    ``count ** power`` as is when every positive count gives a positive finite weight (so the
    usual powers draw exactly what they always drew); otherwise (power 100 or 1e308 overflows,
    or underflows rare words to 0) the weights are computed in log space relative to the
    largest count, ``exp(power * (log c - log c_max))``: finite, the largest exactly 1, never NaN.
    """
    counts = np.asarray(counts, dtype=np.float64)
    positive = counts > 0
    with np.errstate(all="ignore"):
        direct = np.where(positive, counts**power, 0.0)
        if np.isfinite(direct.sum()) and (direct[positive] > 0).all():
            return direct
        logs = np.log(counts[positive]) - np.log(counts.max())
        weights = np.zeros_like(counts)
        weights[positive] = np.exp(power * logs)  # 0 * anything = 0 at the max: never NaN
    return weights


def center_counts(encoded: Encoded, vocab_size: int) -> np.ndarray:
    """(V,) float64 counts of the real tokens' words; the special ids count 0 (never drawn)."""
    counts = np.bincount(encoded.words[encoded.centers], minlength=vocab_size).astype(np.float64)
    counts[: len(SPECIALS)] = 0.0
    return counts


REJECTION_ROUNDS = 8  # redraws before the exact fallback (the usual case needs one or two)


class NegativeSampler:
    """Corrupted windows for a batch of true windows, ``k`` per true window.

    ``center``: the center word is replaced by a different word drawn ∝ unigram^power.
    ``non_entity``: a real window whose center is tagged O ("Not all museums in Paris").
    ``mixed``: each negative is either kind with probability 1/2.

    Every draw is bounded: a replacement that equals the center is redrawn at most
    ``REJECTION_ROUNDS`` times, then drawn exactly from the distribution without the center
    (see ``draw_excluding``), so no power (0 … 1e308) and no corpus makes sampling loop.
    """

    def __init__(
        self,
        encoded: Encoded,
        vocab_size: int,
        strategy: str = "center",
        k: int = 1,
        power: float = 0.75,
        o_tag: int = 0,
        source: str = "the training data",
    ) -> None:
        if strategy not in NEGATIVE_STRATEGIES:
            raise ValueError(f"unknown negative strategy {strategy!r}")
        self.encoded, self.strategy, self.k = encoded, strategy, k
        counts = center_counts(encoded, vocab_size)
        n_words = int(np.count_nonzero(counts))
        if strategy != "non_entity" and n_words < 2:
            raise DataError(
                f"negatives.strategy {strategy!r} replaces center words by other words, so it "
                f"needs at least two distinct words, and {source} has {n_words}"
            )
        self.weights = unigram_weights(counts, power)
        self.cdf = np.cumsum(self.weights / self.weights.sum())
        self.cum = np.cumsum(self.weights)
        self.top = int(np.argmax(self.weights))
        others = np.where(np.arange(len(counts)) == self.top, 0.0, counts)
        self.cum_without_top = np.cumsum(unigram_weights(others, power))
        self.second = int(np.argmax(np.diff(self.cum_without_top, prepend=0.0)))
        self.o_centers = encoded.centers[encoded.tags == o_tag]
        if strategy != "center" and len(self.o_centers) == 0:
            raise DataError(
                f"negatives.strategy {strategy!r} draws windows of tokens tagged O, and "
                f"{source} has none (use strategy 'center')"
            )

    def sample(
        self, words: np.ndarray, caps: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """(B, window) true windows → (B * k, window) corrupted word and caps windows;
        row ``j * B + i`` corrupts true window i."""
        if self.strategy == "center":
            return self.corrupt_center(words, caps, rng)
        if self.strategy == "non_entity":
            return self.non_entity(len(words) * self.k, rng)
        centered_w, centered_c = self.corrupt_center(words, caps, rng)
        real_w, real_c = self.non_entity(len(centered_w), rng)
        use_real = rng.random(len(centered_w)) < 0.5
        centered_w[use_real] = real_w[use_real]
        centered_c[use_real] = real_c[use_real]
        return centered_w, centered_c

    def corrupt_center(
        self, words: np.ndarray, caps: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the windows with the center word replaced by a different sampled word;
        the caps feature of the center is kept."""
        neg_words = np.tile(words, (self.k, 1))
        neg_caps = np.tile(caps, (self.k, 1))
        mid = words.shape[1] // 2
        original = neg_words[:, mid].copy()
        todo = np.arange(len(neg_words))
        for _ in range(REJECTION_ROUNDS):
            if not len(todo):
                break
            drawn = np.searchsorted(self.cdf, rng.random(len(todo)), side="right")
            drawn = np.minimum(drawn, len(self.cdf) - 1).astype(np.int32)
            neg_words[todo, mid] = drawn
            todo = todo[drawn == original[todo]]
        if len(todo):
            neg_words[todo, mid] = self.draw_excluding(original[todo], rng)
        return neg_words, neg_caps

    def draw_excluding(self, original: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(n,) int32 words drawn ∝ weight from all words except ``original`` (n,) row by row,
        with one uniform each: no rejection, so it ends even when one word holds all the mass.

        A row whose excluded word is the heaviest draws from weights recomputed without it
        (relative to the next heaviest, so they cannot all underflow); any other row draws
        ``u`` in [0, total − w_o) and steps over the excluded word's slice of the cumulative
        weights. A boundary hit by float rounding (probability ~1e-16) takes the heaviest word.
        """
        out = np.empty(len(original), dtype=np.int32)
        top = original == self.top
        u = rng.random(len(original))
        last = len(self.cum) - 1
        drawn = np.searchsorted(self.cum_without_top, u[top] * self.cum_without_top[-1], "right")
        out[top] = np.where(drawn > last, self.second, drawn)
        rest = original[~top].astype(np.int64)
        w_o = self.weights[rest]
        scaled = u[~top] * (self.cum[-1] - w_o)
        scaled += np.where(scaled >= self.cum[rest] - w_o, w_o, 0.0)
        drawn = np.searchsorted(self.cum, scaled, side="right")
        out[~top] = np.where((drawn > last) | (drawn == rest), self.top, drawn)
        return out

    def non_entity(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` real windows whose center token is tagged O, each (n, window)."""
        picks = self.o_centers[rng.integers(0, len(self.o_centers), size=n)]
        return self.encoded.windows_at(picks)

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

NEGATIVE_STRATEGIES = ("center", "non_entity", "mixed")


@dataclass(frozen=True)
class Encoded:
    """A corpus as flat id arrays.

    words, caps: (T,) int32 flat ids including sentence padding.
    centers: (N,) int64 flat position of each real token, in sentence order.
    tags: (N,) int32 tag id per token, -1 for a tag the tag vocabulary does not know.
    sent_bounds: (S + 1,) int64; sentence s owns centers[sent_bounds[s]:sent_bounds[s + 1]].
    """

    words: np.ndarray
    caps: np.ndarray
    centers: np.ndarray
    tags: np.ndarray
    sent_bounds: np.ndarray
    window: int

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


def encode(
    sentences: Sequence[Sentence],
    word_vocab: Vocab,
    tag_vocab: Vocab,
    window: int,
    normalize: Callable[[str], str],
) -> Encoded:
    """Turn sentences into flat id arrays (see Encoded); unknown words map to ``<unk>``."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    half = window // 2
    words: list[int] = []
    caps: list[int] = []
    centers: list[int] = []
    tags: list[int] = []
    bounds = [0]
    for sent in sentences:
        words += [START_ID] * half
        caps += [0] * half
        for token, tag in zip(sent.tokens, sent.tags, strict=True):
            centers.append(len(words))
            words.append(word_vocab.id(normalize(token)))
            caps.append(caps_feature(token))
            tags.append(tag_vocab.index.get(tag, -1))
        words += [END_ID] * half
        caps += [0] * half
        bounds.append(len(centers))
    return Encoded(
        words=np.asarray(words, dtype=np.int32),
        caps=np.asarray(caps, dtype=np.int32),
        centers=np.asarray(centers, dtype=np.int64),
        tags=np.asarray(tags, dtype=np.int32),
        sent_bounds=np.asarray(bounds, dtype=np.int64),
        window=window,
    )


def unigram_table(encoded: Encoded, vocab_size: int, power: float = 0.75) -> np.ndarray:
    """(V,) float64 cumulative sampling distribution ∝ count^power over real tokens' words;
    the special ids never get drawn."""
    counts = np.bincount(encoded.words[encoded.centers], minlength=vocab_size).astype(np.float64)
    counts[: len(SPECIALS)] = 0.0
    weights = counts**power
    total = weights.sum()
    if total <= 0:
        raise ValueError("no words to sample corrupted centers from")
    return np.cumsum(weights / total)


class NegativeSampler:
    """Corrupted windows for a batch of true windows, ``k`` per true window.

    ``center``: the center word is replaced by a different word drawn ∝ unigram^power.
    ``non_entity``: a real window whose center is tagged O ("Not all museums in Paris").
    ``mixed``: each negative is either kind with probability 1/2.
    """

    def __init__(
        self,
        encoded: Encoded,
        vocab_size: int,
        strategy: str = "center",
        k: int = 1,
        power: float = 0.75,
        o_tag: int = 0,
    ) -> None:
        if strategy not in NEGATIVE_STRATEGIES:
            raise ValueError(f"unknown negative strategy {strategy!r}")
        self.encoded, self.strategy, self.k = encoded, strategy, k
        self.cdf = unigram_table(encoded, vocab_size, power)
        if strategy != "non_entity" and np.count_nonzero(np.diff(self.cdf, prepend=0.0)) < 2:
            raise ValueError("center corruption needs at least two distinct training words")
        self.o_centers = encoded.centers[encoded.tags == o_tag]
        if strategy != "center" and len(self.o_centers) == 0:
            raise ValueError("strategy needs tokens tagged O, and the training data has none")

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
        while len(todo):
            drawn = np.searchsorted(self.cdf, rng.random(len(todo)), side="right")
            drawn = np.minimum(drawn, len(self.cdf) - 1).astype(np.int32)
            neg_words[todo, mid] = drawn
            todo = todo[drawn == original[todo]]
        return neg_words, neg_caps

    def non_entity(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` real windows whose center token is tagged O, each (n, window)."""
        picks = self.o_centers[rng.integers(0, len(self.o_centers), size=n)]
        return self.encoded.windows_at(picks)

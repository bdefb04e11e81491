"""The training loop: data, model, batches, schedule, optimizer, evaluation, checkpoints, events.

A run directory holds ``config.yaml`` (resolved), ``model.npz`` (best dev F1), ``last.npz``
(everything needed to resume bit for bit: parameters, optimizer state, RNG state, the epoch's
permutation and position), ``metrics.jsonl`` (one object per epoch) and ``summary.json``.
Every file is written atomically.
"""

from __future__ import annotations

import functools
import json
import shlex
import signal
import time
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from windowner import config as cfg
from windowner.checkpoint import atomic_write_text, remove_stale_temporaries
from windowner.corpus import (
    Sentence,
    Vocab,
    iter_conll,
    normalize_word,
    read_conll,
    tag_vocab_of,
)
from windowner.errors import DataError, ModelFileError, TrainingDiverged, WindownerError
from windowner.metrics import evaluate
from windowner.nn.model import Batch, WindowScorer
from windowner.optim.optimizers import Optimizer
from windowner.optim.schedules import Schedule
from windowner.predict import Tagger, untyped
from windowner.windows import Encoded, NegativeSampler, encode

TIMING_FIELDS = ("seconds", "windows_per_s")


class Reporter(Protocol):
    """Where training events go (the CLI draws them with rich)."""

    def log(self, message: str) -> None: ...
    def epoch_start(self, epoch: int, epochs: int, n_batches: int, done: int) -> None: ...
    def batch_progress(self, batches_done: int, loss: float, lr: float, wps: float) -> None: ...
    def epoch_end(self, record: dict[str, Any]) -> None: ...


class SilentReporter:
    def log(self, message: str) -> None:
        pass

    def epoch_start(self, epoch: int, epochs: int, n_batches: int, done: int) -> None:
        pass

    def batch_progress(self, batches_done: int, loss: float, lr: float, wps: float) -> None:
        pass

    def epoch_end(self, record: dict[str, Any]) -> None:
        pass


class Interrupted(WindownerError):
    """SIGINT/SIGTERM during training; ``last.npz`` was saved first."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


# ------------------------------------------------------------------------- data


@dataclass
class Prepared:
    """The vocabularies and the encoded splits. The training sentences themselves are not
    kept: the training file is streamed twice (counts, then encoding), so memory holds the
    index arrays of ``train_enc``, never the whole corpus as Python objects."""

    words: Vocab
    tags: Vocab
    normalize: Callable[[str], str]
    dev: list[Sentence] | None
    test: list[Sentence] | None
    train_enc: Encoded
    dev_enc: Encoded | None = None
    test_enc: Encoded | None = None
    word_counts: dict[str, int] = field(default_factory=dict)
    n_extra: int = 0


ENCODE_CHUNK = 4096  # sentences encoded at a time
SCORE_CHUNK = 65536  # training windows scored at a time (the ranking threshold)


def prepare_data(config: cfg.Config, reporter: Reporter, extra_words: list[str] = ()) -> Prepared:
    """Read the splits, build vocabularies from training data, encode every split."""
    f = config.features
    normalize = partial(normalize_word, lowercase=f.lowercase, digits_to_zero=f.digits_to_zero)
    train = training_source(config.data.train, config.data.scheme)
    counts: Counter[str] = Counter()
    seen_tags: set[str] = set()
    n_sents = n_tokens = 0
    for sent in train():
        counts.update(map(normalize, sent.tokens))
        seen_tags.update(sent.tags)
        n_sents += 1
        n_tokens += len(sent.tokens)
    dev = read_conll(config.data.dev, config.data.scheme) if config.data.dev else None
    test = read_conll(config.data.test, config.data.scheme) if config.data.test else None
    # Pretrained words kept for prediction are only those absent from the training data: they
    # are never updated, so they form a frozen block at the end of the table.
    words = Vocab.from_counts(counts, f.min_count, [w for w in extra_words if w not in counts])
    n_extra = len(words) - len(Vocab.from_counts(counts, f.min_count))
    tags = tag_vocab_of(seen_tags)
    for name, sents in (("dev", dev), ("test", test)):
        if sents:
            report_unseen_tags(name, sents, tags, reporter)
    enc = partial(encode, word_vocab=words, tag_vocab=tags, window=f.window, normalize=normalize)
    train_enc = encode_stream(train(), n_sents, n_tokens, enc, f.window, config.data.train)
    return Prepared(
        words,
        tags,
        normalize,
        dev,
        test,
        train_enc,
        enc(dev) if dev else None,
        enc(test) if test else None,
        dict(counts),
        n_extra,
    )


def training_source(path: str, scheme: str) -> Callable[[], Iterator[Sentence]]:
    """A function that streams the sentences of ``path`` afresh on each call; a pipe or other
    non-regular file, which can be read only once, is read into memory first."""
    if Path(path).is_file():
        return partial(iter_conll, path, scheme)
    sentences = read_conll(path, scheme)
    return partial(iter, sentences)


def encode_stream(
    sentences: Iterable[Sentence],
    n_sents: int,
    n_tokens: int,
    enc: Callable[[list[Sentence]], Encoded],
    window: int,
    name: str,
    chunk_size: int = ENCODE_CHUNK,
) -> Encoded:
    """``enc`` (windows.encode) applied chunk by chunk into preallocated arrays: the same
    Encoded as encoding all sentences at once, without their Python lists in memory."""
    half = window // 2
    words = np.empty(n_tokens + 2 * half * n_sents, dtype=np.int32)
    caps = np.empty_like(words)
    centers = np.empty(n_tokens, dtype=np.int64)
    tags = np.empty(n_tokens, dtype=np.int32)
    bounds = np.zeros(n_sents + 1, dtype=np.int64)
    w = t = s = 0
    changed = DataError(f"{name}: the file changed while it was being read; try again")
    stream = iter(sentences)
    while chunk := list(islice(stream, chunk_size)):
        part = enc(chunk)
        nw, nt, ns = len(part.words), part.n_tokens, len(chunk)
        if w + nw > len(words) or t + nt > n_tokens or s + ns > n_sents:
            raise changed
        words[w : w + nw] = part.words
        caps[w : w + nw] = part.caps
        centers[t : t + nt] = part.centers + w
        tags[t : t + nt] = part.tags
        bounds[s + 1 : s + ns + 1] = part.sent_bounds[1:] + t
        w, t, s = w + nw, t + nt, s + ns
    if (w, t, s) != (len(words), n_tokens, n_sents):
        raise changed
    return Encoded(words, caps, centers, tags, bounds, window)


def unseen_tags_message(name: str, sents: list[Sentence], known: Container[str]) -> str | None:
    """A warning (with counts) about tags that training never saw, or None."""
    unseen = Counter(t for s in sents for t in s.tags if t not in known)
    if not unseen:
        return None
    listed = ", ".join(f"{t} ×{n}" for t, n in sorted(unseen.items()))
    return f"warning: {name} has tags never seen in training ({listed}); they are scored as errors"


def report_unseen_tags(name: str, sents: list[Sentence], tags: Vocab, reporter: Reporter) -> None:
    """Warn (with counts) about tags that training never saw; they are scored as errors."""
    message = unseen_tags_message(name, sents, tags)
    if message:
        reporter.log(message)


# ------------------------------------------------------------------------- model


def build_tagger(
    config: cfg.Config,
    data: Prepared,
    rng: np.random.Generator,
    word_table: np.ndarray | None = None,
) -> Tagger:
    """A freshly initialised model wrapped in a Tagger."""
    m, e = config.model, config.embeddings
    spec = cfg.model_spec(config, len(data.words), len(data.tags))
    model = WindowScorer.create(spec, rng, m.initializer, m.init_scale, word_table, e.scale)
    return Tagger(
        model,
        data.words,
        data.tags.items,
        config.features.lowercase,
        config.features.digits_to_zero,
        m.decode,
        0.0,
        config.to_dict(),
        frozen_rows=data.n_extra,
    )


def initial_word_table(
    config: cfg.Config, data: Prepared, rng: np.random.Generator, reporter: Reporter
) -> np.ndarray | None:
    """Pretrained (and/or preprocessed) embedding table, or None for plain random init."""
    e = config.embeddings
    if e.init == "random" and e.preprocess == "none":
        return None
    from windowner import embeddings
    from windowner.preprocess import preprocess_table

    pretrained = None
    if e.init != "random":
        f = config.features
        pretrained = load_pretrained_cached(e.init, f.lowercase, f.digits_to_zero)
    table, found = embeddings.build_table(data.words.items, pretrained, rng, e.dim, e.scale)
    source = pretrained.source if pretrained is not None else ""
    del pretrained
    load_pretrained_cached.cache_clear()  # the vectors now live in the table
    if source:
        n_train = len(data.words) - data.n_extra
        found_train = found - data.n_extra
        reporter.log(
            f"pretrained {source}: {found_train} of {n_train} training-vocabulary words "
            f"found ({100 * found_train / max(n_train, 1):.1f}%); {data.n_extra} more kept for "
            "prediction"
        )
    counts = np.array([data.word_counts.get(w, 0) for w in data.words.items], dtype=np.float64)
    table = preprocess_table(table, counts, e.preprocess)
    if data.n_extra:  # frozen rows are stored as float16: round them now so saving is exact
        for start in range(len(table) - data.n_extra, len(table), 65536):
            block = table[start : start + 65536]
            block[...] = block.astype(np.float16)
    return table


@functools.lru_cache(maxsize=2)
def load_pretrained_cached(spec: str, lowercase: bool, digits_to_zero: bool):
    """Pretrained vectors matched under the run's normalisation, loaded once per process."""
    from windowner import embeddings

    normalize = partial(normalize_word, lowercase=lowercase, digits_to_zero=digits_to_zero)
    return embeddings.load_pretrained(spec, normalize)


# ------------------------------------------------------------------------- evaluation


def evaluate_split(tagger: Tagger, sents: list[Sentence], enc: Encoded) -> dict[str, Any]:
    """Entity P/R/F1 (untyped spans for a ranking model), token accuracy, and for ranking the
    pairwise ranking accuracy."""
    scores = tagger.scores(enc)
    pred = tagger.tag_encoded(enc, scores)
    gold = [list(s.tags) for s in sents]
    if tagger.objective == "ranking":
        gold = [untyped(g) for g in gold]
    result = evaluate(gold, pred).to_dict()
    if tagger.objective == "ranking":
        result["ranking_accuracy"] = ranking_accuracy(tagger, enc, scores)
    return result


def ranking_accuracy(tagger: Tagger, enc: Encoded, scores: np.ndarray) -> float:
    """% of (entity window, center-corrupted window) pairs scored in the right order; the
    corruption draws from a fixed seed so the number is comparable across epochs."""
    entity = np.flatnonzero(enc.tags > 0)
    if len(entity) == 0:
        return 0.0
    sampler = NegativeSampler(enc, len(tagger.words), "center", 1)
    words, caps = enc.windows(entity)
    neg_w, neg_c = sampler.sample(words, caps, np.random.default_rng(12345))
    s_c = tagger.model.scores(neg_w, neg_c)[:, 0]
    return 100.0 * float(np.mean(scores[entity, 0] > s_c))


def choose_threshold(scores: np.ndarray, is_entity: np.ndarray) -> float:
    """The score threshold that maximises token-level entity F1 on (training) windows."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], is_entity[order].astype(np.float64)
    tp = np.cumsum(y)
    n_pred = np.arange(1, len(s) + 1)
    f1 = 2 * tp / (n_pred + y.sum())
    valid = np.r_[s[1:] < s[:-1], True]  # cut only between distinct scores
    best = int(np.argmax(np.where(valid, f1, -1)))
    return float((s[best] + s[best + 1]) / 2) if best + 1 < len(s) else float(s[best] - 1e-6)


# ------------------------------------------------------------------------- the loop


@dataclass
class LoopState:
    """Where the loop is; saved in last.npz so a resumed run continues bit for bit."""

    epoch: int = 0
    step: int = 0
    batch_pos: int = 0
    loss_sum: float = 0.0
    windows_done: int = 0
    epoch_seconds: float = 0.0
    best_f1: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    in_epoch: bool = False  # the epoch's permutation is drawn (and saved with the state)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Trainer:
    """Owns the model, optimizer, schedule and RNG of one run."""

    def __init__(
        self, config: cfg.Config, run_dir: Path, reporter: Reporter, resume: bool = False
    ) -> None:
        self.config, self.run_dir, self.reporter = config, run_dir, reporter
        self.rng = np.random.default_rng(config.seed)
        self.data = prepare_data(config, reporter, self._extra_words())
        self.train_idx = self._training_tokens()
        self.state = LoopState()
        self.perm = np.arange(len(self.train_idx))
        table = None if resume else initial_word_table(config, self.data, self.rng, reporter)
        self.tagger = build_tagger(config, self.data, self.rng, table)
        del table
        self.optimizer = Optimizer(config.optimizer)
        self.sampler = self._sampler()
        B = config.train.batch_size
        self.n_batches = max(1, -(-len(self.train_idx) // B))
        s = config.schedule
        self.schedule = Schedule(
            s.name, config.optimizer.lr, s.factor, s.every, s.k, s.tau, s.unit, self.n_batches
        )
        self.metrics: list[dict[str, Any]] = []
        self._signal: int | None = None
        if resume:
            self._load_last()

    # ---------------------------------------------------------------- setup helpers

    def _extra_words(self) -> list[str]:
        """Pretrained words kept beyond the training vocabulary (never updated in training)."""
        e = self.config.embeddings
        if e.init == "random" or e.keep_pretrained == 0:
            return []
        f = self.config.features
        pretrained = load_pretrained_cached(e.init, f.lowercase, f.digits_to_zero)
        return pretrained.words[: e.keep_pretrained]

    def _training_tokens(self) -> np.ndarray:
        """Indices of the training windows: all tokens, or entity tokens for ranking."""
        tags = self.data.train_enc.tags
        if self.config.model.objective == "ranking":
            idx = np.flatnonzero(tags > 0)
            if len(idx) == 0:
                raise DataError(f"{self.config.data.train}: no entity tokens to rank")
            return idx
        return np.arange(len(tags))

    def _sampler(self) -> NegativeSampler | None:
        n = self.config.negatives
        if n.k == 0:
            return None
        return NegativeSampler(self.data.train_enc, len(self.data.words), n.strategy, n.k, n.power)

    # ---------------------------------------------------------------- running

    def run(self) -> dict[str, Any]:
        """Train to the end (or early stop), then evaluate the best model; returns the summary."""
        t = self.config.train
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            # Overflow is detected (and explained) by the finite checks, not by numpy warnings.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                while self.state.epoch < t.epochs and not self.state.stopped_early:
                    self._run_epoch()
            if self._signal is not None:  # arrived during the last epoch's evaluation
                self._interrupt()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return self._finish()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signal = signum

    def _run_epoch(self) -> None:
        st, B = self.state, self.config.train.batch_size
        if not st.in_epoch:
            st.loss_sum, st.windows_done, st.epoch_seconds = 0.0, 0, 0.0
            if self.config.train.shuffle:
                self.perm = self.perm[:0]  # free the old one first: one permutation in memory
                self.perm = self.rng.permutation(len(self.train_idx))
            st.in_epoch = True
        self.reporter.epoch_start(
            st.epoch + 1, self.config.train.epochs, self.n_batches, st.batch_pos
        )
        started = time.perf_counter() - st.epoch_seconds
        last_report = 0.0
        while st.batch_pos < self.n_batches:
            if self._signal is not None:
                st.epoch_seconds = time.perf_counter() - started
                self._interrupt()
            idx = self.train_idx[self.perm[st.batch_pos * B : (st.batch_pos + 1) * B]]
            lr = self.schedule(st.step)
            loss = self._step(idx, lr)
            st.loss_sum += loss * len(idx)
            st.windows_done += len(idx)
            st.batch_pos += 1
            now = time.perf_counter()
            if now - last_report > 0.2 or st.batch_pos == self.n_batches:
                last_report = now
                wps = st.windows_done / max(now - started, 1e-9)
                self.reporter.batch_progress(st.batch_pos, st.loss_sum / st.windows_done, lr, wps)
        st.epoch_seconds = time.perf_counter() - started
        self._end_epoch()

    def _step(self, idx: np.ndarray, lr: float) -> float:
        enc = self.data.train_enc
        words, caps = enc.windows(idx)
        neg_w = neg_c = None
        if self.sampler is not None:
            neg_w, neg_c = self.sampler.sample(words, caps, self.rng)
        batch = Batch(words, caps, enc.tags[idx], neg_w, neg_c)
        model = self.tagger.model
        # the fast path: the same math and random draws as loss_and_grads, in reused buffers
        loss, grads = model.loss_and_grads_fast(batch, self.rng)
        self.state.step += 1
        if not np.isfinite(loss):
            self._diverged(f"the loss became {loss}")
        self.optimizer.step(model.params, grads, lr)
        return loss

    def _diverged(self, what: str) -> None:
        lr = self.config.optimizer.lr
        best = self.run_dir / "model.npz"
        kept = (
            f"; the best model so far is in {best}"
            if best.exists()
            else "; no epoch finished, so no model was saved"
        )
        raise TrainingDiverged(
            f"training diverged at step {self.state.step} (epoch {self.state.epoch + 1}): {what}. "
            f"Try a lower learning rate, e.g. --set optimizer.lr={lr / 10:g}{kept}"
        )

    def _end_epoch(self) -> None:
        st = self.state
        for name, p in self.tagger.model.params.items():
            if not np.isfinite(p).all():
                self._diverged(f"parameter {name} holds NaN or inf")
        st.epoch += 1
        st.batch_pos = 0
        st.in_epoch = False
        record: dict[str, Any] = {
            "epoch": st.epoch,
            "step": st.step,
            "lr": self.schedule(max(st.step - 1, 0)),  # the rate of the epoch's last step
            "train_loss": st.loss_sum / max(st.windows_done, 1),
        }
        if self.tagger.objective == "ranking":
            self.tagger.threshold = self._fit_threshold()
        dev_f1 = self._evaluate_dev(record)
        record["seconds"] = st.epoch_seconds
        record["windows_per_s"] = st.windows_done / max(st.epoch_seconds, 1e-9)
        if dev_f1 is None or dev_f1 > st.best_f1:
            st.best_f1 = -1.0 if dev_f1 is None else dev_f1
            st.best_epoch, st.bad_epochs = st.epoch, 0
            self.tagger.save(self.run_dir / "model.npz", {"epoch": st.epoch})
        else:
            st.bad_epochs += 1
            patience = self.config.train.patience
            st.stopped_early = bool(patience and st.bad_epochs >= patience)
        self.metrics.append(record)
        self._write_metrics()
        self._save_last()
        self.reporter.epoch_end(record)

    def _evaluate_dev(self, record: dict[str, Any]) -> float | None:
        d = self.data
        if d.dev is None or d.dev_enc is None:
            return None
        result = evaluate_split(self.tagger, d.dev, d.dev_enc)
        record.update(
            {
                "dev_precision": result["precision"],
                "dev_recall": result["recall"],
                "dev_f1": result["f1"],
                "dev_token_accuracy": result["token_accuracy"],
            }
        )
        if "ranking_accuracy" in result:
            record["dev_ranking_accuracy"] = result["ranking_accuracy"]
        return result["f1"]

    def _fit_threshold(self) -> float:
        """The ranking threshold from the scores of every training window, in chunks."""
        enc = self.data.train_enc
        scores = np.empty(enc.n_tokens, dtype=np.float64)
        for a in range(0, enc.n_tokens, SCORE_CHUNK):
            idx = np.arange(a, min(a + SCORE_CHUNK, enc.n_tokens))
            scores[idx] = self.tagger.model.scores(*enc.windows(idx))[:, 0]
        return choose_threshold(scores, enc.tags > 0)

    # ---------------------------------------------------------------- files

    def _write_metrics(self) -> None:
        lines = "".join(json.dumps(r) + "\n" for r in self.metrics)
        atomic_write_text(self.run_dir / "metrics.jsonl", lines)

    def _save_last(self) -> None:
        arrays = self.optimizer.state_arrays()
        n = self.tagger.frozen_rows
        for key in [k for k in arrays if n and k.startswith("opt/E_word.")]:
            arrays[key] = arrays[key][:-n]  # frozen rows have no optimizer state (all zero)
        arrays["loop/perm"] = self.perm
        meta = {
            "loop": self.state.to_dict(),
            "rng": self.rng.bit_generator.state,
            "metrics": self.metrics,
        }
        self.tagger.save(self.run_dir / "last.npz", meta, arrays)

    def _load_last(self) -> None:
        path = self.run_dir / "last.npz"
        stale = remove_stale_temporaries(self.run_dir)
        if stale:
            self.reporter.log(f"removed {len(stale)} partial file(s) left by an interrupted write")
        tagger, arrays, meta = Tagger.load(path)
        if tagger.words.items != self.data.words.items or tagger.tags != self.data.tags.items:
            raise ModelFileError(
                f"{path}: the training data changed since this run started "
                f"({self.config.data.train}); resume needs the same data"
            )
        if tagger.model.spec != self.tagger.model.spec:
            raise ModelFileError(f"{path}: the checkpoint does not match the run's config.yaml")
        try:
            perm = arrays["loop/perm"]
            if perm.shape != (len(self.train_idx),) or perm.dtype.kind not in "iu":
                raise ValueError("loop/perm does not fit the training data")
            self.optimizer.load_state_arrays(self._padded_state(arrays))
            self.rng.bit_generator.state = meta["rng"]
            state = LoopState(**meta["loop"])
            metrics = list(meta["metrics"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: not a usable training checkpoint ({exc})") from None
        self.tagger.model.params = tagger.model.params
        self.tagger.threshold = tagger.threshold
        self.perm, self.state, self.metrics = perm, state, metrics

    def _padded_state(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Optimizer state with the frozen rows' zeros put back (see ``_save_last``)."""
        n = self.tagger.frozen_rows
        out = dict(arrays)
        for key in [k for k in arrays if n and k.startswith("opt/E_word.")]:
            value = arrays[key]
            out[key] = np.concatenate([value, np.zeros((n, *value.shape[1:]), value.dtype)])
        return out

    def _interrupt(self) -> None:
        self._save_last()
        signum = self._signal or signal.SIGINT
        name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        st = self.state
        where = (
            f"in epoch {st.epoch + 1} after batch {st.batch_pos} of {self.n_batches}"
            if st.in_epoch
            else f"after epoch {st.epoch}"
        )
        raise Interrupted(
            signum,
            f"{name}: stopped at step {st.step}, {where}; saved {self.run_dir / 'last.npz'}. "
            f"Resume with: windowner train --resume {shlex.quote(str(self.run_dir))}",
        )

    def _finish(self) -> dict[str, Any]:
        # Training is over: free its state before the best model is loaded beside it.
        self.optimizer.state.clear()
        self.tagger.model.params.clear()
        best, _, _ = Tagger.load(self.run_dir / "model.npz")
        d = self.data
        summary: dict[str, Any] = {
            "run_dir": str(self.run_dir),
            "epochs": self.state.epoch,
            "steps": self.state.step,
            "best_epoch": self.state.best_epoch,
            "stopped_early": self.state.stopped_early,
            "vocab_size": len(d.words),
            "tags": d.tags.items,
            "seconds": sum(r["seconds"] for r in self.metrics),
        }
        for name, sents, enc in (("dev", d.dev, d.dev_enc), ("test", d.test, d.test_enc)):
            if sents is not None and enc is not None:
                summary[name] = evaluate_split(best, sents, enc)
        atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        return summary


def strip_timing(record: dict[str, Any]) -> dict[str, Any]:
    """A metrics record without the fields that depend on the machine's speed."""
    return {k: v for k, v in record.items() if k not in TIMING_FIELDS}


# --- TEMP train() for the sweep branch (replaced at merge) ---


def _temp_load(config: Any, overrides: Any) -> cfg.Config:
    """Config | path + overrides (a mapping or ``key=value`` strings) → a resolved Config."""
    items = (
        [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
        if hasattr(overrides, "items")
        else list(overrides)
    )
    if isinstance(config, cfg.Config):
        raw = config.to_dict()
        problems: list[str] = []
        for item in items:
            cfg.apply_override(raw, item, problems)
        if problems:
            raise cfg.ConfigError(problems, "overrides")
        return cfg.resolved(cfg.from_dict(raw))
    return cfg.resolved(cfg.load_config(config, items))


class _EpochHook:
    """A reporter that forwards to another and calls ``on_epoch(record)`` after each epoch."""

    def __init__(self, inner: Reporter, on_epoch: Callable[[dict[str, Any]], Any]) -> None:
        self.inner, self.on_epoch = inner, on_epoch
        self.trainer: Any = None

    def log(self, message: str) -> None:
        self.inner.log(message)

    def epoch_start(self, epoch: int, epochs: int, n_batches: int, done: int) -> None:
        self.inner.epoch_start(epoch, epochs, n_batches, done)

    def batch_progress(self, batches_done: int, loss: float, lr: float, wps: float) -> None:
        self.inner.batch_progress(batches_done, loss, lr, wps)

    def epoch_end(self, record: dict[str, Any]) -> None:
        self.inner.epoch_end(record)
        if self.on_epoch(record) is True and self.trainer is not None:
            self.trainer.state.stopped_early = True


def train(
    config: Any,
    overrides: Any = (),
    *,
    out_dir: str | Path | None = None,
    resume: str | Path | None = None,
    reporter: Reporter | None = None,
    on_epoch: Callable[[dict[str, Any]], bool | None] | None = None,
) -> dict[str, Any]:
    """Train one run (TEMP stand-in for the library function); returns the summary."""
    reporter = reporter or SilentReporter()
    hook = _EpochHook(reporter, on_epoch) if on_epoch is not None else None
    if resume is not None:
        run_dir = Path(resume)
        conf = cfg.load_config(run_dir / "config.yaml")
    else:
        conf = _temp_load(config, overrides)
        run_dir = Path(out_dir) if out_dir is not None else Path(conf.out_dir) / "run"
        if (run_dir / "last.npz").exists():
            raise WindownerError(f"{run_dir} already holds a run")
    trainer = Trainer(conf, run_dir, hook or reporter, resume=resume is not None)
    if hook is not None:
        hook.trainer = trainer
    if resume is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", cfg.dump_yaml(conf))
    return trainer.run()


# --- end TEMP ---

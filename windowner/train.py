"""Training: ``train()`` (the library entry point the CLI calls) and the loop behind it.

A run directory holds ``config.yaml`` (resolved), ``model.npz`` (best dev F1, with the data
files' sha256 in its metadata), ``MODEL.md`` (the model card, windowner.card), ``last.npz``
(everything needed to resume bit for bit: parameters, optimizer state, RNG state, the epoch's
permutation and position), ``metrics.jsonl`` (one object per epoch) and ``summary.json``.
Every file is written atomically.

Where to change what: run directories (naming, claiming, ``latest``) are windowner.runs;
``last.npz`` is windowner.resume; dev/test scores are windowner.evaluate; data reading and
encoding are ``prepare_data``; one optimisation step is ``Trainer._step``; what happens at the
end of an epoch (metrics, best model, early stopping, ``on_epoch``) is ``Trainer._end_epoch``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import secrets
import shlex
import signal
import sys
import time
import types
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from windowner import card, runs
from windowner import config as cfg
from windowner.calibrate import PROBABILISTIC, fit_temperature, store_temperature
from windowner.checkpoint import atomic_write_text, file_sha256
from windowner.corpus import (
    SchemeEvidence,
    Sentence,
    Vocab,
    iter_conll,
    normalize_word,
    read_conll,
    tag_vocab_of,
)
from windowner.decode import allowed_transitions
from windowner.entry import signals_to
from windowner.errors import (
    ConfigError,
    DataError,
    TrainingDiverged,
    UsageError,
    WindownerError,
    signal_behind,
)
from windowner.evaluate import evaluate_split, report_unseen_tags
from windowner.features import AFFIX_LENGTHS, DOC_TABLES, FeatureVocabs
from windowner.nn.fast import train_step
from windowner.nn.fused import warm_up as warm_up_numba
from windowner.nn.losses import SENTENCE_OBJECTIVES
from windowner.nn.model import Batch, WindowScorer
from windowner.optim.optimizers import Optimizer
from windowner.optim.schedules import Schedule
from windowner.optim.worker import ENV, WorkerDied, WorkerPolicy
from windowner.resume import data_hashes, restore_checkpoint, save_checkpoint
from windowner.tagger import Tagger
from windowner.threads import RECHECK_SECONDS, ThreadPolicy
from windowner.windows import Encoded, NegativeSampler, encode

TIMING_FIELDS = ("seconds", "windows_per_s", "threads")  # fields that depend on the machine


class Reporter(Protocol):
    """Where training events go (the CLI draws them with rich)."""

    def log(self, message: str) -> None: ...
    def epoch_start(self, epoch: int, epochs: int, n_batches: int, done: int) -> None: ...
    def batch_progress(self, batches_done: int, loss: float, lr: float, wps: float) -> None: ...
    def epoch_end(self, record: dict[str, Any]) -> None: ...


EpochHook = Callable[[dict[str, Any]], bool | None]  # on_epoch(record) → True to stop


class SilentReporter:
    def log(self, message: str) -> None:
        pass

    def epoch_start(self, epoch: int, epochs: int, n_batches: int, done: int) -> None:
        pass

    def batch_progress(self, batches_done: int, loss: float, lr: float, wps: float) -> None:
        pass

    def epoch_end(self, record: dict[str, Any]) -> None:
        pass


class StopNow(KeyboardInterrupt):
    """Raised by the training signal handler inside an evaluation (never escapes ``run``)."""


class Interrupted(WindownerError):
    """SIGINT/SIGTERM during training; ``last.npz`` was saved first."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


# ------------------------------------------------------------------------- data


@dataclass(kw_only=True)
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
    features: FeatureVocabs | None = None  # extra window features' vocabularies, if on


ENCODE_CHUNK = 4096  # sentences encoded at a time
SCORE_CHUNK = 65536  # training windows scored at a time (the ranking threshold)


def prepare_data(config: cfg.Config, reporter: Reporter, extra_words: list[str] = ()) -> Prepared:
    """Read the splits, build vocabularies from training data, encode every split."""
    f = config.features
    normalize = partial(normalize_word, lowercase=f.lowercase, digits_to_zero=f.digits_to_zero)
    found = {split: SchemeEvidence() for split in ("train", "dev", "test")}
    train = training_source(config.data.train, config.data.scheme, found["train"])
    counts: Counter[str] = Counter()
    seen_tags: set[str] = set()
    n_sents = n_tokens = 0
    for sent in train():
        counts.update(map(normalize, sent.tokens))
        seen_tags.update(sent.tags)
        n_sents += 1
        n_tokens += len(sent.tokens)
    dev = read_conll(config.data.dev, config.data.scheme, found["dev"]) if config.data.dev else None
    test = (
        read_conll(config.data.test, config.data.scheme, found["test"])
        if config.data.test
        else None
    )
    log_schemes(config.data.scheme, found, reporter.log)
    # Pretrained words kept for prediction are only those absent from the training data: they
    # are never updated, so they form a frozen block at the end of the table.
    words = Vocab.from_counts(counts, f.min_count, [w for w in extra_words if w not in counts])
    n_extra = len(words) - len(Vocab.from_counts(counts, f.min_count))
    tags = tag_vocab_of(seen_tags)
    for name, sents in (("dev", dev), ("test", test)):
        if sents:
            report_unseen_tags(name, sents, tags, reporter.log)
    features = feature_vocabs(f, train)
    enc = partial(
        encode,
        word_vocab=words,
        tag_vocab=tags,
        window=f.window,
        normalize=normalize,
        features=features,
        feature_tables=f.table_names(),
    )
    train_enc = encode_stream(train(), n_sents, n_tokens, enc, f.window, config.data.train)
    return Prepared(
        words=words,
        tags=tags,
        normalize=normalize,
        dev=dev,
        test=test,
        train_enc=train_enc,
        dev_enc=enc(dev) if dev else None,
        test_enc=enc(test) if test else None,
        word_counts=dict(counts),
        n_extra=n_extra,
        features=features,
    )


def feature_vocabs(
    f: cfg.FeaturesConfig, train: Callable[[], Iterator[Sentence]]
) -> FeatureVocabs | None:
    """The extra window features' vocabularies from the training tokens (None when off);
    the document-level features' are their fixed classes (no pass over the data)."""
    names = f.table_names()
    if not names:
        return None
    doc_tables = [n for n in names if n in DOC_TABLES]
    if len(doc_tables) == len(names):
        return FeatureVocabs({}).with_doc_tables(doc_tables)
    lengths = range(f.affix_min, f.affix_max + 1) if f.affix_dim > 0 else AFFIX_LENGTHS
    tokens = (sent.tokens for sent in train())
    vocabs = FeatureVocabs.build(tokens, lengths=tuple(lengths), min_count=f.feature_min_count)
    return vocabs.with_doc_tables(doc_tables)


def training_source(
    path: str, scheme: str, evidence: SchemeEvidence | None = None
) -> Callable[[], Iterator[Sentence]]:
    """A function that streams the sentences of ``path`` afresh on each call; a pipe or other
    non-regular file, which can be read only once, is read into memory first. ``evidence``
    counts the raw tags of the first pass only."""
    if not Path(path).is_file():
        return partial(iter, read_conll(path, scheme, evidence))
    calls = iter([evidence])
    return lambda: iter_conll(path, scheme, next(calls, None))


def log_schemes(scheme: str, found: dict[str, SchemeEvidence], log: Callable[[str], None]) -> None:
    """One line naming the tag scheme found in each split (``data.scheme: auto``), or a note
    when a split does not look like the scheme the config names. Training uses IOB2 either way."""
    seen = {split: ev for split, ev in found.items() if ev.sentences}
    if scheme == "auto":
        parts = "; ".join(f"{split} {ev.describe()}" for split, ev in seen.items())
        log(f"tag scheme (data.scheme: auto): {parts}; trained as IOB2")
        return
    named = "iobes" if scheme == "bioes" else scheme
    for split, ev in seen.items():
        if ev.scheme != named and (ev.iobes_tags or ev.i_starts or ev.b_starts):
            log(f"note: data.scheme is {scheme} but the {split} file looks {ev.describe()}")


def document_chunks(
    sentences: Iterable[Sentence], size: int, limit: int = 16
) -> Iterator[list[Sentence]]:
    """Lists of about ``size`` sentences, each ending where a document does (``Sentence.doc``
    changes), so that document-level features see whole documents; a document longer than
    ``limit`` × ``size`` sentences is cut anyway (memory stays bounded)."""
    stream = iter(sentences)
    chunk = list(islice(stream, size))
    for sent in stream:
        if len(chunk) >= size and (sent.doc != chunk[-1].doc or len(chunk) >= limit * size):
            yield chunk
            chunk = []
        chunk.append(sent)
        if len(chunk) < size:
            chunk += islice(stream, size - len(chunk))
    if chunk:
        yield chunk


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
    feats = None
    centers = np.empty(n_tokens, dtype=np.int64)
    tags = np.empty(n_tokens, dtype=np.int32)
    bounds = np.zeros(n_sents + 1, dtype=np.int64)
    w = t = s = 0
    changed = DataError(f"{name}: the file changed while it was being read; try again")
    for chunk in document_chunks(sentences, chunk_size):
        part = enc(chunk)
        nw, nt, ns = len(part.words), part.n_tokens, len(chunk)
        if w + nw > len(words) or t + nt > n_tokens or s + ns > n_sents:
            raise changed
        words[w : w + nw] = part.words
        caps[w : w + nw] = part.caps
        if part.feats is not None:
            if feats is None:
                feats = np.empty((len(words), part.feats.shape[1]), dtype=np.int32)
            feats[w : w + nw] = part.feats
        centers[t : t + nt] = part.centers + w
        tags[t : t + nt] = part.tags
        bounds[s + 1 : s + ns + 1] = part.sent_bounds[1:] + t
        w, t, s = w + nw, t + nt, s + ns
    if (w, t, s) != (len(words), n_tokens, n_sents):
        raise changed
    return Encoded(words, caps, centers, tags, bounds, window, feats)


# ------------------------------------------------------------------------- model


def build_tagger(
    config: cfg.Config,
    data: Prepared,
    rng: np.random.Generator,
    word_table: np.ndarray | None = None,
) -> Tagger:
    """A freshly initialised model wrapped in a Tagger."""
    m, e = config.model, config.embeddings
    names = config.features.table_names()
    rows = data.features.table_rows(names) if data.features is not None else None
    spec = cfg.model_spec(config, len(data.words), len(data.tags), rows)
    model = WindowScorer.create(spec, rng, m.initializer, m.init_scale, word_table, e.scale)
    if m.objective in SENTENCE_OBJECTIVES and m.decode == "viterbi":
        model.constraints = allowed_transitions(data.tags.items)  # trained as decoded
    return Tagger(
        model=model,
        words=data.words,
        tags=data.tags.items,
        lowercase=config.features.lowercase,
        digits_to_zero=config.features.digits_to_zero,
        decode=m.decode,
        threshold=0.0,
        config=config.to_dict(),
        frozen_rows=data.n_extra,
        features=data.features,
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


# ------------------------------------------------------------------------- ranking threshold


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

    def where(self, n_batches: int) -> str:
        """Where the loop stopped, for the interrupt message."""
        if not self.in_epoch:
            return f"after epoch {self.epoch}"
        if self.batch_pos == n_batches:
            return f"evaluating epoch {self.epoch + 1} (redone on resume)"
        return f"in epoch {self.epoch + 1} after batch {self.batch_pos} of {n_batches}"


class Trainer:
    """Owns the model, optimizer, schedule and RNG of one run (``last.npz``: windowner.resume).

    ``on_epoch(record)`` is called after each epoch is recorded and saved; returning True
    stops training like early stopping (the run can still be resumed later)."""

    provenance: dict[str, Any] = {}  # set by train() (windowner.card); stored in model.npz

    def __init__(
        self,
        config: cfg.Config,
        run_dir: Path,
        reporter: Reporter,
        resume: bool = False,
        on_epoch: EpochHook | None = None,
    ) -> None:
        self.config, self.run_dir, self.reporter = config, run_dir, reporter
        self.on_epoch = on_epoch
        self.rng = np.random.default_rng(config.seed)
        self.data_sha256 = data_hashes(config)  # before reading: what the run trains on
        self.model_sha256: str | None = None  # of the best model.npz this run wrote
        self.run_token = secrets.token_hex(8)  # in model.npz and last.npz: "this run's"
        self.data = prepare_data(config, reporter, extra_words(config))
        self.train_idx = training_tokens(config, self.data)
        self.state = LoopState()
        self.perm = np.arange(len(self.train_idx))
        table = None if resume else initial_word_table(config, self.data, self.rng, reporter)
        self.tagger = build_tagger(config, self.data, self.rng, table)
        del table
        self.optimizer = Optimizer(config.optimizer)
        if self.optimizer.kernels == "numba":  # numba's compiler loads here, where a signal
            warm_up_numba()  # stops at once, not in the first step, which finishes first
        self.sampler = negative_sampler(config, self.data)
        B = config.train.batch_size
        self.n_batches = max(1, -(-len(self.train_idx) // B))
        self.schedule = Schedule.from_config(
            config.schedule, lr=config.optimizer.lr, steps_per_epoch=self.n_batches
        )
        self.metrics: list[dict[str, Any]] = []
        self._signal: int | None = None
        self.threads = thread_policy(config)
        self.worker = WorkerPolicy(self.optimizer, reporter.log)
        self._stop_now = False  # a signal raises StopNow at once (evaluation phases)
        if resume:
            restore_checkpoint(self)

    # ---------------------------------------------------------------- running

    def run(self) -> dict[str, Any]:
        """Train to the end (or early stop), then evaluate the best model; returns the summary."""
        t = self.config.train
        with self.signals_deferred(), contextlib.ExitStack() as stack:
            stack.callback(self.worker.stop)  # W, b, U and their state back in this process
            try:
                # Overflow is detected (and explained) by the finite checks, not numpy warnings.
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"), self.threads:
                    self._log_kernels()
                    self.worker.start(
                        self.tagger.model.params,
                        self.threads.choice,
                        self.optimizer.kernels,
                        self.tagger.model.spec.l2,
                    )
                    while self.state.epoch < t.epochs and not self.state.stopped_early:
                        self._run_epoch()
            except (StopNow, RuntimeError) as e:  # in an evaluation: redone on resume
                if not isinstance(signal_behind(e), StopNow):
                    raise  # (a RuntimeError wraps StopNow raised during an import)
                self._interrupt()
            except WorkerDied as e:
                raise WorkerDied(
                    f"{e} at step {self.state.step}; the last checkpoint is "
                    f"{self.run_dir / 'last.npz'}: resume with windowner train --resume "
                    f"{shlex.quote(str(self.run_dir))} ({ENV}=off keeps every update here)"
                ) from None
            if self._signal is not None:  # arrived while the last epoch was being saved
                self._interrupt()
        return self._finish()

    def signals_deferred(self) -> contextlib.AbstractContextManager[None]:
        """SIGINT/SIGTERM only set a flag, acted on between batches (``_interrupt`` saves
        last.npz first) or at once during an evaluation (``StopNow``)."""
        return signals_to(self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signal = signum
        if self._stop_now:
            self._stop_now = False
            raise StopNow()

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
            # token indices, or sentence indices for the sentence-level objectives
            idx = self.train_idx[self.perm[st.batch_pos * B : (st.batch_pos + 1) * B]]
            lr = self.schedule(st.step)
            step_started = time.perf_counter()
            loss = self._step(idx, lr)
            self._observe_step(time.perf_counter() - step_started)
            n_windows = batch_windows(self.config, self.data.train_enc, idx)
            st.loss_sum += loss * n_windows
            st.windows_done += n_windows
            st.batch_pos += 1
            now = time.perf_counter()
            if now - last_report > 0.2 or st.batch_pos == self.n_batches:
                last_report = now
                self._recheck_threads(RECHECK_SECONDS)
                wps = st.windows_done / max(now - started, 1e-9)
                self.reporter.batch_progress(st.batch_pos, st.loss_sum / st.windows_done, lr, wps)
        self.optimizer.settle()  # the last step's update of W, before W is read or saved
        st.epoch_seconds = time.perf_counter() - started
        self._end_epoch()

    def _step(self, idx: np.ndarray, lr: float) -> float:
        """One step on the windows ``idx`` (token indices), or for the sentence-level
        objectives on the whole sentences ``idx`` (sentence indices)."""
        enc, bounds = self.data.train_enc, None
        if self.config.model.objective in SENTENCE_OBJECTIVES:
            idx, bounds = sentence_tokens(enc.sent_bounds, idx)
        words, caps = enc.windows(idx)
        neg_w = neg_c = None
        if self.sampler is not None:
            neg_w, neg_c = self.sampler.sample(words, caps, self.rng)
        batch = Batch(
            words=words,
            caps=caps,
            tags=enc.tags[idx],
            neg_words=neg_w,
            neg_caps=neg_c,
            bounds=bounds,
            feats=enc.feature_windows(idx),
        )
        # the fast path: the same math and random draws as loss_and_grads, in reused buffers
        loss = train_step(self.tagger.model, batch, self.optimizer, lr, self.rng)
        self.state.step += 1
        if not np.isfinite(loss):
            self._diverged(f"the loss became {loss}")
        return loss

    def _diverged(self, what: str) -> None:
        raise diverged_error(self.state, self.config.optimizer.lr, self.run_dir, what)

    def _end_epoch(self) -> None:
        st = self.state
        for name, p in self.tagger.model.params.items():
            if not np.isfinite(p).all():
                self._diverged(f"parameter {name} holds NaN or inf")
        record: dict[str, Any] = {
            "epoch": st.epoch + 1,
            "step": st.step,
            "lr": self.schedule(max(st.step - 1, 0)),  # the rate of the epoch's last step
            "train_loss": st.loss_sum / max(st.windows_done, 1),
        }
        dev_f1 = self._evaluate(record)
        st.epoch += 1
        st.batch_pos = 0
        st.in_epoch = False
        record["seconds"] = st.epoch_seconds
        record["windows_per_s"] = st.windows_done / max(st.epoch_seconds, 1e-9)
        record["threads"] = self.threads.choice.threads
        self._recheck_threads()  # for the next epoch
        if dev_f1 is None or dev_f1 > st.best_f1:
            st.best_f1 = -1.0 if dev_f1 is None else dev_f1
            st.best_epoch, st.bad_epochs = st.epoch, 0
            self.tagger.save(
                self.run_dir / "model.npz",
                {"epoch": st.epoch, "run": self.run_token, **self.provenance},
            )
            self.model_sha256 = file_sha256(self.run_dir / "model.npz")
        else:
            st.bad_epochs += 1
            patience = self.config.train.patience
            st.stopped_early = bool(patience and st.bad_epochs >= patience)
        self.metrics.append(record)
        write_metrics(self.run_dir, self.metrics)
        save_checkpoint(self)
        self.reporter.epoch_end(record)
        if self.on_epoch is not None and self.on_epoch(record):
            st.stopped_early = True  # after the save: a resumed run would go on training

    def _log_kernels(self) -> None:
        """What the products and updates run on: the BLAS threads, numba if used."""
        log_kernels(self.reporter, self.threads.choice, self.optimizer.kernels)

    def _observe_step(self, seconds: float) -> None:
        """Feed a step's time to the thread policy (auto compares thread counts on them) and
        to the update worker's (it is kept only if steps are faster with it)."""
        self.worker.observe(seconds)
        changed = self.threads.observe(seconds)
        if changed is not None:
            self.reporter.log(changed.describe())

    def _recheck_threads(self, min_seconds: float = 0.0) -> None:
        """Adapt the BLAS threads to other processes' load (auto, large products only); stop
        the update worker if this process waits for it (another process took its core)."""
        self.worker.recheck(min_seconds)
        changed = self.threads.recheck(min_seconds)
        if changed is not None:
            self.reporter.log(f"other processes' load changed: {changed.describe()}")

    def _evaluate(self, record: dict[str, Any]) -> float | None:
        """The ranking threshold and the dev scores; a signal stops them at once (the loop
        state is still that of the epoch's last batch, so a resume redoes this)."""
        self._stop_now = True
        try:
            if self._signal is not None:
                raise StopNow()
            if self.tagger.objective == "ranking":
                self.tagger.threshold = fit_threshold(self.tagger, self.data.train_enc)
            return evaluate_dev(self.tagger, self.data, record)
        finally:
            self._stop_now = False

    def _interrupt(self) -> None:
        self.optimizer.settle()  # the last step's update of W, b and U, if a worker runs it
        save_checkpoint(self)
        signum = self._signal or signal.SIGINT
        name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        st = self.state
        where = st.where(self.n_batches)
        raise Interrupted(
            signum,
            f"{name}: stopped at step {st.step}, {where}; saved {self.run_dir / 'last.npz'}. "
            f"Resume with: windowner train --resume {shlex.quote(str(self.run_dir))}",
        )

    def _finish(self) -> dict[str, Any]:
        # Training is over: free its state before the best model is loaded beside it.
        self.optimizer.state.clear()
        self.tagger.model.params.clear()
        best = Tagger.load(self.run_dir / "model.npz")
        d = self.data
        if d.dev_enc is not None and best.objective not in PROBABILISTIC:  # hinge → probabilities
            best.temperature = fit_temperature(best, d.dev_enc)
            store_temperature(self.run_dir / "model.npz", best.temperature)
        summary = run_summary(self.run_dir, self.state, d, self.metrics, best)
        atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        return summary


# ------------------------------------------------------------------------- loop helpers


def diverged_error(state: LoopState, lr: float, run_dir: Path, what: str) -> TrainingDiverged:
    """The divergence error: where it happened, a lower rate to try, where the best model is."""
    best = run_dir / "model.npz"
    kept = (
        f"; the best model so far is in {best}"
        if best.exists()
        else "; no epoch finished, so no model was saved"
    )
    return TrainingDiverged(
        f"training diverged at step {state.step} (epoch {state.epoch + 1}): {what}. "
        f"Try a lower learning rate, e.g. --set optimizer.lr={lr / 10:g}{kept}"
    )


def log_kernels(reporter: Reporter, choice: Any, kernels: str) -> None:
    """Say what the products and updates run on: the BLAS threads, numba if used."""
    reporter.log(choice.describe())
    if kernels != "numpy":
        reporter.log(f"optimizer updates: {kernels} one-pass kernels (WINDOWNER_NO_NUMBA=1: numpy)")


def run_summary(
    run_dir: Path, state: LoopState, data: Prepared, metrics: list[dict[str, Any]], best: Tagger
) -> dict[str, Any]:
    """summary.json: the loop's totals and the best model's dev/test evaluation."""
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "epochs": state.epoch,
        "steps": state.step,
        "best_epoch": state.best_epoch,
        "stopped_early": state.stopped_early,
        "vocab_size": len(data.words),
        "tags": data.tags.items,
        "seconds": sum(r["seconds"] for r in metrics),
    }
    for name, sents, enc in (("dev", data.dev, data.dev_enc), ("test", data.test, data.test_enc)):
        if sents is not None and enc is not None:
            summary[name] = evaluate_split(best, sents, enc)
    return summary


def thread_policy(config: cfg.Config) -> ThreadPolicy:
    """The BLAS thread policy for a training step's products (``train.threads``)."""
    windows = config.train.batch_size * (1 + config.negatives.k)
    rows = dict.fromkeys(config.features.table_names(), 1)  # sizes do not change input_dim
    spec = cfg.model_spec(config, vocab_size=1, n_tags=1, feature_rows=rows)
    return ThreadPolicy(config.train.threads, windows, spec.hidden, spec.input_dim)


def extra_words(config: cfg.Config) -> list[str]:
    """Pretrained words kept beyond the training vocabulary (never updated in training)."""
    e = config.embeddings
    if e.init == "random" or e.keep_pretrained == 0:
        return []
    f = config.features
    pretrained = load_pretrained_cached(e.init, f.lowercase, f.digits_to_zero)
    return pretrained.words[: e.keep_pretrained]


def training_tokens(config: cfg.Config, data: Prepared) -> np.ndarray:
    """What an epoch shuffles and cuts into batches of ``train.batch_size``: the indices of
    the training windows (all tokens, or the entity tokens for ranking), or for the
    sentence-level objectives (crf, structured) the indices of the non-empty sentences."""
    if config.model.objective in SENTENCE_OBJECTIVES:
        return np.flatnonzero(np.diff(data.train_enc.sent_bounds) > 0)
    tags = data.train_enc.tags
    if config.model.objective == "ranking":
        idx = np.flatnonzero(tags > 0)
        if len(idx) == 0:
            raise DataError(f"{config.data.train}: no entity tokens to rank")
        return idx
    return np.arange(len(tags))


def batch_windows(config: cfg.Config, enc: Encoded, idx: np.ndarray) -> int:
    """Windows (tokens) in a batch of token indices, or of sentence indices for the
    sentence-level objectives."""
    if config.model.objective not in SENTENCE_OBJECTIVES:
        return len(idx)
    return int(np.sum(enc.sent_bounds[idx + 1] - enc.sent_bounds[idx]))


def sentence_tokens(bounds: np.ndarray, sentences: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sentences ``sentences`` (B,) of a corpus delimited by ``bounds`` (S + 1,) → (their token
    indices in the given sentence order (N,), the batch's own bounds (B + 1,))."""
    starts = bounds[sentences]
    lengths = bounds[sentences + 1] - starts
    batch_bounds = np.zeros(len(sentences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=batch_bounds[1:])
    idx = np.arange(batch_bounds[-1], dtype=np.int64)
    idx += np.repeat(starts - batch_bounds[:-1], lengths)
    return idx, batch_bounds


def negative_sampler(config: cfg.Config, data: Prepared) -> NegativeSampler | None:
    """The corrupted-window sampler, or None when the config draws no negatives."""
    n = config.negatives
    if n.k == 0:
        return None
    return NegativeSampler(data.train_enc, len(data.words), n.strategy, n.k, n.power)


def evaluate_dev(tagger: Tagger, data: Prepared, record: dict[str, Any]) -> float | None:
    """Add the dev scores to the epoch's ``record``; returns dev F1 (None without a dev set)."""
    if data.dev is None or data.dev_enc is None:
        return None
    result = evaluate_split(tagger, data.dev, data.dev_enc)
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


def fit_threshold(tagger: Tagger, enc: Encoded) -> float:
    """The ranking threshold from the scores of every training window, in chunks."""
    scores = np.empty(enc.n_tokens, dtype=np.float64)
    for a in range(0, enc.n_tokens, SCORE_CHUNK):
        idx = np.arange(a, min(a + SCORE_CHUNK, enc.n_tokens))
        scores[idx] = tagger.model.scores(*enc.windows(idx))[:, 0]
    return choose_threshold(scores, enc.tags > 0)


def write_metrics(run_dir: Path, metrics: list[dict[str, Any]]) -> None:
    """``metrics.jsonl``: every epoch's record so far, one JSON object per line."""
    lines = "".join(json.dumps(r) + "\n" for r in metrics)
    atomic_write_text(run_dir / "metrics.jsonl", lines)


def strip_timing(record: dict[str, Any]) -> dict[str, Any]:
    """A metrics record without the fields that depend on the machine's speed."""
    return {k: v for k, v in record.items() if k not in TIMING_FIELDS}


# ------------------------------------------------------------------------- the library entry point


def train(
    config: cfg.Config | str | Path,
    overrides: Mapping[str, Any] | Sequence[str] = (),
    *,
    out_dir: str | Path | None = None,
    resume: str | Path | None = None,
    reporter: Reporter | None = None,
    on_epoch: Callable[[dict[str, Any]], bool | None] | None = None,
) -> dict[str, Any]:
    """Train a model into a new run directory (or continue one) and return the summary.

    ``config``: a Config or a YAML file; ``overrides``: ``{"model.hidden": 50}`` or
    ``["model.hidden=50"]`` (as ``--set``). The run directory is ``out_dir`` (refused if it
    exists and is not empty) or ``<config.out_dir>/<name>-<time>`` (suffixed if taken); it is
    made only once the data has been read. ``resume``: a run directory, whose own config.yaml
    is used (``config`` must be that file, ``overrides`` empty). ``on_epoch(record)`` is
    called after each epoch is saved; True stops training. ``<parent>/latest`` then points at
    the run; the summary (also summary.json) names it under ``"run_dir"``."""
    reporter = reporter or SilentReporter()
    check_out_arguments(out_dir, resume)
    with contextlib.ExitStack() as held:
        if resume is not None:
            run_dir = Path(resume)
            conf = resume_config(run_dir, config, overrides)
            held.enter_context(runs.training_lock(run_dir))  # one trainer per directory
            trainer = Trainer(conf, run_dir, reporter, resume=True, on_epoch=on_epoch)
        else:
            conf, stem = load_for_training(config, overrides)
            wanted = runs.run_dir_name(conf.out_dir, stem) if out_dir is None else Path(out_dir)
            runs.check_out_dir(wanted) if out_dir is not None else runs.check_creatable(wanted)
            # Data problems surface here, before the run directory is made.
            trainer = Trainer(conf, wanted, reporter, on_epoch=on_epoch)
            with trainer.signals_deferred():  # a signal now stops at the first batch, saved
                run_dir = runs.claim_run_dir(wanted, exact=out_dir is not None)
                held.enter_context(runs.training_lock(run_dir))
                trainer.run_dir = run_dir
                atomic_write_text(run_dir / "config.yaml", cfg.dump_yaml(conf))
        reporter.log(f"run directory: {run_dir}")
        trainer.provenance = card.provenance(conf, trainer.data_sha256)
        summary = trainer.run()
        card.write_card(run_dir, summary, conf, trainer.provenance)
    runs.point_latest(run_dir, reporter.log)
    return summary


def check_out_arguments(out_dir: str | Path | None, resume: str | Path | None) -> None:
    """``out_dir`` and ``resume`` exclude each other, and an ``out_dir`` is not empty."""
    if out_dir is not None and resume is not None:
        raise UsageError("--resume continues the run in its own directory; drop --out")
    if out_dir is not None and not str(out_dir).strip():
        raise UsageError("--out is empty; give the run directory to create")


def override_items(overrides: Mapping[str, Any] | Sequence[str]) -> list[str]:
    """Overrides as ``key.path=value`` strings (a mapping's values written as YAML flow)."""
    if isinstance(overrides, str):
        raise UsageError(f"overrides: give a list of key=value strings, not {overrides!r}")
    if not isinstance(overrides, Mapping):
        return list(overrides)
    import yaml

    def flow(value: Any) -> str:  # one line of YAML; a bare scalar ends with "..."
        text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
        return text.removesuffix("\n...")

    return [f"{key}={flow(value)}" for key, value in overrides.items()]


def load_for_training(
    config: cfg.Config | str | Path, overrides: Mapping[str, Any] | Sequence[str]
) -> tuple[cfg.Config, str]:
    """(the resolved config with the overrides applied, the run name's stem)."""
    items = override_items(overrides)
    if not isinstance(config, cfg.Config):
        return cfg.resolved(cfg.load_config(config, items)), Path(config).stem
    if items:
        raw, problems = config.to_dict(), []
        for item in items:
            cfg.apply_override(raw, item, problems)
        if problems:
            raise ConfigError(problems, "overrides")
        config = cfg.from_dict(raw)
    return cfg.resolved(config), "run"


def resume_config(
    run_dir: Path, config: cfg.Config | str | Path, overrides: Mapping[str, Any] | Sequence[str]
) -> cfg.Config:
    """The run's own config.yaml, after checking the run can be resumed and that ``config``
    and ``overrides`` do not ask for anything else."""
    own = runs.check_resumable(run_dir)
    conf = cfg.load_config(own)
    if isinstance(config, cfg.Config):
        same = config == conf
    else:
        same = Path(config).resolve() == own.resolve()
    if override_items(overrides) or not same:
        raise UsageError("--resume takes the run's own config.yaml; drop --config/--set")
    return conf


# ------------------------------------------------------------------------- windowner.train(...)


class _CallableModule(types.ModuleType):
    """``windowner.train`` names both this module and ``train()``: importing the module binds
    the module as the package's attribute, so calling the module calls ``train()``."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

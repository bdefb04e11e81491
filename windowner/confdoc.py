"""What every config key means: the one place its explanation lives.

``HELP`` holds one line per key (dotted path); ``rows`` joins it with a config's values, the
defaults and the allowed choices/ranges of windowner.config; ``windowner config show`` prints
the rows (text, ``--json`` or ``--markdown``) and the README's "Config reference" section is
``markdown()`` verbatim (tests/test_confdoc.py keeps the two in sync).

Where to change what: a new config key needs a line here (the test lists keys without one);
regenerate the README section with ``windowner config show --markdown``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from windowner import config as cfg

HELP: dict[str, str] = {
    "seed": "Seed of the one random generator (initialisation, shuffling, dropout, negatives).",
    "out_dir": "Where a run directory (named after the config and the time) is made without --out.",
    "data.train": "Training CoNLL file (token first, tag last; ${VAR} and ~ are expanded).",
    "data.dev": "Dev CoNLL file: scored every epoch, picks the best epoch (null: none).",
    "data.test": "Test CoNLL file: scored once, with the best model (null: none).",
    "data.scheme": "Tag scheme of the files; auto detects IOB1/IOB2/IOBES and logs it "
    "(training always uses IOB2).",
    "features.window": "Words per window: the center word and (window-1)/2 on each side.",
    "features.lowercase": "Lowercase words before looking them up in the vocabulary.",
    "features.digits_to_zero": "Replace every digit by 0 before the vocabulary lookup.",
    "features.min_count": "Training words seen fewer times than this become the unknown word.",
    "features.caps_dim": "Size of the capitalisation-feature vector per word (0: no feature).",
    "features.affix_dim": "Size of the prefix/suffix vectors, one table for all (0: off).",
    "features.affix_min": "Shortest prefix/suffix, in characters.",
    "features.affix_max": "Longest prefix/suffix, in characters.",
    "features.shape_dim": "Size of the word-shape vector (Xxx, XX, dd-dd; 0: off).",
    "features.feature_min_count": "Affixes and shapes seen fewer times become unknown.",
    "features.doccase_dim": (
        "Size of the vector of how the word is written elsewhere in its document (0: off)."
    ),
    "features.docseq_dim": (
        "Size of the vector of 'the word is in a capitalised run elsewhere in its document'."
    ),
    "features.gazetteer_dim": (
        "Size of the vector of the word's name-list match (B-/I- LOC, PER, ORG, MISC; needs "
        "the gazetteer extra; 0: off)."
    ),
    "embeddings.dim": "Size of a word vector (must match pretrained vectors).",
    "embeddings.init": "Word vectors to start from: random, glove-6b-50d or a file path.",
    "embeddings.scale": "Random word vectors are drawn uniform in [-scale, scale].",
    "embeddings.train": "Update the word vectors during training (false: keep them fixed).",
    "embeddings.preprocess": "Transform the initial word vectors: none, mean (centre), "
    "standardize or whiten.",
    "embeddings.keep_pretrained": "Also keep this many most frequent pretrained words absent "
    "from training (frozen, for prediction).",
    "model.hidden": "Hidden units of the window network.",
    "model.activation": "Hidden-layer nonlinearity.",
    "model.leaky_slope": "Slope for negative inputs of the leaky_relu activation.",
    "model.initializer": "How the weight matrices W and U are initialised.",
    "model.init_scale": "Scale used by the initializers that take one (uniform/normal).",
    "model.keep_prob": "Dropout on the hidden layer, as the probability to KEEP a unit "
    "(1.0: no dropout; 0.5 drops half). Not a dropout rate.",
    "model.input_keep_prob": "Dropout on the input window vector, as the probability to KEEP "
    "an input (1.0: none). Not a dropout rate.",
    "model.objective": "Loss: multiclass (max-margin over tags), softmax (cross-entropy), "
    "ranking (true window vs corrupted windows, untyped spans), crf (sentence-level "
    "likelihood with learned tag transitions) or structured (sentence-level hinge).",
    "model.margin": "Margin of the max-margin losses (multiclass, ranking, structured).",
    "model.l2": "L2 penalty strength on the weight matrices.",
    "model.l2_embeddings": "Apply the L2 penalty to the word vectors too.",
    "model.decode": "viterbi (valid IOB2 sequences only) or argmax (best tag per token).",
    "model.dtype": "Floating-point type of the parameters and computations.",
    "negatives.strategy": "How a corrupted window is made: center (replace the center word), "
    "non_entity (a real window centred on an O token) or mixed (either, half each).",
    "negatives.k": "Corrupted windows drawn per true window (ranking needs >= 1; 0: none).",
    "negatives.power": "Replacement words are drawn with probability proportional to "
    "unigram count ^ power (0: uniform, 1: by frequency).",
    "optimizer.name": "Update rule.",
    "optimizer.lr": "Base learning rate; the schedule turns it into lr(t).",
    "optimizer.momentum": "Momentum μ (momentum and nesterov).",
    "optimizer.beta1": "Adam's decay rate of the mean of the gradients.",
    "optimizer.beta2": "Adam's decay rate of the mean of the squared gradients.",
    "optimizer.decay": "RMSProp's decay rate ρ of the mean of the squared gradients.",
    "optimizer.eps": "Small constant added to the denominator (adagrad, rmsprop, adam).",
    "optimizer.fan_in_scaling": "Divide each weight matrix's learning rate by sqrt(fan-in) "
    "(Collobert et al.).",
    "schedule.name": "Learning-rate schedule: constant, step (lr * factor^floor(t/every)), "
    "exponential (lr * e^(-k t)) or inverse (lr * tau / max(t, tau)).",
    "schedule.factor": "step schedule: multiply the rate by this every `every` units.",
    "schedule.every": "step schedule: units of t between two reductions.",
    "schedule.k": "exponential schedule: decay constant.",
    "schedule.tau": "inverse schedule: t at which the rate starts to fall.",
    "schedule.unit": "What t counts: epochs (fractional) or steps.",
    "train.epochs": "Passes over the training data.",
    "train.batch_size": "Windows per gradient step (whole sentences for crf and structured).",
    "train.patience": "Stop after this many epochs without a better dev F1 (0: never).",
    "train.shuffle": "Shuffle the training windows at the start of each epoch.",
    "train.threads": "BLAS threads for the matrix products: auto (one thread for small products "
    "or a busy machine, else the free cores; re-measured while training; with small products "
    "and two free cores, W's, b's and U's update in a second process) or a number.",
}


@dataclass(frozen=True)
class KeyRow:
    """One config key: its value in a config, its default, what values it takes, its meaning."""

    key: str
    value: Any
    default: Any
    allowed: str
    help: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def allowed(key: str) -> str:
    """The choices or range of a key, from windowner.config's checks ("" when free)."""
    if key in cfg.CHOICES:
        return "one of: " + ", ".join(cfg.CHOICES[key])
    if key in cfg.RANGES:
        return cfg.RANGES[key][1]
    return ""


def rows(config: cfg.Config | None = None) -> list[KeyRow]:
    """Every key of ``config`` (default: the defaults), in file order; KeyError names a key
    that has no line in ``HELP``."""
    values = cfg.flatten((config or cfg.Config()).to_dict())
    defaults = cfg.flatten(cfg.Config().to_dict())
    missing = sorted(set(values) - set(HELP))
    if missing:
        raise KeyError(f"config keys without a meaning in windowner/confdoc.py: {missing}")
    return [KeyRow(k, v, defaults[k], allowed(k), HELP[k]) for k, v in values.items()]


def shown(value: Any) -> str:
    """A value as it is written in YAML (``null``, ``true``, ``0.001``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def markdown() -> str:
    """The README's config reference: one table row per key (default, values, meaning)."""
    lines = ["| key | default | values | meaning |", "|---|---|---|---|"]
    for row in rows():
        cells = (f"`{row.key}`", f"`{shown(row.default)}`", row.allowed, row.help)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def text(config: cfg.Config) -> str:
    """Plain text: ``key = value`` (and ``(default D)`` when it differs), then its meaning."""
    lines = []
    for row in rows(config):
        changed = "" if row.value == row.default else f"   (default {shown(row.default)})"
        lines.append(f"{row.key} = {shown(row.value)}{changed}")
        lines.append(f"    {row.help}" + (f" [{row.allowed}]" if row.allowed else ""))
    return "\n".join(lines) + "\n"

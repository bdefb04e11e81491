"""Peak-memory probe for the "training streams batches" property (run in its own process).

    python tests/rss_probe.py synth OUT.conll SENTENCES [COPIES]
        write a synthetic CoNLL corpus (Zipfian words, PER/LOC/ORG/MISC spans), COPIES times
    python tests/rss_probe.py train TRAIN.conll DEV.conll RUN_DIR STEPS
        train on TRAIN for STEPS batches (the real loop, then the end-of-epoch work: dev
        evaluation, model.npz, last.npz, metrics) and print one JSON object: peak RSS in bytes,
        the bytes of the training index arrays, and the number of training windows

The test compares a 1x and a 10x run: the peak may grow by the index arrays, not by windows.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import numpy as np

TYPES = ("PER", "LOC", "ORG", "MISC")


def synthesize(path: Path, n_sentences: int, copies: int = 1, seed: int = 0) -> int:
    """A deterministic corpus like CoNLL-2003 in size (14k sentences ≈ 200k tokens at 1x);
    returns the token count of one copy."""
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(20000)]
    names = [f"Name{i}" for i in range(3000)]
    zipf = 1.0 / np.arange(1, len(vocab) + 1)
    zipf /= zipf.sum()
    lines: list[str] = []
    n_tokens = 0
    for _ in range(n_sentences):
        length = int(rng.integers(4, 26))
        words = rng.choice(len(vocab), size=length, p=zipf)
        i = 0
        while i < length:
            if rng.random() < 0.12:
                kind = TYPES[int(rng.integers(len(TYPES)))]
                span = int(min(rng.integers(1, 4), length - i))
                for j in range(span):
                    lines.append(f"{names[int(rng.integers(len(names)))]} {'BI'[j > 0]}-{kind}")
                i += span
            else:
                lines.append(f"{vocab[words[i]]} O")
                i += 1
        lines.append("")
        n_tokens += length
    text = "\n".join(lines) + "\n"
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(copies):
            fh.write(text)
    return n_tokens


def train(train_path: str, dev_path: str, run_dir: str, steps: int) -> dict:
    from windowner import config as cfg
    from windowner.train import SilentReporter, Trainer

    config = cfg.load_config(
        None,
        [
            f"data.train={train_path}",
            f"data.dev={dev_path}",
            "data.test=null",
            "train.epochs=1",
            "model.hidden=100",
            "embeddings.dim=50",
            "train.batch_size=64",
        ],
    )
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(config, out, SilentReporter())
    trainer.n_batches = min(steps, trainer.n_batches)  # the remaining batches look the same
    trainer.run()
    enc = trainer.data.train_enc
    index_bytes = sum(
        a.nbytes
        for a in (enc.words, enc.caps, enc.centers, enc.tags, trainer.train_idx, trainer.perm)
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"peak_rss": peak, "index_bytes": index_bytes, "windows": int(enc.n_tokens)}


def main(argv: list[str]) -> None:
    if argv[:1] == ["synth"]:
        copies = int(argv[3]) if len(argv) > 3 else 1
        print(synthesize(Path(argv[1]), int(argv[2]), copies))
    elif argv[:1] == ["train"]:
        print(json.dumps(train(argv[1], argv[2], argv[3], int(argv[4]))))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

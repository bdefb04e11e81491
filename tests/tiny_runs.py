"""Small training runs for the reliability and resume tests (a few hundred windows, seconds).

Also a script: ``python tests/tiny_runs.py kill9 N`` kills a real ``windowner train`` N times at
random moments and checks what each kill left on disk (see ``kill_at_random``).
"""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]

CONFIG = {
    "seed": 3,
    "features": {"window": 5, "caps_dim": 3},
    "embeddings": {"dim": 8},
    # dropout and mixed corrupted windows make every step draw from the RNG
    "model": {"hidden": 12, "keep_prob": 0.8, "objective": "multiclass"},
    "negatives": {"strategy": "mixed", "k": 1},
    "optimizer": {"name": "adam", "lr": 0.01},
    "schedule": {"name": "inverse", "tau": 10.0, "unit": "steps"},
    "train": {"epochs": 4, "batch_size": 16},
}


def subset(src: Path, dst: Path, n: int) -> Path:
    """The first ``n`` sentences of a CoNLL file."""
    blocks = src.read_text(encoding="utf-8").split("\n\n")
    dst.write_text("\n\n".join(blocks[:n]).strip("\n") + "\n", encoding="utf-8")
    return dst


def write_config(directory: Path, n_train: int = 60, n_dev: int = 20, **changes) -> Path:
    """A tiny config (data subsets written beside it, absolute paths) as ``config.yaml``."""
    directory.mkdir(parents=True, exist_ok=True)
    config = json.loads(json.dumps(CONFIG))
    config["data"] = {
        "train": str(subset(ROOT / "data/train.conll", directory / "train.conll", n_train)),
        "dev": str(subset(ROOT / "data/dev.conll", directory / "dev.conll", n_dev)),
        "test": str(subset(ROOT / "data/test.conll", directory / "test.conll", n_dev)),
    }
    for key, value in changes.items():
        section, _, name = key.partition("__")
        config.setdefault(section, {})[name] = value
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def train_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "windowner", "train", *map(str, args)]


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "WINDOWNER_DEBUG"}
    return subprocess.Popen(
        args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 120) -> list[str]:
    """Read stderr until a line contains ``needle``; the lines read so far."""
    lines = []
    deadline = time.monotonic() + timeout
    for line in proc.stderr:
        lines.append(line)
        if needle in line:
            return lines
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError(f"never saw {needle!r}; stderr so far:\n{''.join(lines)}")


def check_run_files(run: Path) -> dict[str, object]:
    """Load every file a run directory holds; raise if any is partial. Returns what loaded."""
    from windowner import config as cfg
    from windowner.tagger import load_checkpoint

    found: dict[str, object] = {}
    if (run / "config.yaml").exists():
        found["config.yaml"] = cfg.load_config(run / "config.yaml")
    for name in ("model.npz", "last.npz"):
        if (run / name).exists():
            found[name] = load_checkpoint(run / name)[2]
    if (run / "metrics.jsonl").exists():
        text = (run / "metrics.jsonl").read_text(encoding="utf-8")
        assert text == "" or text.endswith("\n"), "metrics.jsonl ends in a partial line"
        records = [json.loads(line) for line in text.splitlines()]
        assert [r["epoch"] for r in records] == list(range(1, len(records) + 1))
        found["metrics.jsonl"] = records
    if (run / "summary.json").exists():
        found["summary.json"] = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    return found


def kill_at_random(workdir: Path, kills: int, seed: int | None = None) -> list[dict]:
    """Start a real ``windowner train`` and SIGKILL it at a random moment, ``kills`` times,
    each time in a fresh run directory; check what is left. One report per kill."""
    rng = random.Random(seed)
    config = write_config(workdir / "data", n_train=30, n_dev=10, train__epochs=5000)
    reports = []
    for i in range(kills):
        run = workdir / f"run{i}"
        proc = start(train_command("--config", config, "--out", run), workdir)
        wait_for_line(proc, "run directory:")
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # never block on a pipe
        delay = rng.uniform(0.0, 1.5)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        found = check_run_files(run)
        temporaries = sorted(p.name for p in run.glob(".*.tmp"))
        reports.append(
            {
                "delay": round(delay, 3),
                "files": sorted(found),
                "epochs": len(found.get("metrics.jsonl", [])),
                "temporaries": temporaries,
            }
        )
    return reports


def resume_command(stderr: str) -> list[str]:
    """The command a stopped run printed after "Resume with: "."""
    line = next(ln for ln in stderr.splitlines() if "Resume with: " in ln)
    return shlex.split(line.split("Resume with: ", 1)[1])


def same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["kill9"]:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            for report in kill_at_random(Path(tmp), int(sys.argv[2])):
                print(json.dumps(report))
    else:
        sys.exit(__doc__)

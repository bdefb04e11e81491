"""``last.npz``: saving a training run's full state after every epoch (and on a signal) and
restoring it, so a resumed run continues bit for bit.

What is saved: the parameters (through ``Tagger.save``), the optimizer state (``opt/*``
arrays, without the frozen pretrained rows' all-zero state), the epoch's permutation
(``loop/perm``), the loop position (``LoopState``), the RNG state and the metrics so far.

Where to change what: a new piece of loop state goes into ``LoopState`` (train.py) and is
saved with it; anything else is added in ``save_checkpoint`` and read back in
``restore_checkpoint``, which must refuse a checkpoint that does not fit the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from windowner.checkpoint import file_sha256, load_npz, remove_stale_temporaries
from windowner.config import flatten
from windowner.errors import ModelFileError, UsageError
from windowner.tagger import load_checkpoint

if TYPE_CHECKING:
    from windowner.config import Config
    from windowner.train import Trainer

# config.yaml edits a resume accepts: training longer or with more patience
RESUMABLE_CHANGES = frozenset({"train.epochs", "train.patience"})
FROZEN_STATE = "opt/E_word."  # optimizer-state arrays of the word table


def save_checkpoint(trainer: Trainer) -> None:
    """Write ``last.npz`` in the trainer's run directory (atomically)."""
    arrays = trainer.optimizer.state_arrays()
    n = trainer.tagger.frozen_rows
    for key in [k for k in arrays if n and k.startswith(FROZEN_STATE)]:
        arrays[key] = arrays[key][:-n]  # frozen rows have no optimizer state (all zero)
    arrays["loop/perm"] = trainer.perm
    meta = {
        "loop": trainer.state.to_dict(),
        "rng": trainer.rng.bit_generator.state,
        "metrics": trainer.metrics,
        "data_sha256": trainer.data_sha256,
        "model_sha256": trainer.model_sha256,
        "run": trainer.run_token,
    }
    trainer.tagger.save(trainer.run_dir / "last.npz", meta, arrays)


def restore_checkpoint(trainer: Trainer) -> None:
    """Load ``last.npz`` into a freshly built trainer of the same config and data; a
    ModelFileError when it does not fit (other data, other architecture, damaged state)."""
    from windowner.train import LoopState

    path = trainer.run_dir / "last.npz"
    stale = remove_stale_temporaries(trainer.run_dir)
    if stale:
        trainer.reporter.log(f"removed {len(stale)} partial file(s) left by an interrupted write")
    saved, arrays, meta = load_checkpoint(path)
    check_same_world(trainer, path, saved.config, meta)
    data = trainer.data
    if saved.words.items != data.words.items or saved.tags != data.tags.items:
        raise ModelFileError(
            f"{path}: the training data changed since this run started "
            f"({trainer.config.data.train}); resume needs the same data"
        )
    if saved.model.spec != trainer.tagger.model.spec:
        raise ModelFileError(f"{path}: the checkpoint does not match the run's config.yaml")
    try:
        perm = arrays["loop/perm"]
        if perm.shape != (len(trainer.train_idx),) or perm.dtype.kind not in "iu":
            raise ValueError("loop/perm does not fit the training data")
        trainer.optimizer.load_state_arrays(padded_state(arrays, trainer.tagger.frozen_rows))
        trainer.rng.bit_generator.state = meta["rng"]
        state = LoopState(**meta["loop"])
        metrics = list(meta["metrics"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a usable training checkpoint ({exc})") from None
    trainer.tagger.model.params = saved.model.params
    trainer.tagger.threshold = saved.threshold
    trainer.perm, trainer.state, trainer.metrics = perm, state, metrics
    trainer.model_sha256 = meta.get("model_sha256")
    trainer.run_token = str(meta.get("run", trainer.run_token))


# ----------------------------------------------------------------------------- the world


def data_hashes(config: Config) -> dict[str, str | None]:
    """``{"train": sha256, "dev": …, "test": …}`` of the configured data files."""
    d = config.data
    return {
        name: file_sha256(p)
        for name, p in (("train", d.train), ("dev", d.dev), ("test", d.test))
        if p
    }


def check_same_world(trainer: Trainer, path: Path, config: dict, meta: dict[str, Any]) -> None:
    """Refuse to resume when the run's config.yaml, training data or best model changed since
    ``last.npz`` was written (UsageError/ModelFileError, exit 2); a changed dev or test file
    is only a warning. Data paths may change (their contents may not). Checkpoints written
    before these checks skip them."""
    # data paths may move (the hashes below say whether the contents are the same)
    current = {k: v for k, v in trainer.config.to_dict().items() if k != "data"}
    changes = config_changes({k: v for k, v in config.items() if k != "data"}, current)
    longer = [c for c in changes if c.split(":")[0] in RESUMABLE_CHANGES]
    changed = [c for c in changes if c not in longer]
    if longer:
        trainer.reporter.log(f"note: resuming with {'; '.join(longer)} (edited in config.yaml)")
    if config and changed:
        raise UsageError(
            f"{trainer.run_dir / 'config.yaml'} was edited after the run started ("
            + "; ".join(changed[:5])
            + "); resuming needs the run's own settings: undo the edit, or start a new run "
            "with --config"
        )
    saved = meta.get("data_sha256") or {}
    for split, sha in trainer.data_sha256.items():
        if saved.get(split) is None or sha is None or saved[split] == sha:
            continue
        where = getattr(trainer.config.data, split)
        if split == "train":
            raise ModelFileError(
                f"{path}: the training data changed since this run started ({where}: its "
                "SHA-256 differs); resume needs the same data, or start a new run"
            )
        trainer.reporter.log(
            f"warning: {where}: the {split} set changed since this run started; its scores "
            "from now on are not comparable with the earlier epochs'"
        )
    check_best_model(trainer.run_dir / "model.npz", meta)


def check_best_model(model: Path, meta: dict[str, Any]) -> None:
    """The run's best ``model.npz`` must be the file this run wrote (by SHA-256), or a later
    best of this run whose ``last.npz`` was not written yet (same run token, later epoch:
    the resumed run redoes that epoch and writes it again)."""
    expected = meta.get("model_sha256")
    if expected is None:
        return
    best = meta.get("loop", {}).get("best_epoch")
    if not model.exists():
        raise ModelFileError(
            f"{model} (the best model, epoch {best}) is missing; resuming would lose it — "
            "put it back, or start a new run"
        )
    if file_sha256(model) != expected and not later_best_of_this_run(model, meta):
        raise ModelFileError(
            f"{model} is not this run's best model (epoch {best}): the file was replaced or "
            "changed; put the run's own file back, or start a new run"
        )


def later_best_of_this_run(model: Path, meta: dict[str, Any]) -> bool:
    """Whether ``model`` was written by this run after its ``last.npz``: a later best (a stop
    between the two writes at the end of an epoch), or the same best with the temperature
    that the end of training fits on dev (``calibrate.store_temperature``)."""
    try:
        _, model_meta = load_npz(model)
    except ModelFileError:
        return False
    epoch = model_meta.get("epoch")
    return (
        meta.get("run") is not None
        and model_meta.get("run") == meta.get("run")
        and isinstance(epoch, int)
        and epoch >= int(meta.get("loop", {}).get("best_epoch", 0))
    )


def config_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """``key: old → new`` for every leaf that differs between two config dicts."""
    old, new = flatten(before), flatten(after)
    shown = {key: (json.dumps(old.get(key)), json.dumps(new.get(key))) for key in old | new}
    return [f"{key}: {a} → {b}" for key, (a, b) in sorted(shown.items()) if a != b]


def padded_state(arrays: dict[str, np.ndarray], n_frozen: int) -> dict[str, np.ndarray]:
    """Optimizer state with the frozen rows' zeros put back (see ``save_checkpoint``)."""
    out = dict(arrays)
    for key in [k for k in arrays if n_frozen and k.startswith(FROZEN_STATE)]:
        value = arrays[key]
        out[key] = np.concatenate([value, np.zeros((n_frozen, *value.shape[1:]), value.dtype)])
    return out

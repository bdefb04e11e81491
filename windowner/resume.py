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

from typing import TYPE_CHECKING

import numpy as np

from windowner.checkpoint import remove_stale_temporaries
from windowner.errors import ModelFileError
from windowner.tagger import load_checkpoint

if TYPE_CHECKING:
    from windowner.train import Trainer

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


def padded_state(arrays: dict[str, np.ndarray], n_frozen: int) -> dict[str, np.ndarray]:
    """Optimizer state with the frozen rows' zeros put back (see ``save_checkpoint``)."""
    out = dict(arrays)
    for key in [k for k in arrays if n_frozen and k.startswith(FROZEN_STATE)]:
        value = arrays[key]
        out[key] = np.concatenate([value, np.zeros((n_frozen, *value.shape[1:]), value.dtype)])
    return out

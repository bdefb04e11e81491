"""Sharing a model: its provenance (data files with sha256, date, windowner version) and the
model card ``MODEL.md`` written into every run directory.

``provenance(config, sha256)`` is computed once when training starts (from the hashes the trainer
takes of its data files) and stored in ``model.npz``'s
metadata under ``"provenance"``; ``write_card`` writes ``MODEL.md`` from it, the config and
the training summary when training ends.

Where to change what: what the card says is ``card_text``; which files are hashed is
``data_files``.
"""

from __future__ import annotations

import datetime as dt
import shlex
from pathlib import Path
from typing import Any

from windowner import __version__
from windowner.checkpoint import atomic_write_text

CARD_NAME = "MODEL.md"


def data_files(config: Any, sha256: dict[str, str | None]) -> list[dict[str, Any]]:
    """The data files of a (resolved) config: split, path as given, file name, sha256 (as
    hashed when training started: ``sha256`` by split), bytes."""
    files = []
    for split in ("train", "dev", "test"):
        path = getattr(config.data, split)
        if not path:
            continue
        p = Path(path)
        size = p.stat().st_size if p.is_file() else None
        files.append(
            {
                "split": split,
                "path": str(path),
                "name": p.name,
                "sha256": sha256.get(split),
                "bytes": size,
            }
        )
    return files


def provenance(config: Any, sha256: dict[str, str | None]) -> dict[str, Any]:
    """What model.npz records about where it came from: data files (with their ``sha256`` by
    split), the UTC time training started (``created``) and the windowner version."""
    return {
        "provenance": {
            "data": data_files(config, sha256),
            "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "windowner_version": __version__,
        }
    }


def write_card(run_dir: Path, summary: dict[str, Any], config: Any, meta: dict[str, Any]) -> Path:
    """Write ``MODEL.md`` into the run directory (atomically); returns its path."""
    path = Path(run_dir) / CARD_NAME
    atomic_write_text(path, card_text(Path(run_dir), summary, config, meta["provenance"]))
    return path


def card_text(run_dir: Path, summary: dict[str, Any], config: Any, prov: dict[str, Any]) -> str:
    """The model card as Markdown."""
    from windowner.config import dump_yaml

    run = shlex.quote(str(run_dir))
    parts = [
        *_header(run_dir, summary, config, prov),
        "## Data\n",
        "| split | file | sha256 | bytes |",
        "|---|---|---|---|",
        *(
            f"| {f['split']} | `{f['path']}` | `{f['sha256'] or 'not a regular file'}` | "
            f"{f['bytes'] if f['bytes'] is not None else '?'} |"
            for f in prov["data"]
        ),
        "",
        "## Scores\n",
        "Entity-level precision, recall and F1 (conlleval semantics) of the best dev epoch's "
        "model.\n",
        *_scores(summary),
        "## Use\n",
        "```bash",
        f'windowner predict --model {run} "Museums in Paris are amazing"',
        f"windowner eval --model {run} --data FILE.conll",
        "```\n",
        "## Reproduce\n",
        "With the data files above (check them with `sha256sum`), from the directory the run "
        "was started in:\n",
        "```bash",
        f"windowner train --config {shlex.quote(str(run_dir / 'config.yaml'))}",
        "```\n",
        "## Config\n",
        "```yaml",
        dump_yaml(config).rstrip("\n"),
        "```",
    ]
    return "\n".join(parts) + "\n"


def _header(run_dir: Path, summary: dict[str, Any], config: Any, prov: dict[str, Any]) -> list:
    """The title and what the model is, in a few lines."""
    m, e = config.model, config.embeddings
    return [
        f"# Model card: {run_dir.name}\n",
        "A window-based NER model (Collobert & Weston) trained with windowner "
        f"{prov['windowner_version']}, started {prov['created']}.\n",
        f"- objective `{m.objective}`, window {config.features.window}, {m.hidden} hidden "
        f"units, word vectors `{e.init}` ({e.dim}-dim), decoding `{m.decode}`",
        f"- tags: {', '.join(summary.get('tags', []))}",
        f"- best epoch {summary['best_epoch']} of {summary['epochs']} ({summary['steps']} steps"
        f"{', stopped early' if summary.get('stopped_early') else ''}), "
        f"vocabulary {summary['vocab_size']} words\n",
    ]


def _scores(summary: dict[str, Any]) -> list[str]:
    """One table per evaluated split: each type, then overall."""
    lines: list[str] = []
    for split in ("dev", "test"):
        result = summary.get(split)
        if not result:
            continue
        lines += [f"### {split}\n", "| type | precision | recall | F1 | gold | predicted |"]
        lines.append("|---|---|---|---|---|---|")
        rows = [*result["per_type"].items(), ("**overall**", result)]
        lines += [
            f"| {kind} | {s['precision']:.2f} | {s['recall']:.2f} | {s['f1']:.2f} | "
            f"{s['n_gold']} | {s['n_pred']} |"
            for kind, s in rows
        ]
        lines.append("")
    return lines or ["No dev or test set was given, so there are no scores.\n"]

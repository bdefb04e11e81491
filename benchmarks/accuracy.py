"""Accuracy on CoNLL-2003: train each shipped CoNLL config, select on dev, print a table.

    python benchmarks/accuracy.py                       # the seven configs, seed 0
    python benchmarks/accuracy.py --seeds 0 1 2         # spread over seeds (make accuracy)
    python benchmarks/accuracy.py --configs configs/conll03.yaml --json
    python benchmarks/accuracy.py --ablation configs/conll03-sll.yaml --seeds 0 1 2
    python benchmarks/accuracy.py --configs configs/conll03.yaml \
        --seeds 0 1 2 3 4 5 6 7 8 --ensemble-size 3       # make accuracy-ensemble

Data: ${CONLL03_DIR} or ../shared/data/conll2003 (train.txt, valid.txt), as in the configs.
For each run: dev precision/recall/F1 with conlleval semantics (Viterbi as configured, and argmax
for comparison; for crf/structured the argmax of the window scores without the learned
transitions), per-type F1, the best epoch, epochs run and training seconds. With several seeds,
also the ensemble of each config's seeds (windowner.ensemble: averaged scores, decoded once),
or with ``--ensemble-size K`` the ensembles of each K consecutive seeds (mean ± sd over them).
``--ablation CONFIG`` trains CONFIG as is and with each extra feature of ``ABLATIONS`` turned
on, and adds a table of what each feature adds (mean over the seeds, against the config as is).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from windowner import config as cfg  # noqa: E402
from windowner.corpus import read_conll  # noqa: E402
from windowner.decode import decode_sentences  # noqa: E402
from windowner.ensemble import Ensemble  # noqa: E402
from windowner.evaluate import evaluate_split  # noqa: E402
from windowner.metrics import evaluate  # noqa: E402
from windowner.nn.losses import SENTENCE_OBJECTIVES  # noqa: E402
from windowner.render import ConsoleReporter  # noqa: E402
from windowner.tagger import Tagger  # noqa: E402
from windowner.train import Trainer  # noqa: E402

CONFIGS = [
    "configs/conll03-multiclass.yaml",
    "configs/conll03-softmax.yaml",
    "configs/conll03-ranking.yaml",
    "configs/conll03-sll.yaml",
    "configs/conll03-structured.yaml",
    "configs/conll03-doc.yaml",
    "configs/conll03.yaml",
]
# variant name → overrides on top of the ablated config (``--ablation``)
ABLATIONS = {
    "as is": [],
    "+ shape 5": ["features.shape_dim=5"],
    "+ doccase 5": ["features.doccase_dim=5"],
    "+ docseq 5": ["features.docseq_dim=5"],
    "+ doccase 5 + docseq 5": ["features.doccase_dim=5", "features.docseq_dim=5"],
    "+ shape 5 + doccase 5 + docseq 5": [
        "features.shape_dim=5",
        "features.doccase_dim=5",
        "features.docseq_dim=5",
    ],
    "+ shape 5 + doccase 5 + docseq 5 + affix 5 (min count 100)": [
        "features.shape_dim=5",
        "features.doccase_dim=5",
        "features.docseq_dim=5",
        "features.affix_dim=5",
        "features.feature_min_count=100",
    ],
}


def run_one(
    config_path: str,
    seed: int,
    out_root: Path,
    overrides: list[str],
    console: Console,
    variant: str = "",
) -> dict:
    """Train one config with one seed (``variant``: a name of ``ABLATIONS``, whose overrides
    come after ``overrides``); evaluate its best model on dev (Viterbi and argmax)."""
    extra = ABLATIONS[variant] if variant else []
    conf = cfg.resolved(cfg.load_config(ROOT / config_path, [f"seed={seed}", *overrides, *extra]))
    tag = "".join(c if c.isalnum() else "-" for c in variant).strip("-")
    run_dir = out_root / f"{Path(config_path).stem}{'-' + tag if tag else ''}-seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    trainer = Trainer(conf, run_dir, ConsoleReporter(console))
    summary = trainer.run()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started  # this process's CPU seconds (all its threads)
    best = Tagger.load(run_dir / "model.npz")
    data = trainer.data
    result = {
        "config": f"{config_path} {variant}".strip(),
        "seed": seed,
        "model": str(run_dir / "model.npz"),
        "dev_path": conf.data.dev,
        "scheme": conf.data.scheme,
        "objective": conf.model.objective,
        "best_epoch": summary["best_epoch"],
        "epochs": summary["epochs"],
        "train_seconds": summary["seconds"],
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "dev": summary["dev"],
    }
    if conf.model.objective in SENTENCE_OBJECTIVES:
        # argmax of the window scores alone: what the learned transitions add
        scores = best.scores(data.dev_enc)
        pred = decode_sentences(scores, data.dev_enc.sent_bounds, best.tags, "argmax")
        result["dev_argmax"] = evaluate([list(s.tags) for s in data.dev], pred).to_dict()
    elif conf.model.objective != "ranking":
        best.decode = "argmax"
        result["dev_argmax"] = evaluate_split(best, data.dev, data.dev_enc)
    return result


def ensembles(results: list[dict], size: int = 0) -> list[dict]:
    """Per config with several seeds (not ranking): the dev scores of the ensemble of its
    seeds — of all of them, or (``size`` k) of each run of k consecutive seeds (seeds 0–8
    with k = 3: three disjoint ensembles, so that an ensemble's F1 has a spread too)."""
    out = []
    for config in dict.fromkeys(r["config"] for r in results):
        runs = [r for r in results if r["config"] == config]
        if len(runs) < 2 or runs[0]["objective"] == "ranking":
            continue
        k = size or len(runs)
        sents = read_conll(runs[0]["dev_path"], runs[0]["scheme"])
        for group in (runs[i : i + k] for i in range(0, len(runs) - k + 1, k)):
            ensemble = Ensemble.load([r["model"] for r in group])
            dev = evaluate_split(ensemble, sents, ensemble.encode(sents))
            seeds = "+".join(str(r["seed"]) for r in group)
            epochs = {"best_epoch": "—", "epochs": "—", "train_seconds": 0.0, "cpu_seconds": 0.0}
            out.append({"config": config, "seed": f"ensemble {seeds}", **epochs, "dev": dev})
    return out


def table(results: list[dict]) -> Table:
    t = Table(title="CoNLL-2003 dev (conlleval entity scores)", title_justify="left")
    for col in (
        "config",
        "seed",
        "P",
        "R",
        "F1",
        "F1 argmax",
        "PER",
        "LOC",
        "ORG",
        "MISC",
        "best/epochs",
        "train s",
        "CPU s",
    ):
        t.add_column(col, justify="left" if col == "config" else "right")
    for r in results:
        dev = r["dev"]
        per = {k: f"{v['f1']:.2f}" for k, v in dev["per_type"].items()}
        argmax = f"{r['dev_argmax']['f1']:.2f}" if "dev_argmax" in r else "—"
        t.add_row(
            Path(r["config"]).name,
            str(r["seed"]),
            f"{dev['precision']:.2f}",
            f"{dev['recall']:.2f}",
            f"{dev['f1']:.2f}",
            argmax,
            per.get("PER", "—"),
            per.get("LOC", "—"),
            per.get("ORG", "—"),
            per.get("MISC", per.get("ENT", "—")),
            f"{r['best_epoch']}/{r['epochs']}",
            f"{r['train_seconds']:.0f}" if r["train_seconds"] else "—",
            f"{r['cpu_seconds']:.0f}" if r["cpu_seconds"] else "—",
        )
    return t


def spread(results: list[dict]) -> list[str]:
    """Mean ± standard deviation of dev F1 per config over seeds."""
    lines = []
    singles = [r for r in results if isinstance(r["seed"], int)]
    for config in dict.fromkeys(r["config"] for r in singles):
        f1 = [r["dev"]["f1"] for r in singles if r["config"] == config]
        am = [r["dev_argmax"]["f1"] for r in singles if r["config"] == config and "dev_argmax" in r]
        line = f"{Path(config).name}: dev F1 {statistics.mean(f1):.2f}"
        if len(f1) > 1:
            line += f" ± {statistics.stdev(f1):.2f} (min {min(f1):.2f}, max {max(f1):.2f})"
        if am:
            line += f"; argmax {statistics.mean(am):.2f}"
        ens = [
            r["dev"]["f1"]
            for r in results
            if r["config"] == config and not isinstance(r["seed"], int)
        ]
        if len(ens) == 1:
            line += f"; ensemble of the seeds {ens[0]:.2f}"
        elif ens:
            line += f"; {len(ens)} disjoint ensembles {statistics.mean(ens):.2f}"
            line += f" ± {statistics.stdev(ens):.2f} (min {min(ens):.2f})"
        lines.append(line + f" over {len(f1)} seed(s)")
    return lines


def ablation_table(results: list[dict]) -> Table:
    """Per variant: dev F1 mean ± sd over its seeds, the change against "as is", the
    ensemble of its seeds and the per-type means."""
    t = Table(title="What each feature adds (dev F1, mean over seeds)", title_justify="left")
    for col in ("variant", "seeds", "F1", "Δ", "ensemble", "PER", "LOC", "ORG", "MISC"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    singles = [r for r in results if isinstance(r["seed"], int)]
    configs = list(dict.fromkeys(r["config"] for r in singles))
    means = {
        c: statistics.mean(r["dev"]["f1"] for r in singles if r["config"] == c) for c in configs
    }
    base = means[configs[0]]
    for config in configs:
        runs = [r["dev"] for r in singles if r["config"] == config]
        f1 = [d["f1"] for d in runs]
        sd = f" ± {statistics.stdev(f1):.2f}" if len(f1) > 1 else ""
        ens = [r for r in results if r["config"] == config and not isinstance(r["seed"], int)]
        per = {
            k: f"{statistics.mean(d['per_type'][k]['f1'] for d in runs):.2f}"
            for k in ("PER", "LOC", "ORG", "MISC")
            if all(k in d["per_type"] for d in runs)
        }
        t.add_row(
            config.split(" ", 1)[1] if " " in config else config,
            str(len(f1)),
            f"{means[config]:.2f}{sd}",
            f"{means[config] - base:+.2f}",
            f"{ens[0]['dev']['f1']:.2f}" if ens else "—",
            *(per.get(k, "—") for k in ("PER", "LOC", "ORG", "MISC")),
        )
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="extra config override for every run (key.path=value)",
    )
    parser.add_argument(
        "--ablation",
        metavar="CONFIG",
        help="train CONFIG as is and with each feature of ABLATIONS (instead of --configs)",
    )
    parser.add_argument(
        "--ensemble-size",
        type=int,
        default=0,
        metavar="K",
        help="ensembles of each K consecutive seeds (default: one of all the seeds)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "accuracy")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    console = Console(stderr=True, soft_wrap=True)
    jobs = [(c, "") for c in args.configs]
    if args.ablation:
        jobs = [(args.ablation, variant) for variant in ABLATIONS]
    results = [
        run_one(c, s, args.out, args.overrides, console, v) for c, v in jobs for s in args.seeds
    ]
    results += ensembles(results, args.ensemble_size)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    out = Console()
    out.print(table(results))
    if args.ablation:
        out.print(ablation_table(results))
    for line in spread(results):
        out.print(line, highlight=False)


if __name__ == "__main__":
    main()

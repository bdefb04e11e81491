"""Raw text → entities: speed, accuracy against gold tokens, and memory on a big file.

    python benchmarks/bench_text.py --model RUN [--dev FILE] [--repeat N] [--big-mb MB] [--json]

The CoNLL-2003 dev file (default ../shared/data/conll2003/valid.txt) is detokenised sentence by
sentence with sacremoses' MosesDetokenizer (as benchmarks/tokenizer_agreement.py does; a
benchmark-only dependency: ``pip install sacremoses``), the sentences of a document joined by
single spaces. Then, with the model of RUN:

    speed      tokens/s of ``ner.pipe(documents)`` — tokenisation, tagging, records with
               offsets — in this process (gold token count / wall and CPU seconds, best of N);
               plain, and ``_predict_gc`` with the garbage-collector settings of predict
    accuracy   entity F1 of the raw-text pipeline, entities matched by (document, start_char,
               end_char, label) against the gold entities' character spans; and the same
               model on the gold tokens (``ner.tag_tokens``); the difference is the loss.
               Four layouts of the text: ``spaces`` (every sentence of a document joined by
               one space: no layout left), ``lines`` (headlines, datelines, bylines and table
               rows — sentences without final punctuation — end their line, as in the Reuters
               originals), ``wrapped`` (``lines`` hard-wrapped at 72 columns) and
               ``paragraphs`` (such sentences end a paragraph: a blank line); speed and the
               big file use the last layout
    big file   with --big-mb: the documents repeated into a file of that size in /tmp
               (paragraphs), ``windowner predict --input F -f jsonl > /dev/null`` run under
               ``/usr/bin/time -v``: wall seconds, peak RSS, tokens/s; the file is deleted after
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tokenizer_agreement import align  # noqa: E402  (benchmarks/ is on sys.path)

DEFAULT_DEV = Path("../shared/data/conll2003/valid.txt")
Span = tuple[int, int]
SENTENCE_ENDS = {".", "!", "?", '"', "'"}
LAYOUTS = ("spaces", "lines", "wrapped", "paragraphs")
CharEntity = tuple[int, int, int, str]  # (document, start_char, end_char, label)


def read_gold(path: Path) -> list[list[tuple[list[str], list[str]]]]:
    """Documents → sentences → (tokens, IOB2 tags) from a CoNLL-2003 file."""
    docs: list[list[tuple[list[str], list[str]]]] = [[]]
    tokens: list[str] = []
    tags: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        fields = line.split()
        if fields and fields[0] != "-DOCSTART-":
            tokens.append(fields[0])
            tags.append(fields[-1])
            continue
        if tokens:
            docs[-1].append((tokens, tags))
            tokens, tags = [], []
        if fields and docs[-1]:
            docs.append([])
    return [d for d in docs if d]


def detokenise(docs: list, layout: str = "spaces") -> tuple[list[str], list[list[list[Span]]]]:
    """Each document's natural text and its gold token spans per sentence. ``spaces``: the
    sentences joined by single spaces; ``lines``: a sentence that does not end in
    ``. ! ? " '`` (a headline, a dateline, a table row) ends its line (one line break, as in
    the Reuters originals); ``wrapped``: ``lines`` hard-wrapped at ``WRAP`` columns;
    ``paragraphs``: such a sentence ends a paragraph (a blank line)."""
    from sacremoses import MosesDetokenizer

    detok = MosesDetokenizer(lang="en")
    texts, spans = [], []
    breaks = {"spaces": " ", "lines": "\n", "wrapped": "\n", "paragraphs": "\n\n"}[layout]
    for doc in docs:
        text, doc_spans, previous = "", [], ["."]
        for tokens, _ in doc:
            ends_line = previous[-1] not in SENTENCE_ENDS
            text += (breaks if ends_line else " ") if text else ""
            previous = tokens
            sent_text = detok.detokenize(tokens)
            doc_spans.append(align(tokens, sent_text, len(text)))
            text += sent_text
        texts.append(hard_wrap(text) if layout == "wrapped" else text)
        spans.append(doc_spans)
    return texts, spans


WRAP = 72


def hard_wrap(text: str, width: int = WRAP) -> str:
    """``text`` with spaces turned into line breaks so that no line is longer than ``width``
    (unless one word is): offsets stay the same."""
    out = []
    for line in text.split("\n"):
        chars, column, last_space = list(line), 0, -1
        for i, ch in enumerate(chars):
            if ch == " ":
                last_space = i
            column += 1
            if column > width and last_space >= 0 and i > last_space:
                chars[last_space] = "\n"
                column, last_space = i - last_space, -1
        out.append("".join(chars))
    return "\n".join(out)


def char_entities(index: int, spans: list[Span], tags: list[str]) -> set[CharEntity]:
    from windowner.metrics import get_entities

    return {(index, spans[s][0], spans[e - 1][1], label) for label, s, e in get_entities(tags)}


def f1(gold: set, pred: set) -> dict:
    correct = len(gold & pred)
    p = correct / len(pred) if pred else 0.0
    r = correct / len(gold) if gold else 0.0
    return {"precision": 100 * p, "recall": 100 * r, "f1": 200 * p * r / (p + r) if p + r else 0.0}


def accuracy(ner, docs: list, texts: list[str], spans: list) -> dict:
    """F1 of raw text vs gold tokens, both scored on character spans."""
    gold, on_tokens, on_text = set(), set(), set()
    for i, (doc, doc_spans) in enumerate(zip(docs, spans, strict=True)):
        predicted = ner.tag_tokens([tokens for tokens, _ in doc])
        for (_, tags), sent_spans, pred in zip(doc, doc_spans, predicted, strict=True):
            gold |= char_entities(i, sent_spans, tags)
            on_tokens |= char_entities(i, sent_spans, pred)
    for i, d in enumerate(ner.pipe(texts)):
        on_text |= {(i, e.start_char, e.end_char, e.label) for e in d.entities}
    tokens_f1, text_f1 = f1(gold, on_tokens), f1(gold, on_text)
    return {
        "gold_entities": len(gold),
        "gold_tokens": tokens_f1,
        "raw_text": text_f1,
        "f1_loss": tokens_f1["f1"] - text_f1["f1"],
    }


def speed(ner, texts: list[str], n_tokens: int, repeat: int) -> dict:
    """Best-of-``repeat`` tokens/s of pipe over the documents (wall and CPU time), plain and
    under ``tagging_gc`` as ``windowner predict`` runs (the collector then also skips this
    benchmark's own data, which a predict process does not hold)."""
    from windowner.api import tagging_gc

    result = {"tokens": n_tokens}
    for name, settings in (("", contextlib.nullcontext), ("_predict_gc", tagging_gc)):
        walls, cpus = [], []
        with settings():
            for _ in range(repeat):
                w, c = time.perf_counter(), time.process_time()
                n_entities = sum(len(d.entities) for d in ner.pipe(texts))
                walls.append(time.perf_counter() - w)
                cpus.append(time.process_time() - c)
        result["entities"] = n_entities
        result[f"tokens_per_s_wall{name}"] = n_tokens / min(walls)
        result[f"tokens_per_s_cpu{name}"] = n_tokens / min(cpus)
    return result


def big_file(model: str, texts: list[str], n_tokens: int, megabytes: float, jobs: int) -> dict:
    """predict -f jsonl over a file of ``megabytes`` MB under /usr/bin/time -v."""
    block = "\n\n".join(texts) + "\n\n"
    copies = max(1, int(megabytes * 1e6 / len(block.encode("utf-8"))))
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as fh:
        for _ in range(copies):
            fh.write(block)
        path = fh.name
    try:
        size = os.path.getsize(path)
        exe = str(Path(sys.executable).with_name("windowner"))
        cmd = ["/usr/bin/time", "-v", exe, "predict", "--model", model, "--input", path]
        cmd += ["-f", "jsonl", "--jobs", str(jobs)]
        with open(os.devnull, "w") as devnull:
            done = subprocess.run(cmd, stdout=devnull, stderr=subprocess.PIPE, text=True)
    finally:
        os.unlink(path)
    if done.returncode != 0:
        raise SystemExit(f"predict failed: {done.stderr[-2000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)[1])
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", done.stderr)[1]
    seconds = sum(float(x) * 60**i for i, x in enumerate(reversed(wall.split(":"))))
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): (\S+)", done.stderr)[1])
              for kind in ("User", "System"))  # fmt: skip
    return {
        "bytes": size,
        "tokens": n_tokens * copies,
        "jobs": jobs,
        "seconds": seconds,
        "peak_rss_mb": rss_kb / 1024,
        "cpu_seconds": cpu,
        "tokens_per_s": n_tokens * copies / seconds,
        "tokens_per_s_cpu": n_tokens * copies / cpu,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="run directory or model file")
    parser.add_argument("--dev", type=Path, default=DEFAULT_DEV)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--big-mb", type=float, default=0.0, help="also stream a file this big")
    parser.add_argument("--jobs", type=int, default=1, help="predict --jobs for the big file")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import windowner

    ner = windowner.load(args.model)
    docs = read_gold(args.dev)
    n_tokens = sum(len(tokens) for doc in docs for tokens, _ in doc)
    result = {"model": args.model, "documents": len(docs)}
    for layout in LAYOUTS:
        texts, spans = detokenise(docs, layout)
        result[f"accuracy_{layout}"] = accuracy(ner, docs, texts, spans)
    result["speed"] = speed(ner, texts, n_tokens, args.repeat)
    if args.big_mb:
        result["big_file"] = big_file(args.model, texts, n_tokens, args.big_mb, args.jobs)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

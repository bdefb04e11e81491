"""Tokenizer agreement with CoNLL-2003: detokenise the dev file, re-tokenise, compare spans.

    python benchmarks/tokenizer_agreement.py [DEV_FILE] [--json] [--hard]

DEV_FILE defaults to ../shared/data/conll2003/valid.txt (relative to the working directory).
Each sentence's gold tokens (first column) are detokenised into natural text with sacremoses'
MosesDetokenizer (``pip install sacremoses``; a benchmark-only dependency), the sentences of a
document are joined by single spaces, and every candidate re-tokenises each document:

    tokens %     gold tokens whose exact character span the candidate reproduces
    bound R/P    sentence boundaries: recall over gold boundaries, precision over predicted ones
    punct R      recall over the gold boundaries that follow . ! ? (datelines and headlines
                 without final punctuation cannot be found in space-joined text)
    tok/s        gold tokens per CPU second of this (single-threaded) process, segmentation
                 included, best of 3 runs: CPU time, as the machine may be shared

Candidates: windowner's ``default`` tokenizer (syntok + CoNLL post-processing), raw syntok,
spaCy's rule-based ``spacy.blank("en")`` + sentencizer, and the regex that windowner 0.1's
``predict.tokenize`` used (kept here verbatim as the baseline). A candidate whose package is
not installed is listed as skipped. ``--hard`` also prints each candidate's tokens for the
hand-written hard sentences; ``--stream N`` streams N hard-wrapped copies of the dev text from
a file through ``iter_sentences`` (tokens/s and peak RSS: memory must not grow with N).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DEV = Path("../shared/data/conll2003/valid.txt")
TARGET_TOKEN_AGREEMENT = 98.0
Span = tuple[int, int]
Candidate = Callable[[str], list[list[Span]]]

HARD_SENTENCES = [
    "Dr. Smith met Obama's advisers in St. Louis, Mo., on Friday.",
    "Mr. Obama visited A.C. Milan. The U.S.-based fund paid $1,200.50 on 29/11/2026.",
    "I don't think they'll sell 1996-08-30 shares; O'Brien can't.",
    "Ame\u0301lie loves Zu\u0308rich \U0001f468\u200d\U0001f469\u200d\U0001f467 \u200fok\u200f.",
    "Prices\u00a0rose 3.5% in the U.S.\nInvestors were told\nthe news late.\n\nNew paragraph.",
]


# ------------------------------------------------------------------------------ gold data


def read_documents(path: Path) -> list[list[list[str]]]:
    """Documents → sentences → gold tokens, from a CoNLL-2003 file."""
    docs: list[list[list[str]]] = [[]]
    sentence: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if fields and fields[0] != "-DOCSTART-":
                sentence.append(fields[0])
                continue
            if sentence:
                docs[-1].append(sentence)
                sentence = []
            if fields and docs[-1]:
                docs.append([])
    if sentence:
        docs[-1].append(sentence)
    return [doc for doc in docs if doc]


@dataclass
class GoldDocument:
    text: str
    tokens: list[Span]  # gold token spans in ``text``
    boundaries: list[int]  # end offset of every sentence
    punct_boundaries: list[int]  # the boundaries whose sentence ends in . ! ?


def detokenise(docs: list[list[list[str]]]) -> list[GoldDocument]:
    """Natural text for each document, with the gold spans found in it."""
    from sacremoses import MosesDetokenizer

    detok = MosesDetokenizer(lang="en")
    out = []
    for doc in docs:
        text, spans, bounds, punct = "", [], [], []
        for sentence in doc:
            text += " " if text else ""
            sent_text = detok.detokenize(sentence)
            spans += align(sentence, sent_text, len(text))
            text += sent_text
            bounds.append(len(text))
            if sentence[-1] in {".", "!", "?"}:
                punct.append(len(text))
        out.append(GoldDocument(text, spans, bounds, punct))
    return out


def align(tokens: list[str], text: str, offset: int) -> list[Span]:
    """Spans of ``tokens`` found left to right in ``text`` (only whitespace between them)."""
    spans, pos = [], 0
    for token in tokens:
        start = text.find(token, pos)
        if start < 0 or text[pos:start].strip():
            raise ValueError(f"cannot align {token!r} in {text!r}")
        pos = start + len(token)
        spans.append((offset + start, offset + pos))
    return spans


# ------------------------------------------------------------------------------ candidates


def windowner_default(text: str) -> list[list[Span]]:
    from windowner.tokenizer import tokenize

    return [[(t.start, t.end) for t in sentence] for sentence in tokenize(text)]


def syntok_raw(text: str) -> list[list[Span]]:
    from syntok import segmenter

    return [
        [(t.offset, t.offset + len(t.value)) for t in sentence]
        for paragraph in segmenter.analyze(text)
        for sentence in paragraph
    ]


_SPACY: list = []


def spacy_blank(text: str) -> list[list[Span]]:
    if not _SPACY:
        import spacy

        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")
        _SPACY.append(nlp)
    doc = _SPACY[0](text)
    return [[(t.idx, t.idx + len(t.text)) for t in sent if not t.is_space] for sent in doc.sents]


_LEGACY_TOKEN_RE = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]")


def legacy_regex(text: str) -> list[list[Span]]:
    """windowner 0.1 ``predict.tokenize``: regex tokens; a line break or ``. ! ?`` before an
    uppercase token ends a sentence."""
    sentences: list[list[Span]] = []
    for match in re.finditer(r"[^\n]+", text):
        tokens = list(_LEGACY_TOKEN_RE.finditer(match.group()))
        current: list[Span] = []
        for i, token in enumerate(tokens):
            current.append((match.start() + token.start(), match.start() + token.end()))
            following = tokens[i + 1].group() if i + 1 < len(tokens) else ""
            if token.group() in {".", "!", "?"} and following[:1].isupper():
                sentences.append(current)
                current = []
        if current:
            sentences.append(current)
    return sentences


CANDIDATES: dict[str, tuple[str, Candidate]] = {
    "windowner default": ("windowner.tokenizer", windowner_default),
    "syntok 1.4 raw": ("syntok", syntok_raw),
    "spaCy blank en": ("spacy", spacy_blank),
    "regex (0.1)": ("re", legacy_regex),
}


# ------------------------------------------------------------------------------ scoring


def score(candidate: Candidate, docs: list[GoldDocument], repeats: int = 3) -> dict:
    """Agreement and speed of one candidate over all documents."""
    best = float("inf")
    for _ in range(repeats):
        began = time.process_time()
        predicted = [candidate(doc.text) for doc in docs]
        best = min(best, time.process_time() - began)
    gold_tokens = hit = gold_b = hit_b = pred_b = gold_p = hit_p = 0
    for doc, sentences in zip(docs, predicted, strict=True):
        spans = {span for sentence in sentences for span in sentence}
        ends = {sentence[-1][1] for sentence in sentences[:-1] if sentence}
        gold_ends = set(doc.boundaries[:-1])
        punct_ends = set(doc.punct_boundaries) & gold_ends
        gold_tokens += len(doc.tokens)
        hit += sum(span in spans for span in doc.tokens)
        gold_b, hit_b, pred_b = (
            gold_b + len(gold_ends),
            hit_b + len(ends & gold_ends),
            pred_b + len(ends),
        )
        gold_p, hit_p = gold_p + len(punct_ends), hit_p + len(ends & punct_ends)
    return {
        "token_agreement": 100.0 * hit / gold_tokens,
        "boundary_recall": 100.0 * hit_b / max(gold_b, 1),
        "boundary_precision": 100.0 * hit_b / max(pred_b, 1),
        "punct_boundary_recall": 100.0 * hit_p / max(gold_p, 1),
        "tokens_per_second": gold_tokens / best,
        "gold_tokens": gold_tokens,
    }


def misses(candidate: Candidate, docs: list[GoldDocument], limit: int) -> list[str]:
    """Up to ``limit`` gold tokens the candidate missed, each with what it produced there."""
    out = []
    for doc in docs:
        predicted = [span for sentence in candidate(doc.text) for span in sentence]
        spans = set(predicted)
        for start, end in doc.tokens:
            if (start, end) not in spans and len(out) < limit:
                near = [doc.text[a:b] for a, b in predicted if a < end + 2 and b > start - 2]
                out.append(f"gold {doc.text[start:end]!r:20} got {near}")
    return out


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def table(results: dict[str, dict | None]) -> str:
    """The comparison as a Markdown table, then the met/missed line for the target."""
    lines = [
        "| tokenizer | tokens % | bound R % | bound P % | punct R % | tok/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        if r is None:
            lines.append(f"| {name} | skipped (not installed) | | | | |")
            continue
        lines.append(
            f"| {name} | {r['token_agreement']:.2f} | {r['boundary_recall']:.1f} | "
            f"{r['boundary_precision']:.1f} | {r['punct_boundary_recall']:.1f} | "
            f"{r['tokens_per_second']:,.0f} |"
        )
    ours = results.get("windowner default")
    if ours is not None:
        agreement = ours["token_agreement"]
        verdict = "met" if agreement >= TARGET_TOKEN_AGREEMENT else "missed"
        lines.append(
            f"\ntarget token agreement >= {TARGET_TOKEN_AGREEMENT:.0f}%: {verdict} "
            f"(windowner default {agreement:.2f}%)"
        )
    return "\n".join(lines)


def show_hard(candidates: dict[str, Candidate]) -> None:
    for text in HARD_SENTENCES:
        print(f"\n{text!r}")
        for name, candidate in candidates.items():
            shown = [" ".join(text[a:b] for a, b in s) for s in candidate(text)]
            print(f"  {name:18} {' ‖ '.join(shown)}")


def stream(docs: list[GoldDocument], copies: int) -> str:
    """tokens/s and peak RSS of ``iter_sentences`` over a file read line by line: the
    documents hard-wrapped at 72 columns, blank lines between them, written ``copies`` times."""
    import resource
    import tempfile
    import textwrap

    from windowner.tokenizer import iter_sentences

    text = "\n\n".join(textwrap.fill(doc.text, 72) for doc in docs) + "\n\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stream.txt"
        with path.open("w", encoding="utf-8") as handle:
            for _ in range(copies):
                handle.write(text)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        began, tokens = time.process_time(), 0
        with path.open(encoding="utf-8", newline="") as handle:
            for sentence in iter_sentences(handle):
                tokens += len(sentence.tokens)
        seconds = time.process_time() - began
        megabytes = path.stat().st_size / 1e6
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (
        f"stream: {megabytes:.1f} MB file, {tokens:,} tokens, {tokens / seconds:,.0f} tok/s "
        f"(CPU), peak RSS {rss_before:.0f} MB before and {rss_after:.0f} MB after"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dev", nargs="?", type=Path, default=DEFAULT_DEV)
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--hard", action="store_true", help="also show the hard sentences")
    ap.add_argument("--misses", type=int, default=0, help="show N tokens the default missed")
    ap.add_argument("--stream", type=int, default=0, help="also stream N copies from a file")
    args = ap.parse_args(argv)
    if not args.dev.is_file():
        print(f"error: {args.dev}: no such file (pass the CoNLL-2003 dev file)", file=sys.stderr)
        return 2
    if not installed("sacremoses"):
        print("error: the benchmark needs sacremoses (pip install sacremoses)", file=sys.stderr)
        return 2
    docs = detokenise(read_documents(args.dev))
    usable = {n: fn for n, (mod, fn) in CANDIDATES.items() if installed(mod)}
    results: dict[str, dict | None] = {}
    for name in CANDIDATES:
        print(f"scoring {name} ...", file=sys.stderr)
        results[name] = score(usable[name], docs) if name in usable else None
    print(json.dumps(results, indent=2) if args.json else table(results))
    if args.hard:
        show_hard(usable)
    if args.stream:
        print(stream(docs, args.stream))
    for line in misses(usable["windowner default"], docs, args.misses) if args.misses else []:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Calibrates and checks the "nothing relevant found" gate of answers on the evaluation corpus.

Two knowledge bases are built from the corpus's question sets: the FinanceBench filings and the
Docugami 10-Qs (Apple, NVIDIA). A question asked of its own knowledge base is answerable (for
FinanceBench: when the evidence page is retrieved); asked of the other one, or when off topic, it is not,
and an answer citing anything would cite noise. Prints the gate's outcome per group, and with --sweep
the signals (top cosine, topic-word coverage) the thresholds in retrieval/selection.py were chosen from.

    .venv/bin/python bench/relevance.py [--home DIR] [--sweep]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from docground.retrieval import selection
from docground.service import Docground
from docground.settings import Settings
from docground_testing.corpus import CORPUS

GT = CORPUS / "groundtruth"
DENSE_READ = 5  # the top cosine among the store's first hits
OFF_TOPIC = [
    "What is the boiling point of liquid nitrogen?", "Who wrote the novel Moby Dick?",
    "How many moons does Jupiter have?", "What is the recipe for a classic French omelette?",
    "Which river flows through Vienna and Budapest?", "How do I reset a forgotten Wi-Fi router password?",
    "What is the offside rule in football?", "When did the Roman Empire fall?",
    "What are the symptoms of vitamin D deficiency?", "How does photosynthesis convert light into energy?",
    "What is the tallest mountain in Africa?", "Which programming language was created by Guido van Rossum?",
    "How long should I boil an egg for a soft yolk?", "What causes the northern lights?",
    "Who painted the ceiling of the Sistine Chapel?", "What is the population of Mongolia?",
    "How do bees communicate the location of flowers?", "What is the speed of sound in water?",
    "Which chess opening starts with e4 e5 Nf3 Nc6 Bb5?", "What is the plot of Hamlet?",
]


def financebench() -> list[dict]:
    rows = [json.loads(line) for line in (GT / "financebench" / "questions.jsonl").read_text().splitlines() if line]
    return [{"q": r["question"], "doc": r["doc_name"] + ".pdf",
             "pages": {e["evidence_page_num"] + 1 for e in r["evidence"]}} for r in rows]


def docugami() -> list[dict]:
    with (GT / "docugami_sec10q" / "qna_data.csv").open(newline="") as f:
        return [{"q": r["Question"], "doc": None, "pages": None} for r in csv.DictReader(f)]


def ingest(service: Docground, kb: str, folder: Path) -> None:
    for pdf in sorted(folder.glob("*.pdf")):
        result = service.ingest(kb, pdf.name, pdf.read_bytes())
        print(f"  {kb}: {pdf.name} {result.status} {result.chunks} chunks", file=sys.stderr)


def signals(service: Docground, kb: str, question: str, top_k: int = 5) -> dict:
    hits = service.retrieve(kb, question, selection.RERANK_DEPTH)
    found = selection.candidates(question, hits)
    return {
        "hits": hits[:top_k],
        "dense": max((h.dense_score for h in hits[:DENSE_READ]), default=0.0),
        "coverage": max((c.window for c in found), default=0.0),
        "relevant": selection.is_relevant(question, found),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path("/tmp/docground-bench-relevance"))
    parser.add_argument("--sweep", action="store_true", help="print every question's signals")
    args = parser.parse_args()
    service = Docground(Settings(home=args.home))
    ingest(service, "fin", GT / "financebench" / "pdfs")
    ingest(service, "sec", GT / "docugami_sec10q" / "docs")

    groups: dict[str, list[tuple[bool, dict]]] = {}
    for item in financebench():
        s = signals(service, "fin", item["q"])
        found = any(h.payload.get("filename") == item["doc"] and set(h.payload.get("pages", [])) & item["pages"]
                    for h in s["hits"])
        groups.setdefault("FinanceBench, evidence retrieved" if found else "FinanceBench, evidence missed",
                          []).append((True, s | {"q": item["q"]}))
        groups.setdefault("FinanceBench asked of the 10-Qs", []).append(
            (False, signals(service, "sec", item["q"]) | {"q": item["q"]}))
    for item in docugami():
        groups.setdefault("Docugami 10-Q", []).append((True, signals(service, "sec", item["q"]) | {"q": item["q"]}))
        groups.setdefault("Docugami asked of FinanceBench", []).append(
            (False, signals(service, "fin", item["q"]) | {"q": item["q"]}))
    for q in OFF_TOPIC:
        for kb in ("fin", "sec"):
            groups.setdefault("off topic", []).append((False, signals(service, kb, q) | {"q": q}))

    print(f"gate: best unit's score >= {selection.BEST_MIN}, and the asked-for kind (amount, time) among the "
          f"best {selection.TYPED_READ} units")
    print(f"| {'questions':36} | {'n':>4} | {'answerable':>10} | {'answered':>8} | {'not found':>9} |")
    print(f"|{'-' * 38}|{'-' * 6}|{'-' * 12}|{'-' * 10}|{'-' * 11}|")
    for name, rows in groups.items():
        answered = sum(1 for _, s in rows if s["relevant"])
        label = "yes" if rows[0][0] else "no"
        print(f"| {name:36} | {len(rows):>4} | {label:>10} | {answered:>8} | {len(rows) - answered:>9} |")
    if args.sweep:
        for name, rows in groups.items():
            for answerable, s in rows:
                print(f"{name[:20]:20} {int(answerable)} {s['dense']:.3f} {s['coverage']:.2f} {s['q'][:90]}")
    service.close()


if __name__ == "__main__":
    main()

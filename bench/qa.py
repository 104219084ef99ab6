"""QA benchmark: does the first citation highlight the line that answers?

Every question of ``bench/qa/*.jsonl`` (format: ``bench/qa/README.md``) is asked of one knowledge base that
holds all the benchmark's documents (born-digital as published, or with ``--scan`` 150-DPI image-only renders
of the question pages). Scored per language and per kind:

- hit@1: the first citation covers >= 30% of an evidence line box on the evidence page;
- hit@5: any of the first five citations, or any span of the first five chunks, does;
- precision: the share of citations whose quote is >= 90% the text under their boxes (the original's text layer);
- not-found: the share of unanswerable questions answered ``null``;
- answer: the answer text contains the expected answer (case and whitespace aside).

    .venv/bin/python bench/qa.py [--scan] [--home DIR] [--only SET] [--show-misses] [--explain ID,ID]

The home is kept between runs (ingesting is idempotent), so a second run only asks. JSON goes to
``bench/results/qa[-scan].json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np
import pymupdf

# bench/qa/ (this script's folder is on sys.path) holds the data and its tools
from qa.docs import printed_evidence, resolve

from docground.retrieval import selection
from docground.retrieval.refine import page_chars
from docground.service import Docground
from docground.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "qa"
RESULTS = ROOT / "bench" / "results"
KB = "qa"
HIT_COVER = 0.30
PRECISE = 0.90
SCAN_DPI = 150
TOP = 5


@dataclass
class Question:
    id: str
    doc: str
    page: int
    lang: str
    kind: str
    question: str
    answer: str
    evidence: str
    evidence_boxes: list[list[float]]

    @property
    def answerable(self) -> bool:
        return self.kind != "unanswerable"


@dataclass
class Outcome:
    question: Question
    hit1: bool = False
    hit5: bool = False
    precise: list[bool] = field(default_factory=list)
    said_null: bool = False
    contains: bool = False
    first: str = ""
    seconds: float = 0.0


def load(data: Path, only: str | None) -> list[Question]:
    out = []
    for path in sorted(data.glob("*.jsonl")):
        if only and path.stem != only:
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if row["doc"].startswith("deb-html:") and row.get("evidence"):
                    row["page"], row["evidence_boxes"] = printed_evidence(row["doc"], row["page"], row["evidence"])
                out.append(Question(**{k: row.get(k, "" if k != "evidence_boxes" else []) for k in
                                       Question.__dataclass_fields__}))
    return out


def scanned(path: Path, pages: list[int]) -> bytes:
    """An image-only PDF of the given pages rendered at 150 DPI, each at its displayed size in points."""
    out = pymupdf.open()
    with pymupdf.open(path) as doc:
        for number in pages:
            page = doc[number - 1]
            pix = page.get_pixmap(dpi=SCAN_DPI)
            new = out.new_page(width=page.rect.width, height=page.rect.height)
            new.insert_image(new.rect, stream=pix.tobytes("png"))
    data = out.tobytes(garbage=3, deflate=True, no_new_id=True)  # the same bytes every run: one document
    out.close()
    return data


class Documents:
    """Each source document once: its bytes as ingested, and where a question's page is in them."""

    def __init__(self, questions: list[Question], scan: bool):
        self.scan = scan
        self.paths: dict[str, Path] = {}
        self.pages: dict[str, list[int]] = defaultdict(list)
        for q in questions:
            self.paths.setdefault(q.doc, resolve(q.doc))
            if q.answerable and q.page not in self.pages[q.doc]:
                self.pages[q.doc].append(q.page)
        for pages in self.pages.values():
            pages.sort()

    def upload(self, source: str) -> tuple[str, bytes]:
        path = self.paths[source]
        name = source.replace(":", "_").replace("/", "_")
        if not self.scan:
            return name, path.read_bytes()
        return name + ".scan.pdf", scanned(path, self.pages[source] or [1])

    def ingested_page(self, source: str, page: int) -> int:
        """The page number a question's page has in what was ingested (a scan holds only question pages)."""
        return self.pages[source].index(page) + 1 if self.scan else page


def ingest_all(svc: Docground, docs: Documents) -> dict[str, str]:
    ids = {}
    for n, source in enumerate(docs.paths, start=1):
        name, data = docs.upload(source)
        t0 = time.perf_counter()
        result = svc.ingest(KB, name, data)
        took = time.perf_counter() - t0
        print(f"[{n}/{len(docs.paths)}] {source}: {result.status} ({took:.1f} s)", flush=True)
        if result.document_id is None:
            raise SystemExit(f"ingest failed: {source}: {result.error}")
        ids[source] = result.document_id
    return ids


def _covers(boxes: list[tuple], target: tuple) -> float:
    """Share of the target box's area lying under the given boxes."""
    area = max((target[2] - target[0]) * (target[3] - target[1]), 1e-12)
    inter = 0.0
    for b in boxes:
        w = min(b[2], target[2]) - max(b[0], target[0])
        h = min(b[3], target[3]) - max(b[1], target[1])
        if w > 0 and h > 0:
            inter += w * h
    return min(inter / area, 1.0)


def _evidence(q: Question, size: tuple[float, float]) -> list[tuple]:
    w, h = size
    return [(b[0] / w, b[1] / h, b[2] / w, b[3] / h) for b in q.evidence_boxes]


def _hits(boxes: list[tuple], evidence: list[tuple]) -> bool:
    return any(_covers(boxes, e) >= HIT_COVER for e in evidence)


def _fold(text: str) -> str:
    return "".join(text.split()).casefold()


class TextUnderBoxes:
    """The original's text-layer characters under a set of boxes (the judge of citation precision)."""

    def __init__(self, docs: Documents):
        self.docs = docs
        self.cache: dict[tuple[str, int], object] = {}

    def page(self, source: str, page: int):
        key = (source, page)
        if key not in self.cache:
            with pymupdf.open(self.docs.paths[source]) as doc:
                self.cache[key] = page_chars(doc[page - 1])
        return self.cache[key]

    def precise(self, source: str, page: int, boxes: list[tuple], quote: str) -> bool:
        chars = self.page(source, page)
        wanted = "".join(ch for ch in _fold(quote) if ch not in "|#*_`$")
        if not wanted or chars.boxes.size == 0:
            return not wanted
        cx, cy = chars.centers
        mask = np.zeros(len(chars.chars), dtype=bool)
        for x0, y0, x1, y1 in boxes:
            dy = 0.25 * (y1 - y0)
            mask |= (cx >= x0 - 0.004) & (cx <= x1 + 0.004) & (cy >= y0 - dy) & (cy <= y1 + dy)
        under = "".join(c for c, m in zip(chars.chars, mask, strict=True) if m)
        matched = sum(b.size for b in SequenceMatcher(None, wanted, under, autojunk=False).get_matching_blocks())
        return matched >= PRECISE * len(wanted)


def ask(svc: Docground, q: Question, docs: Documents, doc_ids: dict[str, str], judge: TextUnderBoxes) -> Outcome:
    t0 = time.perf_counter()
    response = svc.query(KB, q.question, top_k=TOP, mode="extractive")
    out = Outcome(q, seconds=time.perf_counter() - t0)
    out.said_null = response.answer is None
    by_doc = {v: k for k, v in doc_ids.items()}
    out.first = (response.citations[0].quote if response.citations else "")[:120]
    for c in response.citations:
        source = by_doc.get(c.document_id)
        if source is None:
            continue
        page = docs.pages[source][c.page - 1] if docs.scan else c.page
        out.precise.append(judge.precise(source, page, [tuple(b) for b in c.boxes], c.quote))
    if not q.answerable:
        return out
    want_doc, want_page = doc_ids[q.doc], docs.ingested_page(q.doc, q.page)
    size = next(((c.page_size_pt[0], c.page_size_pt[1]) for c in response.citations if c.page_size_pt[0]), None)
    size = size or _page_size(docs.paths[q.doc], q.page)
    evidence = _evidence(q, size)
    on_page = [c for c in response.citations if c.document_id == want_doc and c.page == want_page]
    out.hit1 = _hits([tuple(b) for c in on_page if c.n == 1 for b in c.boxes], evidence)
    out.hit5 = _hits([tuple(b) for c in on_page if c.n <= TOP for b in c.boxes], evidence) or any(
        _hits([tuple(s.bbox)], evidence) for ch in response.chunks[:TOP] if ch.document_id == want_doc
        for s in ch.spans if s.page == want_page)
    out.contains = bool(response.answer) and _fold(q.answer) in _fold(response.answer)
    return out


def explain(svc: Docground, questions: list[Question], shown: int = 8) -> None:
    """What the answer stage saw: the chunks retrieved as `query` retrieves them, and its best units with their
    scores (own: the unit's share of the question's weighted terms; score: with neighbours and bonuses)."""
    for q in questions:
        print(f"== {q.id} [{q.lang}/{q.kind}] {q.question}\n   want: {q.evidence[:120]!r}")
        hits = svc.retrieve(KB, q.question, max(TOP, selection.RERANK_DEPTH))
        for rank, h in enumerate(hits[:shown]):
            print(f"   chunk {rank:2} {h.score:.4f} {h.payload.get('filename', '')[:40]} p{h.payload.get('pages')} "
                  f"{h.payload.get('text', '')[:70]!r}")
        found = selection.candidates(q.question, hits)
        for c in found[:shown]:
            print(f"   unit of chunk {c.rank:2} score {c.score:.3f} own {c.own:.3f} {c.unit.kind:8} {c.text[:90]!r}")
        print(f"   relevant: {selection.is_relevant(q.question, found)}")


def _page_size(path: Path, page: int) -> tuple[float, float]:
    with pymupdf.open(path) as doc:
        r = doc[page - 1].rect
        return (r.width, r.height)


def _row(name: str, outs: list[Outcome]) -> dict:
    answerable = [o for o in outs if o.question.answerable]
    unanswerable = [o for o in outs if not o.question.answerable]
    precise = [p for o in outs for p in o.precise]

    def share(values) -> float | None:
        values = list(values)
        return round(sum(values) / len(values), 3) if values else None

    return {"group": name, "questions": len(outs), "hit@1": share(o.hit1 for o in answerable),
            "hit@5": share(o.hit5 for o in answerable), "precision": share(precise),
            "not_found": share(o.said_null for o in unanswerable),
            "answer": share(o.contains for o in answerable)}


def table(title: str, rows: list[dict]) -> str:
    cols = ["questions", "hit@1", "hit@5", "precision", "not_found", "answer"]
    lines = [f"| {title} | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    for r in rows:
        cells = ["—" if r[c] is None else (f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c])) for c in cols]
        lines.append(f"| {r['group']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(outs: list[Outcome]) -> dict:
    by_lang, by_kind = defaultdict(list), defaultdict(list)
    for o in outs:
        by_lang[o.question.lang].append(o)
        by_kind[o.question.kind].append(o)
    lang_rows = [_row(k, v) for k, v in sorted(by_lang.items())] + [_row("all", outs)]
    kind_rows = [_row(k, v) for k, v in sorted(by_kind.items())] + [_row("all", outs)]
    print(table("language", lang_rows))
    print()
    print(table("kind", kind_rows))
    return {"by_language": lang_rows, "by_kind": kind_rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scan", action="store_true", help="ask of 150-DPI image-only renders of the pages")
    parser.add_argument("--home", type=Path, default=None, help="data directory kept between runs")
    parser.add_argument("--data", type=Path, default=DATA, help="folder of question files")
    parser.add_argument("--only", default=None, help="one question set (a file stem of bench/qa/)")
    parser.add_argument("--show-misses", action="store_true", help="print every question whose hit@1 failed")
    parser.add_argument("--explain", default="", help="question ids (comma-separated): print their retrieved "
                        "chunks and best-scored units instead of scoring")
    args = parser.parse_args()

    questions = load(args.data, args.only)
    docs = Documents(questions, args.scan)
    home = args.home or Path.home() / ".cache" / ("docground-qa-home-scan" if args.scan else "docground-qa-home")
    svc = Docground(Settings(home=home))
    try:
        doc_ids = ingest_all(svc, docs)
        if args.explain:
            return explain(svc, [q for q in questions if q.id in args.explain.split(",")])
        judge = TextUnderBoxes(docs)
        outs = [ask(svc, q, docs, doc_ids, judge) for q in questions]
    finally:
        svc.close()
    if args.show_misses:
        for o in outs:
            q = o.question
            bad = (q.answerable and not o.hit1) or (not q.answerable and not o.said_null)
            if bad:
                print(f"MISS {q.id} [{q.lang}/{q.kind}] hit5={o.hit5} Q: {q.question}\n   want: {q.evidence[:100]!r}"
                      f"\n   got:  {o.first!r}")
    print(f"\n{len(questions)} questions, {len(docs.paths)} documents, {'scan' if args.scan else 'born-digital'}; "
          f"query p50 {1000 * float(np.median([o.seconds for o in outs])):.0f} ms\n")
    result = report(outs)
    result["misses"] = [o.question.id for o in outs if (o.question.answerable and not o.hit1)
                        or (not o.question.answerable and not o.said_null)]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"qa{'-scan' if args.scan else ''}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

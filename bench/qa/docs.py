"""Where the QA benchmark's documents come from, and the evidence boxes taken from their text layers.

A question names its document by source:
- ``corpus:docs/academic/x.pdf``: a file of the shared evaluation corpus (``../shared/eval/corpus``);
- ``deb:PACKAGE:/usr/share/doc/.../file.pdf``: a PDF shipped in a Debian package, fetched once with
  ``apt-get download`` and unpacked into the cache (``DOCGROUND_QA_CACHE``, default ``~/.cache/docground-qa``);
- ``deb-html:PACKAGE:/usr/share/doc/.../file.html``: an HTML page of a Debian package, printed to PDF
  once by headless Chromium (A4, no header/footer) into the same cache.

    .venv/bin/python -m bench.qa.docs locate bench/qa/SET.jsonl   # fill evidence_boxes from the text layer
    .venv/bin/python -m bench.qa.docs text SOURCE PAGE              # print a page's text-layer lines
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pymupdf

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("DOCGROUND_CORPUS", ROOT.parent / "shared" / "eval" / "corpus"))
CACHE = Path(os.environ.get("DOCGROUND_QA_CACHE", Path.home() / ".cache" / "docground-qa"))


class SourceError(RuntimeError):
    pass


def _unpacked(package: str) -> Path:
    target = CACHE / "deb" / package
    if (target / ".done").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob("*.deb"))
        if got.returncode != 0 or not debs:
            raise SourceError(f"apt-get download {package} failed: {got.stderr.strip()[-300:]}")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(target)], check=True)
    (target / ".done").write_text("")
    return target


def _printed(html: Path) -> Path:
    digest = hashlib.sha256(str(html).encode()).hexdigest()[:16]
    pdf = CACHE / "printed" / f"{html.stem}-{digest}.pdf"
    if pdf.exists():
        return pdf
    fonts = subprocess.run(["fc-list", ":lang=ko"], capture_output=True, text=True).stdout
    if not fonts.strip():  # Chromium would print blanks for the missing glyphs: evidence would not match
        raise SourceError("printing HTML needs CJK fonts: apt-get install fonts-noto-cjk")
    pdf.parent.mkdir(parents=True, exist_ok=True)
    part = pdf.with_suffix(".part.pdf")
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                    f"--print-to-pdf={part}", html.as_uri()], check=True, capture_output=True, timeout=180)
    part.replace(pdf)
    return pdf


def resolve(source: str) -> Path:
    """The local path of a question's document, fetched into the cache on first use."""
    kind, _, rest = source.partition(":")
    if kind == "corpus":
        path = CORPUS / rest
    elif kind in ("deb", "deb-html"):
        package, _, inner = rest.partition(":")
        path = _unpacked(package) / inner.lstrip("/")
        if path.suffix == ".gz" and not path.with_suffix("").exists():
            subprocess.run(["gunzip", "-k", str(path)], check=True)
        path = path.with_suffix("") if path.suffix == ".gz" else path
        if kind == "deb-html":
            path = _printed(path)
    else:
        raise SourceError(f"unknown document source {source!r}")
    if not path.exists():
        raise SourceError(f"{source}: {path} does not exist")
    return path


def _squash(text: str) -> str:
    return "".join(text.split())


def evidence_boxes(path: Path, page_no: int, evidence: str) -> list[list[float]]:
    """Boxes in points (origin top-left of the displayed page) of the text-layer lines that hold the
    evidence text (whitespace ignored), one per line; empty when the text layer does not hold it."""
    with pymupdf.open(path) as doc:
        page = doc[page_no - 1]
        lines = []
        for block in page.get_text("dict", flags=pymupdf.TEXTFLAGS_TEXT)["blocks"]:
            for line in block.get("lines", ()):
                text = "".join(s["text"] for s in line["spans"])
                box = pymupdf.Rect(line["bbox"]) * page.rotation_matrix
                lines.append((_squash(text), box))
    wanted = _squash(evidence)
    flat = "".join(t for t, _ in lines)
    at = flat.find(wanted)
    if at < 0 or not wanted:
        return []
    boxes, pos = [], 0
    for text, box in lines:
        lo, hi = pos, pos + len(text)
        pos = hi
        if hi > at and lo < at + len(wanted) and text:
            boxes.append([round(v, 2) for v in (box.x0, box.y0, box.x1, box.y1)])
    return boxes


def printed_evidence(source: str, page_no: int, evidence: str) -> tuple[int, list[list[float]]]:
    """Where a printed HTML page (`deb-html:`) holds the evidence on this machine: Chromium's pagination and
    line breaks follow the installed fonts, so the page and boxes written in the question file are only
    where it was on the machine that wrote it. The stated page first, then the nearest page that holds it."""
    path = resolve(source)
    with pymupdf.open(path) as doc:
        pages = len(doc)
    for n in sorted(range(1, pages + 1), key=lambda n: (abs(n - page_no), n)):
        boxes = evidence_boxes(path, n, evidence)
        if boxes:
            return n, boxes
    return page_no, []


def locate(jsonl: Path) -> int:
    """Fill evidence_boxes of every answerable question in a QA file; return how many failed."""
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    failed = 0
    for row in rows:
        if row.get("kind") == "unanswerable":
            row["evidence_boxes"] = []
            continue
        boxes = evidence_boxes(resolve(row["doc"]), row["page"], row["evidence"])
        if not boxes:
            failed += 1
            print(f"NOT FOUND {row['id']}: {row['evidence'][:80]!r} on page {row['page']} of {row['doc']}")
        row["evidence_boxes"] = boxes
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return failed


def page_text(source: str, page_no: int) -> str:
    with pymupdf.open(resolve(source)) as doc:
        return doc[page_no - 1].get_text("text", sort=False)


def main(argv: list[str]) -> int:
    if argv[:1] == ["locate"]:
        return 1 if sum(locate(Path(p)) for p in argv[1:]) else 0
    if argv[:1] == ["text"]:
        print(page_text(argv[1], int(argv[2])))
        return 0
    if argv[:1] == ["pages"]:
        with pymupdf.open(resolve(argv[1])) as doc:
            print(doc.page_count)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""On real born-digital papers, fine boxes hold the quote and little else: words under a citation's
boxes are the quote's words (precision), where whole line boxes would also light up the neighbours."""

from __future__ import annotations

import random
import re

import pymupdf

from docground.api.models import Citation
from docground.retrieval.answers import extractive_answer

from .conftest import corpus_file

DOCS = ["docs/academic/olmocr_tobacco_control_2004.pdf", "docs/academic/deepseek_ocr2_paper.pdf"]
QUESTIONS_PER_DOC = 6


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def under(pdf: pymupdf.Document, citation: Citation) -> list[str]:
    """The text layer's words whose centres lie in the citation's boxes."""
    page = pdf[citation.page - 1]
    w, h = page.rect.width, page.rect.height
    out = []
    for x0, y0, x1, y1, word, *_ in page.get_text("words", sort=True):
        r = pymupdf.Rect(x0, y0, x1, y1) * page.rotation_matrix
        cx, cy = (r.x0 + r.x1) / 2 / w, (r.y0 + r.y1) / 2 / h
        if any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in citation.boxes):
            out += words(word)
    return out


def precision_recall(pdf, citation) -> tuple[float, float]:
    quoted, lit = words(citation.quote), under(pdf, citation)
    if not lit or not quoted:
        return 0.0, 0.0
    qset, lset = set(quoted), set(lit)
    return sum(1 for x in lit if x in qset) / len(lit), sum(1 for x in quoted if x in lset) / len(quoted)


def test_fine_boxes_light_up_the_quote_and_not_its_neighbours(service):
    rng = random.Random(3)
    fine, coarse = [], []
    for path in DOCS:
        data = corpus_file(path).read_bytes()
        assert service.ingest("papers", path.rsplit("/", 1)[1], data).status == "ready"
        pdf = pymupdf.open(stream=data, filetype="pdf")
        lines = [ln.strip() for page in pdf for ln in page.get_text().splitlines()]
        lines = [ln for ln in lines if len(ln) >= 40 and sum(c.isalpha() for c in ln) > 0.7 * len(ln)]
        for question in rng.sample(lines, QUESTIONS_PER_DOC):
            hits = service.retrieve("papers", question, 3)
            for mine, layer in ((fine, service.text_layer), (coarse, None)):
                for c in extractive_answer(question, hits, layer).citations:
                    if c.filename == path.rsplit("/", 1)[1]:
                        mine.append(precision_recall(pdf, c))
    assert len(fine) >= 10
    fine_precision = sum(p for p, _ in fine) / len(fine)
    fine_recall = sum(r for _, r in fine) / len(fine)
    coarse_precision = sum(p for p, _ in coarse) / len(coarse)
    assert fine_recall >= 0.95, fine
    assert fine_precision >= 0.9, fine
    assert fine_precision > coarse_precision, (fine_precision, coarse_precision)

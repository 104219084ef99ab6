"""On real born-digital documents, citations quote text that lies under their boxes (≥ 95%)."""

import random

import pytest

from docground_testing.citecheck import questions_from, quote_under_boxes

from .conftest import corpus_file

DOCS = [
    "docs/academic/olmocr_tobacco_control_2004.pdf",
    "docs/academic/mineru_demo3_tableformer_arxiv2203.00274.pdf",
    "docs/academic/deepseek_ocr2_paper.pdf",
    "docs/tables/pdfplumber_federal-register-2020-17221.pdf",
    "docs/tables/pdfplumber_senate-expenditures.pdf",
    "docs/slides/docling_odf_presentation_01.pdf",
    "docs/forms/irs_f1040nr.pdf",
    "docs/cjk/pymupdf_chinese-tables.pdf",
    "docs/misc/pdfplumber_scotus-transcript-p1.pdf",
]


@pytest.mark.timeout(900)
def test_citations_quote_what_lies_under_their_boxes(service):
    rng = random.Random(7)
    files = {p: corpus_file(p).read_bytes() for p in DOCS}
    checked, good, failures = 0, 0, []
    for path, data in files.items():
        assert service.ingest("corpus", path.rsplit("/", 1)[1], data).status == "ready"
    for path, data in files.items():
        for question in questions_from(data, rng):
            for citation in service.query("corpus", question, top_k=3).citations:
                source = next(d for p, d in files.items() if p.endswith("/" + citation.filename))
                checked += 1
                if quote_under_boxes(source, citation):
                    good += 1
                else:
                    failures.append((citation.filename, citation.page, citation.quote[:80]))
    assert checked >= 40
    assert good / checked >= 0.95, failures

"""Extractive answers and fine citation boxes, on PDFs drawn in the test."""

from __future__ import annotations

import pymupdf
import pytest

from docground.retrieval.answers import extractive_answer, sentences
from docground.retrieval.refine import TextLayer, quote_boxes
from docground.retrieval.store import Hit
from docground_testing.citation_docs import RIVERS, displayed_rects, report_pdf, same_region


@pytest.fixture
def rivers_kb(service):
    pdf = report_pdf()
    result = service.ingest("reports", "report.pdf", pdf)
    assert result.status == "ready", result.error
    return service, pdf


def test_quote_starting_mid_line_is_boxed_from_its_first_word(rivers_kb):
    service, pdf = rivers_kb
    response = service.query("reports", "How much did nitrate levels fall downstream of Vienna?", mode="extractive")
    assert response.answer_mode == "extractive"
    cited = {c.quote: c for c in response.citations}
    quote = "Nitrate levels fell by twelve percent over the study period, mostly downstream of Vienna."
    assert quote in cited, response.answer
    citation = cited[quote]
    expected = displayed_rects(pdf, citation.page, quote)
    assert same_region(citation.boxes, expected), (citation.boxes, expected)
    # the first line's box starts where the sentence starts, well right of the text column's left edge
    column_left = 72 / 595
    assert min(b[0] for b in citation.boxes[:1]) > column_left + 0.05
    for box, box_pt in zip(citation.boxes, citation.boxes_pt, strict=True):
        assert box_pt == pytest.approx((box[0] * 595, box[1] * 842, box[2] * 595, box[3] * 842), abs=0.02)


def test_every_quote_is_chunk_text_and_lies_under_its_boxes(rivers_kb):
    service, pdf = rivers_kb
    response = service.query("reports", "Which planet has the Great Red Spot storm?", mode="extractive")
    assert response.citations
    texts = {c.chunk_id: c.text for c in response.chunks}
    for citation in response.citations:
        assert citation.quote in texts[citation.chunk_id]
        assert same_region(citation.boxes, displayed_rects(pdf, citation.page, citation.quote))
        assert "Jupiter" in citation.quote or "Red Spot" in citation.quote


def test_rotated_page_boxes_follow_the_displayed_page(service):
    pdf = report_pdf(rotation=90)
    assert service.ingest("rotated", "rotated.pdf", pdf).status == "ready"
    response = service.query("rotated", "Where is arabica coffee exported from in Brazil?", mode="extractive")
    quote = "Brazil is the largest producer of coffee beans and exports most of its harvest through the port of Santos."
    citation = next(c for c in response.citations if c.quote == quote)
    assert citation.page_size_pt == (842.0, 595.0)
    assert same_region(citation.boxes, displayed_rects(pdf, citation.page, quote))


def test_unrelated_question_answers_not_found_instead_of_citing_noise(rivers_kb):
    service, _ = rivers_kb
    for question in ("Who painted the ceiling of the Sistine Chapel?", "What is the offside rule in football?"):
        response = service.query("reports", question, mode="extractive")
        assert response.answer is None and response.citations == [] and response.answer_mode == "not_found"
        assert response.chunks, "what was retrieved is still shown, just not cited"


def _payload(text: str, spans: list[dict], document_id: str) -> dict:
    return {"text": text, "document_id": document_id, "filename": "x.pdf", "spans": spans,
            "page_sizes": [{"page": 1, "width_pt": 595.0, "height_pt": 842.0}]}


def _blob(tmp_path, document_id: str, pdf: bytes) -> TextLayer:
    folder = tmp_path / "blobs" / document_id
    folder.mkdir(parents=True)
    (folder / "original.pdf").write_bytes(pdf)
    return TextLayer(tmp_path / "blobs")


def _paragraph_box(pdf: bytes) -> tuple[float, float, float, float]:
    page = pymupdf.open(stream=pdf, filetype="pdf")[0]
    blocks = [b for b in page.get_text("blocks") if "Danube" in b[4]]
    x0, y0, x1, y1 = blocks[0][:4]
    return (x0 / 595, y0 / 842, x1 / 595, y1 / 842)


def test_block_box_of_an_ocr_engine_shrinks_to_the_quoted_lines_on_the_text_layer(tmp_path):
    """DeepSeek-OCR-2 gives one box per block; where the PDF has a text layer, a quote's box is its lines."""
    pdf = report_pdf(topics={"Rivers": RIVERS})
    layer = _blob(tmp_path, "doc1", pdf)
    block = _paragraph_box(pdf)
    ranges = sentences(RIVERS)
    spans = [{"block_id": "b", "page": 1, "bbox": block, "char_start": s, "char_end": e} for s, e in ranges]
    s, e = ranges[3]  # "The survey measured nitrate ..." starts mid-line
    boxes = quote_boxes(_payload(RIVERS, spans, "doc1"), s, e, layer)[1]
    expected = displayed_rects(pdf, 1, RIVERS[s:e])
    assert same_region(boxes, expected), (boxes, expected)
    assert len(boxes) < 4 and all(b != block for b in boxes)


def test_ocr_text_that_the_text_layer_does_not_confirm_keeps_its_own_box(tmp_path):
    """A noisy or foreign text layer must not move a box: the span's box stands."""
    pdf = report_pdf(topics={"Rivers": RIVERS})
    layer = _blob(tmp_path, "doc2", pdf)
    block = _paragraph_box(pdf)
    text = "Completely different words that the page does not contain anywhere at all, not one line."
    spans = [{"block_id": "b", "page": 1, "bbox": block, "char_start": 0, "char_end": len(text)}]
    assert quote_boxes(_payload(text, spans, "doc2"), 11, 40, layer) == {1: [block]}


def test_pages_without_a_text_layer_keep_line_boxes(tmp_path):
    """Scans and images: the OCR engine's line boxes are the finest there are."""
    line1, line2 = (0.1, 0.1, 0.9, 0.12), (0.1, 0.13, 0.9, 0.15)
    text = "First scanned line of text.\nSecond scanned line of text."
    spans = [{"block_id": "b", "page": 1, "bbox": line1, "char_start": 0, "char_end": 27},
             {"block_id": "b", "page": 1, "bbox": line2, "char_start": 28, "char_end": len(text)}]
    layer = TextLayer(tmp_path / "blobs")  # no original.pdf: an image document
    assert quote_boxes(_payload(text, spans, "scan"), 6, 20, layer) == {1: [line1]}
    assert quote_boxes(_payload(text, spans, "scan"), 6, 40, layer) == {1: [line1, line2]}
    # the newline between the lines is no reason to highlight the next line
    assert quote_boxes(_payload(text, spans, "scan"), 0, 28, layer) == {1: [line1]}


def test_a_quote_over_a_page_break_is_cut_there_each_page_quoting_its_own_part():
    from docground.retrieval.answers import Quote, cite

    text = "The pump must be primed before it is started. Prime it with the"
    text += "\n" + "valve open and the outlet closed. Then start it."
    line1, line2 = text.index("Prime"), text.index("valve")
    payload = {"text": text, "document_id": "d", "filename": "pump.pdf",
               "page_sizes": [{"page": 1, "width_pt": 595, "height_pt": 842},
                              {"page": 2, "width_pt": 595, "height_pt": 842}],
               "spans": [{"block_id": "b1", "page": 1, "bbox": [0.1, 0.90, 0.9, 0.92], "char_start": 0,
                          "char_end": line2 - 1},
                         {"block_id": "b2", "page": 2, "bbox": [0.1, 0.08, 0.9, 0.10], "char_start": line2,
                          "char_end": len(text)}]}
    hit = Hit(id="c", score=1.0, dense_score=0.5, payload=payload)
    end = text.index(" Then")
    citations = cite(Quote(hit, line1, end, 1.0), 1, None)
    assert [(c.page, c.quote) for c in citations] == [(1, "Prime it with the"),
                                                     (2, "valve open and the outlet closed.")]
    assert [c.boxes for c in citations] == [[(0.1, 0.90, 0.9, 0.92)], [(0.1, 0.08, 0.9, 0.10)]]
    one_page = cite(Quote(hit, 0, line1 - 1, 1.0), 1, None)
    assert [(c.page, c.quote) for c in one_page] == [(1, "The pump must be primed before it is started.")]


def test_no_hits_means_not_found():
    response = extractive_answer("anything at all", [])
    assert response.answer is None and response.answer_mode == "not_found"


def test_weak_hits_are_not_cited():
    hit = Hit("c1", 0.01, 0.12, _payload("Bananas are rich in potassium and fibre.", [], "d"))
    assert extractive_answer("What is the tallest mountain in Africa?", [hit]).answer is None


def test_markdown_syntax_in_ocr_text_does_not_stop_the_snap(tmp_path):
    """OCR engines write markdown (**bold**, tables); the page shows the words only."""
    pdf = report_pdf(topics={"Rivers": RIVERS})
    layer = _blob(tmp_path, "doc3", pdf)
    block = _paragraph_box(pdf)
    quote = "Nitrate levels fell by twelve percent over the study period, mostly downstream of Vienna."
    text = "**Nitrate levels** fell by twelve percent over the study period, mostly downstream of *Vienna*."
    spans = [{"block_id": "b", "page": 1, "bbox": block, "char_start": 0, "char_end": len(text)}]
    boxes = quote_boxes(_payload(text, spans, "doc3"), 0, len(text), layer)[1]
    assert same_region(boxes, displayed_rects(pdf, 1, quote)), boxes

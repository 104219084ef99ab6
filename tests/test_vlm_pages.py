"""DOCGROUND_VLM_PAGES: which born-digital pages the vision model also reads (ingest/routing.py,
ingest/page_structure.py), and how its output on them is held to the text layer (engines/textlayer_check.py).

Routing is decided on real pages of the evaluation corpus. The model's output is synthetic: what a faithful
DeepSeek-OCR-2 would write for the page (its text layer's blocks as grounded markdown), then that output with
an invented word, a skipped block, a block over empty paper, a formula and a table, right and wrong.
"""

from __future__ import annotations

import pymupdf
import pytest

from docground.ingest.engines.base import PageEngine
from docground.ingest.engines.deepseek_ocr2 import DeepseekOcr2Engine, Generation
from docground.ingest.engines.deepseek_ocr2.output import BOX_SCALE
from docground.ingest.engines.factory import build_router
from docground.ingest.engines.textlayer import TextLayerEngine
from docground.ingest.engines.textlayer_check import characters, model_characters
from docground.ingest.pipeline import PageParser
from docground.ingest.providers.pdf import PdfSource
from docground.ingest.routing import Router
from docground.ingest.schema import BlockKind, PageLayout, PageOutcome
from docground.settings import Settings

from .conftest import corpus_file

LABELS = {BlockKind.title: "title", BlockKind.heading: "sub_title", BlockKind.text: "text", BlockKind.list: "list",
          BlockKind.table: "table", BlockKind.caption: "caption", BlockKind.formula: "equation",
          BlockKind.figure: "image", BlockKind.footnote: "footnote", BlockKind.page_header: "header",
          BlockKind.page_footer: "footer", BlockKind.page_number: "page_number", BlockKind.code: "code"}


class Scripted:
    """A DeepSeek-OCR-2 backend that answers every page with the text it is given."""

    name = "scripted"

    def __init__(self, text: str):
        self.text = text
        self.pages = 0

    def generate(self, requests):
        requests = list(requests)
        self.pages += len(requests)
        return [Generation(text=self.text, finish_reason="stop", tokens=len(self.text) // 3) for _ in requests]

    def close(self):
        pass


class CpuOcr(PageEngine):
    """A CPU OCR engine: reads no structure, so born-digital pages never come to it."""

    name, version = "cpu-ocr", "1"

    def parse_many(self, pages, document_id):
        return [PageLayout(page=p.number, width_pt=p.width_pt, height_pt=p.height_pt, engine=self.name,
                           engine_version=self.version) for p in pages]


def corpus_page(relative: str, number: int):
    source = PdfSource(corpus_file(relative).read_bytes())
    return source.page(number)


def grounded(blocks) -> str:
    """The blocks as DeepSeek-OCR-2 writes a page: a ref and det header (boxes 0..999), then the markdown."""
    out = []
    for b in blocks:
        box = ", ".join(str(round(v * BOX_SCALE)) for v in b.bbox)
        out.append(f"<|ref|>{LABELS[b.kind]}<|/ref|><|det|>[[{box}]]<|/det|>\n{b.markdown}\n")
    return "\n".join(out)


def vision_router(text: str, vlm_pages: str = "complex") -> tuple[Router, Scripted]:
    backend = Scripted(text)
    return Router(ocr=DeepseekOcr2Engine(backend), vlm_pages=vlm_pages), backend


# ---- routing: which born-digital pages go to the vision model, and why

STRUCTURED = [  # (corpus page, what the text layer cannot give)
    ("docs/academic/mineru_demo2_ieee_stereo.pdf", 3, "formulas"),
    ("groundtruth/olmocr_bench_sample/pdfs/math_2503_04086.pdf", 1, "formulas"),
    ("docs/academic/olmocr_lots_of_sci_tables.pdf", 4, "a table without ruling lines"),
    ("docs/tables/camelot_budget_2014-15.pdf", 1, "a table without ruling lines"),
    ("docs/forms/irs_f1040nr.pdf", 1, "a form"),
    ("docs/academic/olmocr_tobacco_control_2004.pdf", 2, "a multi-column page with figures"),
]
PLAIN = [  # pages the text layer reads well: prose in one or two columns, a ruled table
    ("docs/academic/deepseek_ocr2_paper.pdf", 2),
    ("docs/academic/olmocr_pdftotext_two_column_issue.pdf", 1),
    ("docs/tables/pdfplumber_senate-expenditures.pdf", 1),
    ("docs/slides/olmocr_slideshow_pto_meeting.pdf", 2),
]


@pytest.mark.parametrize(("relative", "number", "why"), STRUCTURED)
def test_complex_pages_go_to_the_vision_model_saying_why(relative, number, why):
    page = corpus_page(relative, number)
    router, _ = vision_router("")
    route = router.route(page)
    assert route.engine is router.ocr and route.layer_checked
    assert route.reason.startswith(why) and "text layer checks the characters" in route.reason
    needed, _ = vision_router("", "needed")
    assert needed.route(page).engine is needed.textlayer  # today's routing: the text layer reads it


@pytest.mark.parametrize(("relative", "number"), PLAIN)
def test_plain_born_digital_pages_keep_their_text_layer(relative, number):
    page = corpus_page(relative, number)
    router, _ = vision_router("")
    assert router.route(page).engine is router.textlayer
    everything, _ = vision_router("", "all")
    route = everything.route(page)
    assert route.engine is everything.ocr and "DOCGROUND_VLM_PAGES=all" in route.reason


def test_an_engine_that_reads_no_structure_never_gets_born_digital_pages():
    page = corpus_page(*STRUCTURED[0][:2])
    router = Router(ocr=CpuOcr(), vlm_pages="all")
    assert router.route(page).engine is router.textlayer and router.policy == ""


def test_the_policy_comes_from_settings_and_changes_the_pipeline_fingerprint(monkeypatch):
    assert Settings().vlm_pages == "complex"
    monkeypatch.setenv("DOCGROUND_VLM_PAGES", "all")
    assert Settings().vlm_pages == "all"
    with pytest.raises(ValueError):
        Router(ocr=None, vlm_pages="sometimes")
    assert build_router(Settings(ocr_backend="none")).vlm_pages == "needed"  # no vision model: nothing to send
    versions = {policy: PageParser(vision_router("", policy)[0]).engine_versions for policy in ("needed", "all")}
    assert versions["needed"] != versions["all"] and "vlm_pages=all" in versions["all"]


# ---- the model's output on a born-digital page, held to its text layer

PAGE = ("docs/academic/olmocr_lots_of_sci_tables.pdf", 4)  # a table without rules, headings, prose


def faithful(page) -> list:
    """The page's blocks as its text layer has them: what a faithful model would find."""
    return TextLayerEngine().parse(page, "ref").blocks


def checked(page, text: str, vlm_pages: str = "complex") -> PageLayout:
    router, backend = vision_router(text, vlm_pages)
    [layout] = router.parse_many([page], "doc")
    assert backend.pages >= 1  # the page went to the model
    return layout


def text_of(layout: PageLayout) -> str:
    return " ".join(b.markdown for b in layout.blocks)


def test_a_faithful_reading_keeps_the_models_blocks_and_snaps_them_to_the_text_layer():
    page = corpus_page(*PAGE)
    blocks = faithful(page)
    layout = checked(page, grounded(blocks))
    assert layout.engine == "deepseek-ocr2" and layout.outcome is PageOutcome.READ
    assert f"text layer check: {len(blocks)} blocks kept the model's text, 0 took the text layer's" in layout.reason
    assert layout.reason.startswith("a table without ruling lines")
    assert [b.kind for b in layout.blocks] == [b.kind for b in blocks]
    for ours, ref in zip(layout.blocks, blocks, strict=True):  # boxes from the layer's words, not the 0..999 grid
        assert max(abs(a - r) for a, r in zip(ours.bbox, ref.bbox, strict=True)) < 0.03
    prose = [b for b in layout.blocks if b.kind is BlockKind.text and len(b.lines) > 1]
    assert prose and all(0 <= ln.start < ln.end <= len(b.markdown) for b in prose for ln in b.lines)


def test_an_invented_word_gives_the_block_the_text_layers_text():
    page = corpus_page(*PAGE)
    blocks = faithful(page)
    victim = max((b for b in blocks if b.kind is BlockKind.text), key=lambda b: len(b.markdown))
    words = victim.markdown.split()
    words[len(words) // 2] = "Zyxwquartz42"
    victim.markdown = " ".join(words)
    layout = checked(page, grounded(blocks))
    assert "Zyxwquartz42" not in text_of(layout)
    assert "1 took the text layer's" in layout.reason
    layer = characters(pymupdf.open(stream=page.pdf_page.parent.tobytes()).load_page(page.number - 1).get_text())
    assert not model_characters(text_of(layout)) - layer  # no character the page does not have


def test_a_skipped_block_comes_back_from_the_text_layer_and_empty_paper_gives_nothing():
    page = corpus_page(*PAGE)
    blocks = faithful(page)
    skipped = max((b for b in blocks if b.kind is BlockKind.text), key=lambda b: len(b.markdown))
    kept = [b for b in blocks if b is not skipped]
    invented = kept[0].model_copy(update={"markdown": "A paragraph over empty paper.", "bbox": (0.0, 0.0, 0.02, 0.02),
                                          "kind": BlockKind.text})
    layout = checked(page, grounded([invented, *kept]))
    assert "over empty paper" not in text_of(layout)
    assert "1 without text layer under them dropped" in layout.reason
    every_layer_char = characters(" ".join(b.markdown for b in blocks))
    assert not every_layer_char - model_characters(text_of(layout))  # nothing of the page lost
    assert " ".join(skipped.markdown.split()[:6]) in text_of(layout)


def formula_page() -> tuple[PdfSource, object]:
    doc = pymupdf.open()
    pdf_page = doc.new_page(width=595, height=842)
    pdf_page.insert_text((72, 100), "Energy and mass are related as the following law states clearly.", fontsize=11)
    pdf_page.insert_text((200, 160), "E = mc2 + ab", fontsize=14)
    pdf_page.insert_text((72, 220), "The constants are measured in consistent units of the system.", fontsize=11)
    source = PdfSource(doc.tobytes())
    return source, source.page(1)


def formula_output(latex: str, page) -> str:
    layer = TextLayerEngine().parse(page, "ref").blocks
    out = []
    for b in layer:
        label, text = ("equation", latex) if "mc" in b.markdown else ("text", b.markdown)
        box = ", ".join(str(round(v * BOX_SCALE)) for v in b.bbox)
        out.append(f"<|ref|>{label}<|/ref|><|det|>[[{box}]]<|/det|>\n{text}\n")
    return "\n".join(out)


def test_a_formula_the_text_layer_agrees_with_stays_latex_and_one_it_contradicts_does_not():
    _, page = formula_page()
    right = checked(page, formula_output(r"\[E = m c^{2} + \mathrm{a} \, b\]", page), "all")
    [formula] = [b for b in right.blocks if b.kind is BlockKind.formula]
    assert r"c^{2}" in formula.markdown and "0 took the text layer's" in right.reason
    wrong = checked(page, formula_output(r"\[E = m c^{3} + a b\]", page), "all")
    assert not [b for b in wrong.blocks if b.kind is BlockKind.formula]
    assert "E = mc2 + ab" in text_of(wrong) and "1 took the text layer's" in wrong.reason
    # LaTeX names of Greek letters and operators are the characters they stand for
    assert model_characters(r"\alpha_{i} + \sin\theta") == characters("αi + sin θ")


def test_a_table_keeps_its_structure_only_while_its_cells_agree():
    page = corpus_page(*PAGE)
    blocks = faithful(page)
    table = next(b for b in blocks if b.kind is BlockKind.table)
    good = checked(page, grounded(blocks))
    assert any(b.kind is BlockKind.table for b in good.blocks)
    digits = [i for i, ch in enumerate(table.markdown) if ch.isdigit()]
    table.markdown = table.markdown[:digits[0]] + str((int(table.markdown[digits[0]]) + 1) % 10) \
        + table.markdown[digits[0] + 1:]  # one wrong digit
    bad = checked(page, grounded(blocks))
    assert not any(b.kind is BlockKind.table for b in bad.blocks) and "1 took the text layer's" in bad.reason


def test_pages_the_model_fails_on_keep_their_text_layer_unchecked():
    page = corpus_page(*PAGE)
    layout = checked(page, "and again " * 200)  # a loop: every rung fails, the page falls back
    assert layout.engine == "textlayer" and layout.outcome is PageOutcome.FALLBACK
    assert "text layer check:" not in layout.reason

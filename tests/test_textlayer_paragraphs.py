"""Paragraphs and sentences as a reader sees them: the lines of one paragraph form one block across
font changes (inline code, math, emphasis, superscripts, small capitals), while headings, code blocks,
list items and captions stay blocks of their own; and nothing readable on a line is dropped."""

import pymupdf

from docground.ingest.chunking import Chunker, ChunkerConfig
from docground.ingest.engines.textlayer import TextLayerEngine
from docground.ingest.providers import open_source
from docground.ingest.schema import BlockKind
from docground_testing.pdfgen import styled_pdf


def blocks_of(data: bytes):
    page = next(iter(open_source(data).pages()))
    return TextLayerEngine().parse(page, "doc").blocks


def text_blocks(data: bytes) -> list[str]:
    return [b.markdown for b in blocks_of(data) if b.kind == BlockKind.text]


def test_inline_code_stays_inside_its_paragraph():
    lines = [
        [("The service reads its settings at start-up from the file at", "body")],
        [("/usr/local/share/docground/configs/settings.toml", "mono")],
        [("unless the environment names another one; it then logs the", "body")],
        [("module ", "body"), ("docground.ingest.engines", "mono"), (" at the debug level.", "body")],
    ]
    sentence = ("The service reads its settings at start-up from the file at "
                "/usr/local/share/docground/configs/settings.toml unless the environment names another one; "
                "it then logs the module docground.ingest.engines at the debug level.")
    assert text_blocks(styled_pdf(lines)) == [sentence]


def test_a_line_mostly_in_code_font_stays_inside_its_sentence():
    lines = [
        [("Model weights and the evaluation code are publicly accessible at", "body")],
        [("see ", "body"), ("https://example.org/docground/releases/v1.2/weights", "mono")],
        [("and may be used under the terms of the licence.", "body")],
    ]
    assert len(text_blocks(styled_pdf(lines))) == 1


def test_emphasis_math_superscripts_and_small_capitals_stay_inside_their_paragraph():
    lines = [
        [("Retrieval improves markedly when the index keeps", "body")],
        [("whole grounded paragraphs together", "bold"), (" as", "body")],
        [("reported in earlier work", "body"), ("12", "sup"), (" on the same corpus, where", "body")],
        [("f(x) = ax + b", "italic"), (" gives the score of each candidate", "body")],
        [("passage. The ", "body"), ("FOR FURTHER INFORMATION CONTACT", "small")],
        [("Section of the notice names who holds the data.", "body")],
    ]
    blocks = text_blocks(styled_pdf(lines))
    assert len(blocks) == 1, blocks
    assert blocks[0].startswith("Retrieval improves markedly when the index keeps whole grounded paragraphs")
    assert blocks[0].endswith("CONTACT Section of the notice names who holds the data.")


def test_headings_code_blocks_lists_and_captions_stay_apart():
    lines = [
        [("Installing the service", "heading")],
        [("The installer needs a recent Python and runs these commands:", "body")],
        [("python -m venv .venv", "mono")],
        [(".venv/bin/pip install docground", "mono")],
        [(".venv/bin/docground serve --port 8000", "mono")],
        [("After that the service answers on port 8000 of the machine.", "body")],
        [("1. Upload the documents of a knowledge base.", "body")],
        [("2. Ask questions about them and follow the citations.", "body")],
        [("Figure 1: The upload page of the service, with two documents.", "small")],
    ]
    blocks = [(b.kind, b.markdown) for b in blocks_of(styled_pdf(lines))]
    assert blocks == [
        (BlockKind.title, "# Installing the service"),
        (BlockKind.text, "The installer needs a recent Python and runs these commands:"),
        (BlockKind.code, "```\npython -m venv .venv\n.venv/bin/pip install docground\n"
                         ".venv/bin/docground serve --port 8000\n```"),
        (BlockKind.text, "After that the service answers on port 8000 of the machine."),
        (BlockKind.list, "1. Upload the documents of a knowledge base."),
        (BlockKind.list, "2. Ask questions about them and follow the citations."),
        (BlockKind.caption, "Figure 1: The upload page of the service, with two documents."),
    ], blocks


def test_a_bold_heading_line_stays_apart_from_its_body():
    lines = [
        [("Results", "bold")],
        [("The grounded chunks kept every citation on its page and line.", "body")],
    ]
    kinds = [(b.kind, b.markdown) for b in blocks_of(styled_pdf(lines))]
    assert kinds == [(BlockKind.heading, "#### Results"),
                     (BlockKind.text, "The grounded chunks kept every citation on its page and line.")]


def test_symbols_nil_cells_and_bullets_set_apart_reach_chunks_and_leaders_do_not():
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 100), "\u00b7", fontname="symb", fontsize=12)  # a bullet, a line of its own
    page.insert_text((90, 100), "First item of the list", fontsize=12)
    page.insert_text((72, 160), "Applicants", fontsize=10)
    page.insert_text((300, 160), "...", fontsize=10)  # a nil cell: no letters, still content
    page.insert_text((72, 175), "Refusals", fontsize=10)
    page.insert_text((300, 175), "-", fontsize=10)
    page.insert_text((72, 220), ". . . . . . . . . . . . . . . . . . . .", fontsize=10)  # a drawn rule
    page.insert_text((72, 260), "{", fontname="cour", fontsize=10)
    layout = TextLayerEngine().parse(next(iter(open_source(doc.tobytes()).pages())), "doc")
    text = Chunker(ChunkerConfig(), lambda ts: [len(t.split()) for t in ts]).chunk([layout], "doc", "fp")[0].text
    assert "- First item of the list" in text  # the bullet joined its item, which became a list
    assert "..." in text and "-" in text.replace("- First", "") and "{" in text
    assert ". . . ." not in text

"""A ready document's content over HTTP (markdown, layout JSON, figures, chunks) and from
`docground export`: the renderer `docground convert` uses, checked against what the PDF was drawn with."""

from __future__ import annotations

import io
import json
import re

import pymupdf
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from docground.api.app import create_app
from docground.api.cli import app as cli
from docground.api.models import DocumentChunks, DocumentLayout
from docground.ingest.schema import BlockKind
from docground_testing.live_server import no_rate_limit, upload, wait_document
from docground_testing.pdfgen import scan_with_red_box, two_column_pdf


def report_pdf() -> tuple[bytes, list[dict]]:
    data, lines = two_column_pdf(pages=3, seed=41, header="Quarterly grounded report")
    doc = pymupdf.open(stream=data)
    doc[1].insert_image(pymupdf.Rect(100, 600, 400, 800), stream=scan_with_red_box())
    return doc.tobytes(), lines


@pytest.fixture
def client(settings, service):
    no_rate_limit(settings)
    with TestClient(create_app(settings, service)) as c:
        yield c


@pytest.fixture
def ready(client):
    data, lines = report_pdf()
    document_id = upload(client, "kb", data, "report.pdf").json()["document_id"]
    assert wait_document(client, document_id)["status"] == "ready"
    return document_id, lines


def test_markdown_holds_every_line_in_reading_order_with_page_markers_and_figures(client, ready):
    document_id, lines = ready
    r = client.get(f"/v1/documents/{document_id}/content", params={"format": "markdown"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown")
    markdown = r.text
    assert [int(n) for n in re.findall(r"<!-- page (\d+) -->", markdown)] == [1, 2, 3]
    places = [markdown.find(line["text"]) for line in lines]
    assert min(places) >= 0 and places == sorted(places)
    assert "Quarterly grounded report" not in markdown  # the running header is furniture
    [figure_url] = re.findall(r"!\[figure\]\(([^)]+)\)", markdown)
    assert markdown.index("<!-- page 2 -->") < markdown.index(figure_url) < markdown.index("<!-- page 3 -->")
    png = client.get(figure_url)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    crop = Image.open(io.BytesIO(png.content))
    assert crop.getpixel((crop.width // 2, crop.height // 2)) == (255, 0, 0)


def test_layout_json_has_both_coordinate_forms_and_each_pages_engine(client, ready):
    document_id, lines = ready
    r = client.get(f"/v1/documents/{document_id}/content", params={"format": "json"})
    assert r.status_code == 200
    layout = DocumentLayout.model_validate(r.json())
    assert [p.page for p in layout.pages] == [1, 2, 3]
    assert all(p.engine == "textlayer" and p.reason == "text layer" for p in layout.pages)
    kinds = {b.kind for p in layout.pages for b in p.blocks}
    assert BlockKind.page_header in kinds and BlockKind.figure in kinds
    for page in layout.pages:
        assert (page.width_pt, page.height_pt) == (595.0, 842.0)
        for block in page.blocks:
            assert 0 <= block.bbox[0] <= block.bbox[2] <= 1 and 0 <= block.bbox[1] <= block.bbox[3] <= 1
            x0, y0, x1, y1 = block.bbox
            assert block.bbox_pt == pytest.approx((x0 * 595, y0 * 842, x1 * 595, y1 * 842), abs=0.01)
    for line in lines:  # every drawn line lies in a line box of its page, in points
        boxes = [ln.bbox_pt for b in layout.pages[line["page"] - 1].blocks for ln in b.lines]
        cx, cy = (line["bbox"][0] + line["bbox"][2]) / 2, (line["bbox"][1] + line["bbox"][3]) / 2
        assert any(x0 <= cx <= x1 and y0 <= cy <= y1 for x0, y0, x1, y1 in boxes), line["text"]
    [figure] = [b for p in layout.pages for b in p.blocks if b.kind == BlockKind.figure]
    assert figure.figure == f"/v1/documents/{document_id}/figures/{figure.id}"


def test_chunks_are_the_indexed_chunks_with_their_spans(client, service, ready):
    document_id, lines = ready
    r = client.get(f"/v1/documents/{document_id}/chunks")
    assert r.status_code == 200
    chunks = DocumentChunks.model_validate(r.json()).chunks
    assert len(chunks) == service.store("kb").count(document_id) > 1
    assert [c.index for c in chunks] == list(range(len(chunks)))
    hits = service.retrieve("kb", lines[30]["text"], top_k=3)
    assert {h.id for h in hits} <= {c.chunk_id for c in chunks}
    assert hits[0].payload["text"] == next(c.text for c in chunks if c.chunk_id == hits[0].id)
    text = "\n".join(c.text for c in chunks)
    assert all(line["text"] in text for line in lines)
    for chunk in chunks:
        for span in chunk.spans:
            x0, y0, x1, y1 = span.bbox
            assert span.bbox_pt == pytest.approx((x0 * 595, y0 * 842, x1 * 595, y1 * 842), abs=0.01)
            assert 0 <= span.char_start < span.char_end <= len(chunk.text)


def test_missing_documents_figures_and_formats_are_refused(client, ready):
    document_id, _ = ready
    assert client.get("/v1/documents/nope/content").status_code == 404
    assert client.get("/v1/documents/nope/chunks").status_code == 404
    assert client.get(f"/v1/documents/{document_id}/figures/{document_id}-p1-b999").status_code == 404
    assert client.get(f"/v1/documents/{document_id}/figures/..%2F..%2Foriginal").status_code == 404
    assert client.get(f"/v1/documents/{document_id}/content", params={"format": "docx"}).status_code == 422


def test_export_prints_what_the_api_answers(client, service, ready):
    document_id, lines = ready
    api_markdown = client.get(f"/v1/documents/{document_id}/content").text
    home = str(service.settings.home)
    md = CliRunner().invoke(cli, ["export", document_id, "--format", "md", "--home", home])
    assert md.exit_code == 0, md.output
    # the same markdown; figures link to their crops on disk instead of the API
    [crop] = re.findall(r"!\[figure\]\(([^)]+)\)", md.stdout)
    image = Image.open(crop)
    assert image.getpixel((image.width // 2, image.height // 2)) == (255, 0, 0)
    api_link = re.search(r"!\[figure\]\(([^)]+)\)", api_markdown)[1]
    assert md.stdout == api_markdown.replace(api_link, crop)

    as_json = CliRunner().invoke(cli, ["export", document_id, "--format", "json", "--home", home])
    assert as_json.exit_code == 0, as_json.output
    exported = DocumentLayout.model_validate(json.loads(as_json.stdout))
    api_layout = DocumentLayout.model_validate(client.get(f"/v1/documents/{document_id}/content",
                                                          params={"format": "json"}).json())
    assert exported.model_dump(exclude={"pages": {"__all__": {"blocks": {"__all__": {"figure"}}}}}) == \
        api_layout.model_dump(exclude={"pages": {"__all__": {"blocks": {"__all__": {"figure"}}}}})

    missing = CliRunner().invoke(cli, ["export", "no-such-document", "--home", home])
    assert missing.exit_code == 2 and "does not exist" in missing.output

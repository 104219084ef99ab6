"""Office, web and text documents: each format is made here (LibreOffice writes DOCX, DOC, RTF, ODT, PPTX,
PPT, ODP, XLSX, XLS and ODS from flat ODF; HTML, Markdown and text are written directly), ingested through
the service, and a question about its second page must cite that page with the quote under its boxes in
the PDF kept beside the original. Bad Office files get clear errors; macros and links never run or load.

Nothing here is skipped: without LibreOffice, or without the module one format needs, these tests fail.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import re
import shutil
import subprocess
import tempfile
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msoffcrypto.format.ooxml
import pymupdf
import pytest
from PIL import Image

from docground.errors import ConversionFailed, EncryptedFile, UnsupportedFileType
from docground.ingest.pipeline import document_id
from docground.ingest.providers import PageLimits, sniff_kind
from docground.ingest.providers.office import convert
from docground_testing.citecheck import quote_under_boxes
from docground_testing.live_server import upload, wait_document
from docground_testing.service_fixtures import module_service_and_client

pytestmark = pytest.mark.timeout(600)

ODF = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
       'xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" '
       'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
       'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
       'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
       'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
       'xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0" office:version="1.2"')

# Three pages each: the question is about the second page's sentence.
CHAPTERS = [
    ("Rivers of Europe", "The Danube flows through ten countries before it reaches the Black Sea."),
    ("Trade on the Rhine", "Barges on the Rhine carry coal and grain past the cathedral of Cologne."),
    ("Mills of Bohemia", "The Vltava once turned the water mills of the old town of Prague."),
]
SLIDES = ["Apples from Normandy are pressed into cider every autumn.",
          "The lighthouse keeper on Skellig Michael writes down every passing ship in his log.",
          "Salt from the Guerande marshes is raked by hand in the summer."]
SHEETS = [("Bakery", "Quarterly revenue of the bakery rose by a fifth in spring."),
          ("Orchard", "The orchard near Rouen sold its cider to seven villages."),
          ("Dairy", "The dairy cooperative opened a cheese cellar in the valley.")]
HARBOUR = "In March a winter storm broke the north pier of Dunmore harbour."
# format: (question, words the cited quote holds)
QUESTIONS = {
    "writer": ("What do barges on the Rhine carry past Cologne?", "Barges on the Rhine carry coal and grain"),
    "impress": ("Who writes down every passing ship in a log?", "lighthouse keeper on Skellig Michael"),
    "calc": ("How many villages did the orchard near Rouen sell cider to?", "sold its cider to seven villages"),
    "harbour": ("What broke the north pier of Dunmore harbour?", "storm broke the north pier of Dunmore harbour"),
}
# format: (family of its content and question, what LibreOffice writes it with from that family's source)
FORMATS = {
    "docx": ("writer", "docx:MS Word 2007 XML"), "doc": ("writer", "doc:MS Word 97"),
    "rtf": ("writer", "rtf:Rich Text Format"), "odt": ("writer", "odt:writer8"),
    "pptx": ("impress", "pptx:Impress MS PowerPoint 2007 XML"), "ppt": ("impress", "ppt:MS PowerPoint 97"),
    "odp": ("impress", "odp:impress8"),
    "xlsx": ("calc", "xlsx:Calc MS Excel 2007 XML"), "xls": ("calc", "xls:MS Excel 97"), "ods": ("calc", "ods:calc8"),
    "html": ("writer", None), "md": ("harbour", None), "txt": ("harbour", None),
}


# ---- the documents, made once for the module
def flat_text() -> bytes:
    pages = []
    for i, (title, sentence) in enumerate(CHAPTERS):
        style = ' text:style-name="NewPage"' if i else ""
        pages.append(f'<text:h{style} text:outline-level="1">{title}</text:h><text:p>{sentence}</text:p>'
                     f"<text:p>Chapter {i + 1} of the survey of European waterways.</text:p>")
    return (f'<?xml version="1.0" encoding="UTF-8"?><office:document {ODF} '
            'office:mimetype="application/vnd.oasis.opendocument.text"><office:automatic-styles>'
            '<style:style style:name="NewPage" style:family="paragraph">'
            '<style:paragraph-properties fo:break-before="page"/></style:style></office:automatic-styles>'
            f'<office:body><office:text>{"".join(pages)}</office:text></office:body></office:document>').encode()


def flat_presentation() -> bytes:
    slides = "".join(f'<draw:page draw:name="slide{i}"><draw:frame svg:x="2cm" svg:y="3cm" svg:width="22cm" '
                     f'svg:height="6cm"><draw:text-box><text:p>{s}</text:p></draw:text-box></draw:frame></draw:page>'
                     for i, s in enumerate(SLIDES))
    return (f'<?xml version="1.0" encoding="UTF-8"?><office:document {ODF} '
            'office:mimetype="application/vnd.oasis.opendocument.presentation">'
            f"<office:body><office:presentation>{slides}</office:presentation></office:body></office:document>"
            ).encode()


def flat_spreadsheet() -> bytes:
    sheets = "".join(f'<table:table table:name="{name}"><table:table-row><table:table-cell office:value-type="string">'
                     f"<text:p>{sentence}</text:p></table:table-cell></table:table-row></table:table>"
                     for name, sentence in SHEETS)
    return (f'<?xml version="1.0" encoding="UTF-8"?><office:document {ODF} '
            'office:mimetype="application/vnd.oasis.opendocument.spreadsheet">'
            f"<office:body><office:spreadsheet>{sheets}</office:spreadsheet></office:body></office:document>"
            ).encode()


def web_page() -> bytes:
    breaks = ["", ' style="page-break-before: always"', ' style="page-break-before: always"']
    sections = "".join(f"<h1{brk}>{title}</h1><p>{sentence}</p>" for brk, (title, sentence) in zip(breaks, CHAPTERS))
    return ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Waterways</title>'
            '<script>document.write("scripts never run")</script></head>'
            f"<body>{sections}</body></html>").encode()


def harbour_log() -> list[str]:
    """Two pages of log entries and then the storm: the answer lies on a later page."""
    entries = [f"Entry {n}: the tide came in at {5 + n % 7} o'clock and {n % 4 + 2} boats went out to fish."
               for n in range(1, 90)]
    return entries + [HARBOUR, "The pier was rebuilt by the following summer."]


def markdown_file() -> bytes:
    lines = harbour_log()
    return ("# Harbour log\n\n" + "\n\n".join(lines[:-2]) + "\n\n## The storm\n\n**" + lines[-2] + "** "
            + lines[-1] + "\n").encode()


def text_file() -> bytes:
    return ("HARBOUR LOG\n\n" + "\n".join(harbour_log()) + "\n").encode()


def libreoffice_writes(sources: dict[str, bytes], target: str, folder: Path) -> dict[str, bytes]:
    """LibreOffice's own export of each source file as `target` (e.g. 'docx:MS Word 2007 XML')."""
    folder.mkdir(parents=True)
    for name, data in sources.items():
        (folder / name).write_bytes(data)
    soffice = shutil.which("soffice")
    assert soffice, "LibreOffice (soffice) is not installed: `make install`"
    done = subprocess.run([soffice, f"-env:UserInstallation={(folder / 'profile').as_uri()}", "--headless",
                           "--norestore", "--convert-to", target, "--outdir", str(folder / "out"), *sources],
                          cwd=folder, capture_output=True, text=True, timeout=300)
    suffix = target.split(":")[0]
    written = {Path(name).stem: folder / "out" / f"{Path(name).stem}.{suffix}" for name in sources}
    missing = [str(p) for p in written.values() if not p.is_file()]
    assert not missing, f"LibreOffice wrote no {suffix} (is its filter installed?): {done.stdout}{done.stderr}"
    return {stem: path.read_bytes() for stem, path in written.items()}


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> dict[str, bytes]:
    """Every format, made once: LibreOffice's exports run three at a time."""
    folder = tmp_path_factory.mktemp("office-sources")
    sources = {"writer": {"source.fodt": flat_text()}, "impress": {"source.fodp": flat_presentation()},
               "calc": {"source.fods": flat_spreadsheet()}}
    exports = {kind: (sources[family], target) for kind, (family, target) in FORMATS.items() if target}
    with ThreadPoolExecutor(3) as pool:
        made = {kind: pool.submit(libreoffice_writes, srcs, target, folder / kind)
                for kind, (srcs, target) in exports.items()}
        files = {kind: future.result()["source"] for kind, future in made.items()}
    return {**files, "html": web_page(), "md": markdown_file(), "txt": text_file()}


service, client = module_service_and_client("office", rate_limit_per_minute=0)


@pytest.fixture(scope="module")
def ingested(service, documents) -> dict[str, str]:
    """Each format in a knowledge base of its own: format -> document id."""
    ids = {}
    for kind, data in documents.items():
        result = service.ingest(f"office-{kind}", f"waterways.{kind}", data)
        assert result.status == "ready", (kind, result.error_code, result.error)
        ids[kind] = result.document_id
    return ids


def page_holding(pdf: bytes, words: str) -> list[int]:
    doc = pymupdf.open(stream=pdf, filetype="pdf")
    return [page.number + 1 for page in doc if words in " ".join(page.get_text().split())]


# ---- each format: recognised, converted once, kept, and cited on the right page
@pytest.mark.parametrize("kind", FORMATS)
def test_each_format_is_recognised_by_its_content(kind, documents):
    assert sniff_kind(documents[kind]) == kind
    assert sniff_kind(documents[kind][:8192]) == kind  # the first bytes are enough (`docground ingest FOLDER`)


@pytest.mark.parametrize("kind", FORMATS)
def test_a_question_about_page_two_cites_page_two_with_the_quote_under_its_box(kind, service, documents, ingested,
                                                                               client):
    data, doc_id = documents[kind], ingested[kind]
    kb = f"office-{kind}"
    doc = service.registry.document(doc_id)
    assert doc.kind == kind and doc_id == document_id(kb, hashlib.sha256(data).hexdigest())  # identity: the upload
    blobs = service.blob_dir(doc_id)
    assert (blobs / f"original.{kind}").read_bytes() == data  # the original is kept as uploaded
    rendition = (blobs / "original.pdf").read_bytes()  # and beside it the PDF its pages are read from
    question, words = QUESTIONS[FORMATS[kind][0]]
    [expected] = page_holding(rendition, words)
    assert expected >= 2 and doc.pages_total == pymupdf.open(stream=rendition, filetype="pdf").page_count

    response = service.query(kb, question, mode="extractive")
    cited = [c for c in response.citations if words in " ".join(c.quote.split())]
    assert cited, (response.answer, [(c.page, c.quote) for c in response.citations])
    for citation in cited:
        assert citation.page == expected and citation.boxes
        assert quote_under_boxes(rendition, citation), (citation.quote, citation.boxes)

    image = client.get(f"/v1/documents/{doc_id}/pages/{expected}/image", params={"dpi": 50})
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"


@pytest.mark.parametrize("data,kind", [
    (b"Minutes of the meeting\n\nThe board approved the budget.\n", "txt"),
    (b"BMW annual report: the bitmap signature is two letters.\n", "txt"),
    ("Caf\u00e9 au lait, \u62a5\u544a\n".encode("utf-16"), "txt"),
    ("\ufeffWith a byte-order mark\n".encode(), "txt"),
    (b"# Title\n\nSome *text*.\n", "md"),
    (b"Intro\n\n| a | b |\n|---|---|\n| 1 | 2 |\n", "md"),
    (b"See [the docs](https://example.org/docs) for more.\n", "md"),
    (b"  <!-- saved page -->\n<!DOCTYPE html><html><body><p>x</p></body></html>", "html"),
    (b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><body>x</body></html>', "html"),
    ('<html><head><meta charset="windows-1252"></head><body>caf\u00e9</body></html>'.encode("cp1252"), "html"),
])
def test_web_and_text_are_recognised_by_their_content(data, kind):
    assert sniff_kind(data) == kind


@pytest.mark.parametrize("data,message", [
    ("Caf\u00e9 cr\u00e8me, na\u00efve fa\u00e7ade\n".encode("cp1252"), "not Unicode"),
    (b"\x00\x01\x02\x03 binary", "unknown type"),
    (b"PK\x03\x04" + b"\x00" * 100, "application/zip"),
])
def test_what_is_not_unicode_text_is_refused_with_the_reason(data, message):
    with pytest.raises(UnsupportedFileType, match=message):
        sniff_kind(data)


def test_the_same_office_file_again_is_the_same_document_without_a_new_conversion(service, documents, ingested):
    registration = service.register("office-docx", "copy.docx", documents["docx"])
    assert registration.document.id == ingested["docx"] and not registration.created


def test_an_office_file_named_as_a_pdf_is_read_as_what_it_is(client, documents):
    r = upload(client, "office-named", documents["pptx"], "slides.pdf")
    assert r.status_code == 202, r.text
    status = wait_document(client, r.json()["document_id"], timeout_s=120)
    assert status["status"] == "ready" and status["pages_total"] == 3, status


# ---- bad Office files: clear errors, nothing stored
def with_entry(docx: bytes, name: str, data: bytes | None = None, zeros: int = 0) -> bytes:
    """The package with one entry replaced or added: `data`, or `zeros` zero bytes (written in pieces)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(docx)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1
                                                                   ) as dst:
        for entry in src.infolist():
            if entry.filename != name:
                dst.writestr(entry, src.read(entry))
        with dst.open(name, "w", force_zip64=True) as f:
            f.write(data or b"")
            piece = bytes(16 * 2**20)
            for _ in range(zeros // len(piece)):
                f.write(piece)
    return out.getvalue()


def encrypted(docx: bytes) -> bytes:
    out = io.BytesIO()
    msoffcrypto.format.ooxml.OOXMLFile(io.BytesIO(docx)).encrypt("secret", out)
    return out.getvalue()


@pytest.mark.parametrize("case,status,code", [
    ("DOCX cut in half", 422, "corrupt_file"),
    ("DOCX whose document part is not XML", 422, "corrupt_file"),
    ("DOCX with a password", 422, "encrypted_file"),
    ("DOCX that unpacks to 1.1 GiB (ZIP bomb)", 413, "unpacked_too_large"),
])
def test_bad_office_files_are_refused_clearly_and_store_nothing(case, status, code, client, service, documents):
    docx = documents["docx"]
    data = {
        "DOCX cut in half": lambda: docx[:len(docx) // 2],
        "DOCX whose document part is not XML": lambda: with_entry(docx, "word/document.xml", b"\x00\xff not xml"),
        "DOCX with a password": lambda: encrypted(docx),
        "DOCX that unpacks to 1.1 GiB (ZIP bomb)": lambda: with_entry(docx, "word/media/zeros.bin", zeros=1152 * 2**20),
    }[case]()
    r = upload(client, "office-bad", data, "report.docx")
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert r.json()["message"]
    doc_id = document_id("office-bad", hashlib.sha256(data).hexdigest())
    assert service.registry.document(doc_id) is None and not service.blob_dir(doc_id).exists()


def test_a_password_protected_office_file_is_known_before_any_conversion(documents):
    with pytest.raises(EncryptedFile):
        sniff_kind(encrypted(documents["xlsx"]))


# ---- the conversion's own limits: a child process with a time and a memory limit
@pytest.fixture
def own_tempdir(tmp_path, monkeypatch):
    """Conversions of this test make their profiles here, so that what they leave running can be found."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def processes_under(folder: Path) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\x00", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in cmdline:
            found.append(cmdline)
    return found


def test_a_conversion_past_its_time_limit_is_killed_with_everything_it_started(documents, own_tempdir):
    with pytest.raises(ConversionFailed, match="DOCGROUND_CONVERT_TIME_LIMIT_S"):
        convert(documents["docx"], "docx", PageLimits(convert_time_s=0.5))
    assert processes_under(own_tempdir) == []
    assert list(own_tempdir.iterdir()) == []  # the profile and the files are gone too


def test_a_conversion_past_its_memory_limit_fails_clearly(documents, own_tempdir):
    with pytest.raises(ConversionFailed, match="DOCGROUND_CONVERT_MEMORY_MB"):
        convert(documents["docx"], "docx", PageLimits(convert_memory_mb=64))
    assert processes_under(own_tempdir) == []


def test_conversions_run_side_by_side(documents):
    """Each conversion has its own LibreOffice profile: a shared one admits a single process."""
    kinds = ["docx", "pptx", "xlsx", "odt"]
    with ThreadPoolExecutor(len(kinds)) as pool:
        pdfs = list(pool.map(lambda k: convert(documents[k], k, PageLimits()), kinds))
    for kind, pdf in zip(kinds, pdfs, strict=True):
        assert page_holding(pdf, QUESTIONS[FORMATS[kind][0]][1]) == [2], kind


# ---- macros and links: nothing outside the document is ever loaded
class Requests(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self):  # noqa: N802 (the standard library's name)
        Requests.seen.append(self.path)
        buffer = io.BytesIO()
        Image.new("RGB", (40, 40), "red").save(buffer, format="PNG")
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.write(buffer.getvalue())

    def do_OPTIONS(self):  # noqa: N802
        Requests.seen.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def image_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Requests)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_linked_images_are_never_fetched(service, image_server, tmp_path):
    local = tmp_path / "local.png"
    Image.new("RGB", (40, 40), "blue").save(local)
    page = (f'<html><body><p>The annex shows the harbour crane.</p><img src="{image_server}/remote.png" '
            f'width="40" height="40"><img src="{local.as_uri()}" width="40" height="40"></body></html>').encode()
    # LibreOffice keeps both images as links (TargetMode="External") when it writes the DOCX.
    linked = libreoffice_writes({"linked.html": page}, "docx:MS Word 2007 XML", tmp_path / "docx")["linked"]
    assert b'TargetMode="External"' in zipfile.ZipFile(io.BytesIO(linked)).read("word/_rels/document.xml.rels")

    # The attack is live: LibreOffice with its default profile loads both links when it makes a PDF.
    Requests.seen.clear()
    default = libreoffice_writes({"linked.docx": linked}, "pdf", tmp_path / "default")["linked"]
    assert Requests.seen and pymupdf.open(stream=default, filetype="pdf")[0].get_images()

    Requests.seen.clear()
    for kb, name, data in (("links-docx", "linked.docx", linked), ("links-html", "linked.html", page)):
        result = service.ingest(kb, name, data)
        assert result.status == "ready", result.error
        rendition = (service.blob_dir(result.document_id) / "original.pdf").read_bytes()
        assert pymupdf.open(stream=rendition, filetype="pdf")[0].get_images() == [], name
        assert "harbour crane" in pymupdf.open(stream=rendition, filetype="pdf")[0].get_text()
    assert Requests.seen == []


def test_web_pages_lose_scripts_and_keep_their_text(service, ingested):
    rendition = (service.blob_dir(ingested["html"]) / "original.pdf").read_bytes()
    text = " ".join(page.get_text() for page in pymupdf.open(stream=rendition, filetype="pdf"))
    assert "Barges on the Rhine" in text and "scripts never run" not in text and "Waterways" not in text
    assert re.search(r"Rivers of Europe", text)

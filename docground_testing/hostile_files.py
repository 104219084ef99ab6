"""Bad and odd uploads, generated: every file the hostile-input tests send is built here, in memory."""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib

import pymupdf
from PIL import Image

SCRIPT_MARKER = "scripted payload 7f3a"
SECRET_SCRIPT = f"app.alert('{SCRIPT_MARKER}')"
ATTACHMENT_TEXT = b"attachment payload 9c41 must not be indexed"
VISIBLE_TEXT = "Harbour tides recorded by the lighthouse keeper every evening."


def raw_pdf(objects: list[bytes], trailer: str = "/Root 1 0 R") -> bytes:
    """A PDF written object by object (object n is objects[n - 1]), with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} {trailer} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def stream(entries: str, data: bytes) -> bytes:
    return f"<< {entries} /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream"


def text_content(text: str, y: int = 150) -> bytes:
    return f"BT /Helv 10 Tf 20 {y} Td ({text}) Tj ET".encode()


HELVETICA = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def form_bomb_pdf(depth: int = 12, fanout: int = 10, readable_page: bool = False) -> bytes:
    """A page whose form draws a form `fanout` times, `depth` levels deep: fanout**depth strokes from
    about 3 KB (10**12: MuPDF would need days). With `readable_page`, an ordinary page comes first."""
    # objects: 1 catalog, 2 pages, 3 font, 4 bomb page, 5 its content, 6.. forms (6 is the top one),
    # then the readable page
    first_form = 6
    forms = []
    for level in range(depth):
        if level == depth - 1:
            forms.append(stream("/Type /XObject /Subtype /Form /BBox [0 0 200 200]", b"0 0 m 10 10 l S"))
        else:
            inner = f"/Resources << /XObject << /F {first_form + level + 1} 0 R >> >>"
            forms.append(stream(f"/Type /XObject /Subtype /Form /BBox [0 0 200 200] {inner}",
                                b" ".join([b"/F Do"] * fanout)))
    kids = ["4 0 R"]
    extra = []
    if readable_page:
        page_no = first_form + depth
        kids.insert(0, f"{page_no} 0 R")
        extra = [f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents {page_no + 1} 0 R "
                 "/Resources << /Font << /Helv 3 0 R >> >> >>".encode(), stream("", text_content(VISIBLE_TEXT))]
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>".encode(),
        HELVETICA,
        (f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 5 0 R /Resources << /Font << /Helv 3 0 R >> "
         f"/XObject << /Bomb {first_form} 0 R >> >> >>").encode(),
        stream("", text_content("Text above the form bomb") + b" q /Bomb Do Q"),
        *forms, *extra,
    ]
    return raw_pdf(objects)


def huge_image_pdf(width: int = 60_000, height: int = 60_000) -> bytes:
    """A page showing an image that declares width x height pixels; its few compressed bytes would
    inflate to gigabytes of decoded pixels if anything decoded it."""
    pixels = zlib.compress(b"\x00" * 65536, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 300] /Contents 4 0 R "
         b"/Resources << /XObject << /Im 5 0 R >> >> >>"),
        stream("", b"q 300 0 0 300 0 0 cm /Im Do Q"),
        stream(f"/Type /XObject /Subtype /Image /Width {width} /Height {height} /ColorSpace /DeviceGray "
               "/BitsPerComponent 8 /Filter /FlateDecode", pixels),
    ]
    return raw_pdf(objects)


def many_pages_pdf(pages: int) -> bytes:
    """`pages` real page objects sharing one content stream: thousands of pages in a few hundred KB, fast."""
    first_page = 5
    kids = " ".join(f"{first_page + i} 0 R" for i in range(pages))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
               HELVETICA, stream("", text_content("One of very many pages"))]
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R "
            b"/Resources << /Font << /Helv 3 0 R >> >> >>")
    return raw_pdf(objects + [page] * pages)


def poster_pdf(inches: float = 200.0) -> bytes:
    """One page of inches x inches (200 x 200 is the largest a PDF page may be without UserUnit)."""
    doc = pymupdf.open()
    side = inches * 72
    page = doc.new_page(width=side, height=side)
    for i in range(6):
        page.insert_text((side * 0.1, side * (0.2 + 0.1 * i)), f"Poster line {i}: {VISIBLE_TEXT}", fontsize=side / 60)
    return doc.tobytes()


def encrypted_pdf(user_password: bool) -> bytes:
    """AES-256; with a user password nobody can open it without one, without one it opens for anybody
    (the owner password only restricts printing or copying, which a reader may ignore)."""
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), VISIBLE_TEXT, fontsize=11)
    return doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner-secret",
                       user_pw="user-secret" if user_password else None, permissions=0)


def scripted_pdf() -> bytes:
    """Document JavaScript (on open, and in the names tree), a link that runs a script, and an attachment."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), VISIBLE_TEXT, fontsize=11)
    page.insert_text((72, 100), "The second sentence mentions the quay and its cranes.", fontsize=11)
    doc.embfile_add("notes.txt", ATTACHMENT_TEXT, filename="notes.txt")
    script = doc.get_new_xref()
    doc.update_object(script, f"<< /S /JavaScript /JS ({SECRET_SCRIPT}) >>")
    catalog = doc.pdf_catalog()
    doc.xref_set_key(catalog, "OpenAction", f"{script} 0 R")
    tree = doc.get_new_xref()
    doc.update_object(tree, f"<< /Names [(init) {script} 0 R] >>")
    doc.xref_set_key(catalog, "Names/JavaScript", f"{tree} 0 R")
    page.insert_link({"kind": pymupdf.LINK_URI, "from": pymupdf.Rect(72, 60, 300, 76), "uri": "javascript:alert(1)"})
    return doc.tobytes()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A PNG declaring width x height RGB pixels: one compressed row of zeros, repeated by zlib, says
    so in about a kilobyte (decoded: width * height * 3 bytes)."""
    row = b"\x00" * (1 + 3 * width)
    compressor = zlib.compressobj(9)
    body = compressor.compress(row * 8) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def bomb_tiff(width: int = 60_000, height: int = 60_000) -> bytes:
    """A small TIFF whose header claims width x height pixels."""
    buffer = io.BytesIO()
    Image.new("L", (16, 16), 255).save(buffer, format="TIFF", compression="tiff_deflate")
    data = bytearray(buffer.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", data, entry)
        if tag in (256, 257):  # ImageWidth, ImageLength
            value = width if tag == 256 else height
            struct.pack_into("<I" if kind == 4 else "<H", data, entry + 8, value)
    return bytes(data)


def docx_bytes() -> bytes:
    """A minimal Word document (a ZIP with the parts Word looks for)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                   'package/2006/content-types"><Override PartName="/word/document.xml" ContentType="application/'
                   'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')
        z.writestr("word/document.xml", f"<w:document><w:body><w:p>{VISIBLE_TEXT}</w:p></w:body></w:document>")
    return buffer.getvalue()


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("readme.txt", VISIBLE_TEXT * 20)
    return buffer.getvalue()


def random_bytes(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def font_bomb_pdf(inflated_mb: int = 200) -> bytes:
    """Text in an embedded font whose stream inflates to `inflated_mb` MiB from a few hundred KB."""
    font = zlib.compress(b"\x00" * (inflated_mb * 2**20), 9)
    return raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 300] /Contents 4 0 R "
         b"/Resources << /Font << /Helv 5 0 R >> >> >>"),
        stream("", text_content("Text in a font that inflates to hundreds of megabytes")),
        b"<< /Type /Font /Subtype /TrueType /BaseFont /Bomb /FirstChar 32 /LastChar 126 /FontDescriptor 6 0 R >>",
        (b"<< /Type /FontDescriptor /FontName /Bomb /Flags 32 /FontBBox [0 0 1000 1000] /ItalicAngle 0 /Ascent 800 "
         b"/Descent -200 /CapHeight 700 /StemV 80 /FontFile2 7 0 R >>"),
        stream("/Filter /FlateDecode", font),
    ])


def small_pdf(text: str, pages: int = 1) -> bytes:
    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page()
        page.insert_text((72, 72), f"{text} (page {i + 1})", fontsize=11)
        page.insert_text((72, 96), VISIBLE_TEXT, fontsize=11)
    return doc.tobytes()

"""Office, web and text documents: recognised from their content, converted once to PDF by LibreOffice
(ingest/providers/libreoffice.py), then read as that PDF.

The PDF (`rendition`) is kept beside the original (docground/ingestion.py): the engines, the viewer and
the citation boxes all read its pages, and a document is converted once, when it is registered. Before
LibreOffice sees a file, what can be checked without it is: a ZIP package (DOCX, ODT, ...) that would
unpack to more than the limit is refused (a ZIP bomb), as is a password-protected one. What LibreOffice
cannot open is a damaged file, or a password-protected one where its format says so.
"""

from __future__ import annotations

import io
import zipfile

import filetype
import msoffcrypto
import olefile

from docground.errors import CorruptFile, EncryptedFile, UnpackedTooLarge, UnsupportedFileType

from . import libreoffice
from .guard import PageLimits
from .pdf import PdfSource
from .text import to_html

ZIP = b"PK\x03\x04"
COMPOUND = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # OLE compound file: DOC, XLS, PPT, encrypted OOXML
RTF = b"{\\rtf"
# Each converted kind: what people call it, and the LibreOffice module that reads it.
KINDS = {
    "docx": ("Word document (DOCX)", "writer"), "pptx": ("PowerPoint presentation (PPTX)", "impress"),
    "xlsx": ("Excel workbook (XLSX)", "calc"), "odt": ("OpenDocument text (ODT)", "writer"),
    "odp": ("OpenDocument presentation (ODP)", "impress"), "ods": ("OpenDocument spreadsheet (ODS)", "calc"),
    "rtf": ("RTF document", "writer"), "doc": ("Word 97-2003 document (DOC)", "writer"),
    "ppt": ("PowerPoint 97-2003 presentation (PPT)", "impress"), "xls": ("Excel 97-2003 workbook (XLS)", "calc"),
    "html": ("web page (HTML)", "writer"), "md": ("Markdown document", "writer"), "txt": ("text file", "writer"),
}
WEB = frozenset({"html", "md", "txt"})  # made into one sanitized HTML page first (providers/text.py)
OOXML_FOLDERS = {"word/": "docx", "ppt/": "pptx", "xl/": "xlsx"}
ODF_TYPES = {"application/vnd.oasis.opendocument.text": "odt",
             "application/vnd.oasis.opendocument.presentation": "odp",
             "application/vnd.oasis.opendocument.spreadsheet": "ods"}
COMPOUND_STREAMS = {"worddocument": "doc", "workbook": "xls", "book": "xls", "powerpoint document": "ppt"}
MANIFEST = "META-INF/manifest.xml"
MAX_MANIFEST_BYTES = 4 * 2**20


def office_kind(data: bytes) -> str | None:
    """'docx', 'pptx', 'xlsx', 'odt', 'odp', 'ods', 'rtf', 'doc', 'ppt' or 'xls' from the content (it may be
    only the file's first bytes); None for content of no such kind. A compound file that is no Word,
    Excel or PowerPoint document is refused here, and so is an encrypted Office package."""
    if data.startswith(ZIP):
        return _package_kind(data)
    if data.startswith(COMPOUND):
        return _compound_kind(data)
    return "rtf" if data.startswith(RTF) else None


def convert(data: bytes, kind: str, limits: PageLimits) -> bytes:
    """The document as PDF; a DocgroundError says why not."""
    name, component = KINDS[kind]
    if data.startswith(ZIP):
        _check_package(data, name, limits)
    if kind in WEB:
        data, suffix, infilter = to_html(data, kind), "html", "HTML (StarWriter)"  # Writer, not Writer/Web
    else:
        suffix, infilter = kind, None
    try:
        return libreoffice.to_pdf(data, suffix, component, limits, infilter)
    except libreoffice.NotLoaded as exc:
        if kind in ("doc", "xls", "ppt") and _encrypted_compound(data):
            raise EncryptedFile(f"the {name} is password-protected") from exc
        raise CorruptFile(f"the {name} could not be read: it is damaged or not what its content starts as") from exc


class ConvertedSource(PdfSource):
    """A converted document's pages: those of its PDF, made now or kept from its first conversion."""

    def __init__(self, data: bytes, kind: str, limits: PageLimits | None = None, rendition: bytes | None = None):
        limits = limits or PageLimits()
        pdf = rendition if rendition is not None else convert(data, kind, limits)
        super().__init__(pdf, limits)
        self.kind = kind
        self.rendition = pdf


# ---- ZIP packages: DOCX, PPTX, XLSX, ODT, ODP, ODS
def _package_kind(data: bytes) -> str | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            names = package.namelist()
            mimetype = _read(package, "mimetype", 256) if "mimetype" in names else b""
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        names, mimetype = _leading_entries(data)  # the first bytes of a file, or a damaged package
    if mimetype:
        return ODF_TYPES.get(mimetype.decode("ascii", "replace").strip().removesuffix("-template"))
    for name in names:
        for folder, kind in OOXML_FOLDERS.items():
            if name.startswith(folder):
                return kind
    return None


def _leading_entries(data: bytes) -> tuple[list[str], bytes]:
    """Entry names from the local headers at the start of a ZIP, and the first entry's stored `mimetype`."""
    names: list[str] = []
    mimetype = b""
    at = 0
    while at >= 0 and len(names) < 64 and at + 30 <= len(data):
        size = int.from_bytes(data[at + 18:at + 22], "little")
        name_length = int.from_bytes(data[at + 26:at + 28], "little")
        extra_length = int.from_bytes(data[at + 28:at + 30], "little")
        name = data[at + 30:at + 30 + name_length].decode("utf-8", "replace")
        if not names and name == "mimetype":
            start = at + 30 + name_length + extra_length
            mimetype = data[start:start + min(size, 256)]
        names.append(name)
        at = data.find(ZIP, at + 30 + name_length)
    return names, mimetype


def _check_package(data: bytes, name: str, limits: PageLimits) -> None:
    try:
        package = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CorruptFile(f"the {name} is damaged: it is no readable ZIP package ({exc})") from exc
    with package:
        unpacked = sum(entry.file_size for entry in package.infolist())
        if unpacked > limits.unpacked_mb * 2**20:
            raise UnpackedTooLarge(f"the {name} unpacks to {unpacked / 2**20:,.0f} MiB; the limit is "
                                   f"{limits.unpacked_mb:,} MiB (DOCGROUND_MAX_UNPACKED_MB)")
        manifest = _read(package, MANIFEST, MAX_MANIFEST_BYTES) if MANIFEST in package.namelist() else b""
    if b"encryption-data" in manifest:  # ODF encrypts entry by entry and says so in the manifest
        raise EncryptedFile(f"the {name} is password-protected")


def _read(package: zipfile.ZipFile, entry: str, most: int) -> bytes:
    """An entry's bytes when it unpacks to at most `most` bytes; else nothing."""
    try:
        if package.getinfo(entry).file_size > most:
            return b""
        return package.read(entry)[:most]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError, KeyError):
        return b""


# ---- OLE compound files: DOC, XLS, PPT, and OOXML encrypted with a password
def _compound_kind(data: bytes) -> str:
    try:
        with olefile.OleFileIO(data) as compound:
            streams = {"/".join(path).lower() for path in compound.listdir()}
    except Exception:  # olefile raises many types on damage; or this is only the file's first bytes
        guess = filetype.guess(data[:8192])
        if guess is not None and guess.extension in ("doc", "xls", "ppt"):
            return guess.extension
        raise UnsupportedFileType("found an OLE compound file that cannot be read as a Word, Excel or PowerPoint "
                                  "document") from None
    if "encryptedpackage" in streams:
        raise EncryptedFile("the Office document is password-protected (encrypted with a password)")
    for stream, kind in COMPOUND_STREAMS.items():
        if stream in streams:
            return kind
    raise UnsupportedFileType("found an OLE compound file that is no Word, Excel or PowerPoint document")


def _encrypted_compound(data: bytes) -> bool:
    try:
        return bool(msoffcrypto.OfficeFile(io.BytesIO(data)).is_encrypted())
    except Exception:  # a file it cannot parse is damaged, not encrypted
        return False

"""Web pages, Markdown and plain text: recognised from their content, and made into one safe HTML page
that LibreOffice lays out like any other document (ingest/providers/office.py converts it).

HTML is sanitized before LibreOffice sees it: scripts, stylesheets, frames, forms and every reference out
of the page (links, remote or local images) are removed, so converting fetches nothing; images embedded
as data: URIs stay, and so do inline styles that lay text out (page breaks, alignment, emphasis).
Markdown is rendered to HTML by cmark-gfm (GitHub's CommonMark: tables, strikethrough, autolinks; linear
time, megabytes a second) and sanitized the same way; plain text becomes one preformatted block, its
lines kept.
"""

from __future__ import annotations

import codecs
import html
import re

import cmarkgfm
import nh3
from cmarkgfm.cmark import Options

SAMPLE = 64 * 1024  # what detection reads of a file
# Byte-order marks, the UTF-32 ones before UTF-16's (UTF-32 LE starts with UTF-16 LE's mark).
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
WHITESPACE_CONTROLS = frozenset("\t\n\r\f\v")
MAX_CONTROL_SHARE = 0.01  # stray control characters a text file may hold (ANSI colours, a DOS end mark)
HTML_START = re.compile(r"<(?:!doctype\s+html|html|head|body)[\s>/]", re.I)
LEADING_MARKUP = re.compile(r"\s*(?:<\?xml[^>]*>|<!--.*?-->)\s*", re.S)
CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", re.I)
# One of these makes text Markdown: an ATX heading, a code fence, a table's delimiter row, an inline
# link or image, or bold text.
MARKDOWN = re.compile(r"^(?:#{1,6}[ \t]+\S|```|~~~|\|?[ \t]*:?-{3,}:?[ \t]*\|)|\]\([^)\s]+\)|\*\*\S[^*\n]*\*\*", re.M)
# Images only as data: URIs of raster formats (an SVG may reference files of its own).
EMBEDDED_IMAGE = re.compile(r"data:image/(?:png|jpeg|gif|webp|bmp);", re.I)
DROPPED_CONTENT = {"script", "style", "title", "template", "noscript"}
# The sanitizer's attributes per tag, and on any tag the language, direction and inline style, of which
# only properties that lay text out (none can hold a URL).
ATTRIBUTES = {**{tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()},
              "*": {"lang", "title", "dir", "style"}}
STYLE = {"page-break-before", "page-break-after", "page-break-inside", "break-before", "break-after", "text-align",
         "font-weight", "font-style", "text-decoration", "vertical-align", "white-space"}
PAGE = ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title></title></head>\n<body>\n{body}\n'
        "</body></html>\n")


def text_kind(data: bytes) -> str | None:
    """'html', 'md' or 'txt' for a web page, Markdown or plain text (Unicode: UTF-8, or UTF-16/32 with a
    byte-order mark); None for anything else."""
    head = data[:SAMPLE]
    if _starts_as_html(head):
        return "html"
    text = decode_text(head, complete=len(data) <= SAMPLE)
    if text is None:
        return None
    return "md" if MARKDOWN.search(text) else "txt"


def looks_like_legacy_text(data: bytes) -> bool:
    """Text in a legacy 8-bit encoding (not Unicode): no NUL bytes and almost no control characters."""
    head = data[:SAMPLE]
    return b"\x00" not in head and _controls(head.decode("latin-1")) <= MAX_CONTROL_SHARE * len(head)


def decode_text(data: bytes, complete: bool = True) -> str | None:
    """The text of Unicode text bytes, or None when they are not text. A sample (`complete` False) may end
    inside a character."""
    for bom, codec in BOMS:
        if data.startswith(bom):
            try:
                return codecs.getincrementaldecoder(codec)().decode(data, final=complete)
            except UnicodeDecodeError:
                return None
    if b"\x00" in data:
        return None
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(data, final=complete)
    except UnicodeDecodeError:
        return None
    return text if _controls(text) <= MAX_CONTROL_SHARE * max(len(text), 1) else None


def to_html(data: bytes, kind: str) -> bytes:
    """The document as one sanitized UTF-8 HTML page."""
    if kind == "html":
        body = _decode_html(data)
    elif kind == "md":
        # raw HTML passes here: it is sanitized with the rest below
        body = cmarkgfm.github_flavored_markdown_to_html(_decode(data), options=Options.CMARK_OPT_UNSAFE)
    else:
        body = f"<pre>{html.escape(_decode(data))}</pre>"
    return PAGE.format(body=_sanitize(body)).encode("utf-8")


def _sanitize(fragment: str) -> str:
    return nh3.clean(fragment, attributes=ATTRIBUTES, clean_content_tags=DROPPED_CONTENT,
                     attribute_filter=_keep_attribute, url_schemes={"data"}, url_relative="deny", link_rel=None,
                     filter_style_properties=STYLE)


def _keep_attribute(tag: str, name: str, value: str) -> str | None:
    """No attribute may point out of the page; an image keeps its source only when it is embedded."""
    if tag == "img" and name == "src":
        return value if EMBEDDED_IMAGE.match(value) else None
    if name in ("href", "src", "cite", "longdesc", "usemap"):
        return None
    return value


def _starts_as_html(head: bytes) -> bool:
    for bom, codec in BOMS:
        if head.startswith(bom):
            start = codecs.getincrementaldecoder(codec)(errors="replace").decode(head[:4096])
            break
    else:
        if b"\x00" in head[:4096]:
            return False
        start = head[:4096].decode("latin-1")  # the markup that decides is ASCII in every encoding meant here
    while match := LEADING_MARKUP.match(start):
        start = start[match.end():]
    return bool(HTML_START.match(start.lstrip()))


def _decode(data: bytes) -> str:
    """Text whose sample was found to be Unicode text: by its byte-order mark, else UTF-8."""
    codec = next((codec for bom, codec in BOMS if data.startswith(bom)), "utf-8")
    return data.decode(codec, "replace")


def _decode_html(data: bytes) -> str:
    """A web page's text: by its byte-order mark, else the charset its head declares, else UTF-8."""
    for bom, codec in BOMS:
        if data.startswith(bom):
            return data.decode(codec, "replace")
    declared = CHARSET.search(data[:4096])
    codec = "utf-8"
    if declared:
        try:
            codec = codecs.lookup(declared.group(1).decode("ascii")).name
        except (LookupError, UnicodeDecodeError):
            pass
    return data.decode(codec, "replace")


def _controls(text: str) -> int:
    return sum(1 for c in text if (c < " " or c == "\x7f") and c not in WHITESPACE_CONTROLS)

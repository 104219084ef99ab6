"""The name an upload is stored and shown under. Nothing ever opens a path by it (originals are kept
under the document's content id), but it reaches listings, citations, LLM prompts and the registry,
which must not get path tricks, control characters or text that turns the line around."""

from __future__ import annotations

import re
import unicodedata

MAX_CHARS = 255
FALLBACK = "upload"
# Bidirectional overrides and isolates: "invoice\u202efdp.exe" shows as "invoiceexe.pdf".
BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SEPARATORS = re.compile(r"[/\\]")


def safe_filename(name: str | None) -> str:
    """The last path component, NFC-normalized, without control characters, bidi controls or unpaired
    surrogates, at most 255 characters (the extension kept); 'upload' when nothing is left."""
    kept = "".join(c for c in name or "" if unicodedata.category(c) not in ("Cc", "Cs") and c not in BIDI_CONTROLS)
    base = _SEPARATORS.split(unicodedata.normalize("NFC", kept))[-1].strip()
    if base.strip(".") == "":
        return FALLBACK
    if len(base) > MAX_CHARS:
        stem, dot, ext = base.rpartition(".")
        ext = dot + ext if stem and len(ext) <= 16 else ""
        base = base[:MAX_CHARS - len(ext)] + ext
    return base

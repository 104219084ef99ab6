"""Builders assemble engine lines into blocks whose markdown keeps every line's character range."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .geometry import union
from .schema import BBox, Block, BlockKind, Line

# Chinese and Japanese are written without spaces between words; Korean (Hangul) is not.
_UNSPACED = (
    r"\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u31f0-\u31ff"
    r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
)
_HANGUL = r"\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"
CJK_CHAR = re.compile(f"[{_UNSPACED}{_HANGUL}]")
UNSPACED_CHAR = re.compile(f"[{_UNSPACED}]")
HANGUL_CHAR = re.compile(f"[{_HANGUL}]")
_SPACE_BETWEEN_CJK = re.compile(f"(?<=[{_UNSPACED}])[ \u00a0]+(?=[{_UNSPACED}])")
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"), None)
_WS = re.compile(r"[\t\r\n\u00a0\u2000-\u200a\u202f\u205f\u3000]+")


# TeX sets accents as separate spacing characters before the letter ("J´an Min´aˇc").
_SPACING_ACCENTS = {"\u00b4": "\u0301", "\u02c6": "\u0302", "\u02dc": "\u0303", "\u00a8": "\u0308",
                    "\u02c7": "\u030c", "\u02d8": "\u0306", "\u02d9": "\u0307", "\u02da": "\u030a",
                    "\u00b8": "\u0327", "\u02db": "\u0328"}
_ACCENT_BEFORE_LETTER = re.compile(f"([{''.join(_SPACING_ACCENTS)}])([^\\W\\d_])")


def _compose_accents(text: str) -> str:
    # TeX's dotless i (\\i) takes the accent in place of the dot: ¨ı is ï.
    return _ACCENT_BEFORE_LETTER.sub(lambda m: m.group(2).replace("ı", "i") + _SPACING_ACCENTS[m.group(1)], text)


def clean_line_text(text: str) -> str:
    """One line of extracted text, tidy: no invisible characters, no spaces that split CJK words."""
    text = text.translate(_INVISIBLE)
    text = unicodedata.normalize("NFC", _compose_accents(text))
    text = text.replace("\u2018\u2018", "\u201c").replace("\u2019\u2019", "\u201d").replace("``", "\u201c")
    text = "".join(ch for ch in text if ch == " " or unicodedata.category(ch)[0] != "C")
    text = _WS.sub(" ", text)
    text = _SPACE_BETWEEN_CJK.sub("", text)
    return re.sub(r" {2,}", " ", text).strip()


def is_unspaced(ch: str) -> bool:
    """A character of a script written without spaces between words (Chinese, Japanese)."""
    return bool(ch) and UNSPACED_CHAR.match(ch) is not None


@dataclass
class TextLine:
    """A line as an engine found it, before it joins a block."""

    text: str
    bbox: BBox
    size: float = 0.0  # of most of its characters
    size_max: float = 0.0  # of its largest characters (small capitals set the rest smaller)
    bold: bool = False
    mono: bool = False
    vertical: bool = False
    confidence: float | None = None


def joiner(prev: str, nxt: str) -> tuple[str, str]:
    """How two wrapped lines of one paragraph meet: (text kept of prev's end, separator)."""
    if prev.endswith("-") and len(prev) > 1 and prev[-2].isalpha() and nxt[:1].islower():
        return prev[:-1], ""  # a word hyphenated at the line break
    if is_unspaced(prev[-1:]) or is_unspaced(nxt[:1]):
        return prev, ""
    return prev, " "


@dataclass
class BlockDraft:
    kind: BlockKind
    lines: list[TextLine]
    level: int | None = None
    markdown_override: tuple[str, list[Line]] | None = None  # tables build their own markdown

    @property
    def bbox(self) -> BBox:
        return union(line.bbox for line in self.lines)

    @property
    def text(self) -> str:
        return " ".join(line.text for line in self.lines)


_BULLET = re.compile(r"^([•◦▪‣∙·●○■□▶►➢✓✔\-–—*])\s*")


def compose(draft: BlockDraft) -> tuple[str, list[Line]]:
    """The block's markdown and where each line sits in it."""
    if draft.markdown_override is not None:
        return draft.markdown_override
    kind = draft.kind
    if kind in (BlockKind.title, BlockKind.heading):
        prefix = "#" * (1 if kind == BlockKind.title else min(6, (draft.level or 2))) + " "
    else:
        prefix = ""
    parts: list[str] = [prefix]
    if kind == BlockKind.code:
        parts = ["```\n"]
    pos = len(parts[0])
    spans: list[tuple[int, int, BBox]] = []
    for i, line in enumerate(draft.lines):
        text = line.text
        if kind == BlockKind.list and (i == 0 or _BULLET.match(text)):
            text = _BULLET.sub("- ", text, count=1)
            if i > 0:
                parts.append("\n")
                pos += 1
        elif i > 0:
            if kind == BlockKind.code:
                sep = "\n"
            else:
                kept, sep = joiner(parts[-1], text)
                pos -= len(parts[-1]) - len(kept)
                if spans:
                    s, e, b = spans[-1]
                    spans[-1] = (s, min(e, pos), b)
                parts[-1] = kept
            parts.append(sep)
            pos += len(sep)
        parts.append(text)
        spans.append((pos, pos + len(text), line.bbox))
        pos += len(text)
    if kind == BlockKind.code:
        parts.append("\n```")
    markdown = "".join(parts)
    return markdown, [Line(bbox=b, start=s, end=e) for s, e, b in spans if e > s]


def build_block(draft: BlockDraft, block_id: str, page: int) -> Block:
    markdown, lines = compose(draft)
    confidences = [ln.confidence for ln in draft.lines if ln.confidence is not None]
    return Block(
        id=block_id,
        page=page,
        kind=draft.kind,
        markdown=markdown,
        bbox=draft.bbox,
        lines=lines,
        level=draft.level,
        confidence=round(sum(confidences) / len(confidences), 4) if confidences else None,
    )

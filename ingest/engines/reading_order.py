"""Reading order by recursive XY-cut, column by column (the text-layer and Tesseract engines order their blocks
with it; DeepSeek-OCR-2 emits its own).

Plain XY-cut splits a two-column page at every height where both columns happen to have a paragraph
gap, interleaving the columns. Here a horizontal cut is kept only between bands that do not share a
column gutter: bands that do are merged back and read column by column.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..schema import BBox

# Gaps are in normalized page units.
MIN_GUTTER = 0.008
MIN_COLUMN_WIDTH = 0.12  # of the region's width: narrower strips are labels or numbering, not columns
MIN_BAND_GAP = 0.002
# Bands further apart than this are separate parts of the page (a new article, a section label),
# not two halves of one column split by aligned paragraph gaps.
MAX_MERGE_GAP = 0.03


def _gaps(intervals: list[tuple[float, float]], min_gap: float) -> list[float]:
    """Cut positions: the middles of empty stretches between the merged intervals."""
    intervals = sorted(intervals)
    cuts: list[float] = []
    reach = intervals[0][1]
    for lo, hi in intervals[1:]:
        if lo - reach >= min_gap:
            cuts.append((reach + lo) / 2)
        reach = max(reach, hi)
    return cuts


def _split(items: list[int], boxes: Sequence[BBox], axis: int, cuts: list[float]) -> list[list[int]]:
    groups: list[list[int]] = [[] for _ in range(len(cuts) + 1)]
    for i in items:
        centre = (boxes[i][axis] + boxes[i][axis + 2]) / 2
        groups[sum(1 for c in cuts if centre > c)].append(i)
    return [g for g in groups if g]


def _columns(items: list[int], boxes: Sequence[BBox]) -> list[list[int]] | None:
    if len(items) < 2:
        return None
    cuts = _gaps([(boxes[i][0], boxes[i][2]) for i in items], MIN_GUTTER)
    if not cuts:
        return None
    groups = _split(items, boxes, 0, cuts)
    x0 = min(boxes[i][0] for i in items)
    x1 = max(boxes[i][2] for i in items)
    width = max(x1 - x0, 1e-6)
    # Keep only cuts whose both sides are wide enough to be columns; merge the rest back.
    merged: list[list[int]] = []
    for g in groups:
        g_width = max(boxes[i][2] for i in g) - min(boxes[i][0] for i in g)
        if merged and g_width / width < MIN_COLUMN_WIDTH:
            merged[-1].extend(g)
        elif merged and _width(merged[-1], boxes) / width < MIN_COLUMN_WIDTH:
            merged[-1].extend(g)
        else:
            merged.append(list(g))
    return merged if len(merged) > 1 else None


def _width(group: list[int], boxes: Sequence[BBox]) -> float:
    return max(boxes[i][2] for i in group) - min(boxes[i][0] for i in group)


def _bands(items: list[int], boxes: Sequence[BBox]) -> list[list[int]]:
    cuts = _gaps([(boxes[i][1], boxes[i][3]) for i in items], MIN_BAND_GAP)
    return _split(items, boxes, 1, cuts) if cuts else [items]


def _joins(upper: list[int], band: list[int], boxes: Sequence[BBox]) -> bool:
    """Whether a band continues the columns of the band above it. Far-apart bands join only when both
    are laid out in columns of their own."""
    gap = min(boxes[i][1] for i in band) - max(boxes[i][3] for i in upper)
    close = gap < MAX_MERGE_GAP or bool(_columns(band, boxes) and _columns(upper, boxes))
    return close and _columns(upper + band, boxes) is not None


def _order(items: list[int], boxes: Sequence[BBox], right_to_left: bool, depth: int) -> list[int]:
    if len(items) <= 1 or depth > 40:
        return sorted(items, key=lambda i: (boxes[i][1], boxes[i][0]))
    columns = _columns(items, boxes)
    if columns:
        if right_to_left:
            columns.reverse()
        return [i for col in columns for i in _order(col, boxes, right_to_left, depth + 1)]
    bands = _bands(items, boxes)
    if len(bands) == 1:
        return sorted(items, key=lambda i: (boxes[i][1], -boxes[i][0] if right_to_left else boxes[i][0]))
    merged: list[list[int]] = []
    for band in bands:
        if merged and _joins(merged[-1], band, boxes):
            merged[-1].extend(band)
        else:
            merged.append(list(band))
    if len(merged) == 1:
        # Every band shares one gutter yet the whole does not split: read the bands top to bottom.
        merged = bands
    return [i for band in merged for i in _order(band, boxes, right_to_left, depth + 1)]


def reading_order(boxes: Sequence[BBox], right_to_left: bool = False) -> list[int]:
    """Indices of boxes in reading order. right_to_left serves vertical CJK, read in columns from the right."""
    return _order(list(range(len(boxes))), boxes, right_to_left, 0)

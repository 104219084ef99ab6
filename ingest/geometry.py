"""Box arithmetic in the one coordinate form (normalized 0..1, top-left origin, as displayed)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .schema import BBox


def clamp01(v: float) -> float:
    return 0.0 if v < 0.0 else 1.0 if v > 1.0 else v


def normalize(x0: float, y0: float, x1: float, y1: float, width: float, height: float) -> BBox:
    """A box in some unit of a width × height frame (points, pixels, 0..999 bins) → the one form."""
    if width <= 0 or height <= 0:
        raise ValueError(f"frame must have a positive size, got {width}×{height}")
    ax0, ax1 = sorted((x0, x1))
    ay0, ay1 = sorted((y0, y1))
    return (
        round(clamp01(ax0 / width), 6),
        round(clamp01(ay0 / height), 6),
        round(clamp01(ax1 / width), 6),
        round(clamp01(ay1 / height), 6),
    )


def to_points(box: BBox, width_pt: float, height_pt: float) -> BBox:
    x0, y0, x1, y1 = box
    return (round(x0 * width_pt, 2), round(y0 * height_pt, 2), round(x1 * width_pt, 2), round(y1 * height_pt, 2))


def union(boxes: Iterable[BBox]) -> BBox:
    xs0, ys0, xs1, ys1 = zip(*boxes, strict=True)
    return (min(xs0), min(ys0), max(xs1), max(ys1))


def area(box: BBox) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def intersection(a: BBox, b: BBox) -> float:
    return area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def coverage(inner: BBox, outer: BBox) -> float:
    """The share of inner's area that lies inside outer."""
    a = area(inner)
    return intersection(inner, outer) / a if a > 0 else 0.0


def displayed_boxes(raw: np.ndarray, matrix: tuple[float, ...], width: float, height: float) -> np.ndarray:
    """Many boxes at once, (n, 4) in unrotated page space → the one form on the page as displayed:
    `matrix` is the page's rotation matrix (a, b, c, d, e, f), width × height the displayed size."""
    a, b, c, d, e, f = matrix
    xs = raw[:, [0, 2, 0, 2]]
    ys = raw[:, [1, 1, 3, 3]]
    tx, ty = a * xs + c * ys + e, b * xs + d * ys + f
    out = np.stack([tx.min(axis=1) / width, ty.min(axis=1) / height, tx.max(axis=1) / width,
                    ty.max(axis=1) / height], axis=1)
    return np.round(np.clip(out, 0.0, 1.0), 6)

"""Scans as people make them: pages turned 90/180/270 degrees and fed in slightly askew.

OCR reads the page turned upright and levelled; its boxes come back in that corrected image's pixels.
`Upright` is the one affine map between the page as displayed and the corrected image, so the image is
rotated with exactly the matrix that maps boxes back, and pixels become the one coordinate form once.

Skew is found by projection profiles: rotating the ink's coordinates by the right angle stacks every text
line onto few rows, which makes the row histogram peaky (its sum of squares largest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..geometry import normalize
from ..schema import BBox

MAX_SKEW = 10.0  # degrees; beyond this a page is not "slightly askew" and profiles get ambiguous
MIN_SKEW = 0.25  # below this, resampling costs more sharpness than levelling gains
SKEW_SAMPLE_SIDE = 1000  # px: the long side of the thumbnail skew is measured on
MIN_INK_PIXELS = 400
MAX_INK_PIXELS = 150_000
# The best angle must make the profile this much peakier than leaving the page alone: a photo or a
# blank page has no text lines to level.
MIN_GAIN = 1.02
_TRIG_DIGITS = 12
# Orientation detection needs no more resolution than this, and runs faster on fewer pixels.
OSD_PPI = 150
# Below this margin Tesseract's orientation guess is a coin toss. Its script margins run low even when
# right (0.6 for a page of Chinese), so the script is always passed on: a reading in it must still win.
MIN_ORIENTATION_CONFIDENCE = 2.0


@dataclass(frozen=True)
class Upright:
    """How a displayed page image of `size` pixels is turned by `angle` degrees (counterclockwise) for OCR."""

    size: tuple[int, int]
    angle: float = 0.0

    @property
    def _trig(self) -> tuple[float, float]:
        rad = math.radians(self.angle)
        return round(math.cos(rad), _TRIG_DIGITS), round(math.sin(rad), _TRIG_DIGITS)

    @property
    def upright_size(self) -> tuple[int, int]:
        w, h = self.size
        cos, sin = self._trig
        return (math.ceil(abs(w * cos) + abs(h * sin) - 1e-6), math.ceil(abs(w * sin) + abs(h * cos) - 1e-6))

    def _matrix(self) -> tuple[float, float, float, float, float, float]:
        """Corrected-image pixel → displayed-image pixel, as PIL's affine (a, b, c, d, e, f)."""
        w, h = self.size
        uw, uh = self.upright_size
        cos, sin = self._trig
        return (cos, -sin, w / 2 - uw / 2 * cos + uh / 2 * sin,
                sin, cos, h / 2 - uw / 2 * sin - uh / 2 * cos)

    def apply(self, image: Image.Image) -> Image.Image:
        if image.size != self.size:
            raise ValueError(f"image is {image.size}, this correction is for {self.size}")
        if self.angle % 360 == 0:
            return image
        fill = 255 if image.mode == "L" else (255,) * len(image.getbands())
        return image.transform(self.upright_size, Image.Transform.AFFINE, self._matrix(),
                               resample=Image.Resampling.BILINEAR, fillcolor=fill)

    def to_page(self, x0: float, y0: float, x1: float, y1: float) -> BBox:
        """A box in corrected-image pixels → the one coordinate form on the page as displayed."""
        a, b, c, d, e, f = self._matrix()
        corners = [(a * x + b * y + c, d * x + e * y + f) for x in (x0, x1) for y in (y0, y1)]
        xs, ys = zip(*corners, strict=True)
        return normalize(min(xs), min(ys), max(xs), max(ys), *self.size)


def quarter_turn(image: Image.Image, degrees: int) -> Image.Image:
    """The image turned counterclockwise by a multiple of 90 degrees, exactly (no resampling)."""
    turns = {0: None, 90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
             270: Image.Transpose.ROTATE_270}
    op = turns[degrees % 360]
    return image if op is None else image.transpose(op)


def _ink(thumb: Image.Image) -> tuple[np.ndarray, np.ndarray] | None:
    """Coordinates of dark pixels, thinned to a bounded sample."""
    pixels = np.asarray(thumb.convert("L"))
    threshold = min(128, float(pixels.mean()) - 2 * float(pixels.std()) / 3)
    ys, xs = np.nonzero(pixels < threshold)
    if len(xs) < MIN_INK_PIXELS:
        return None
    if len(xs) > MAX_INK_PIXELS:
        pick = np.random.default_rng(0).choice(len(xs), MAX_INK_PIXELS, replace=False)
        ys, xs = ys[pick], xs[pick]
    return xs.astype(np.float64), ys.astype(np.float64)


def _peakiness(xs: np.ndarray, ys: np.ndarray, degrees: float) -> float:
    """How sharply text lines stand out in the row profile once the ink is turned by `degrees`."""
    rad = math.radians(degrees)
    rows = ys * math.cos(rad) - xs * math.sin(rad)
    counts = np.bincount(np.round(rows - rows.min()).astype(np.int64))
    return float(np.dot(counts, counts))


def detect_skew(image: Image.Image, rotation: int = 0, max_skew: float = MAX_SKEW) -> float:
    """The angle (degrees, counterclockwise) that levels the text lines of a page once turned upright by
    `rotation` (0/90/180/270); 0 when unsure."""
    ink = _ink(quarter_turn(_thumbnail(image), rotation))
    if ink is None:
        return 0.0
    xs, ys = ink
    best, best_score = 0.0, _peakiness(xs, ys, 0.0)
    base = best_score
    for step, span in ((0.5, max_skew), (0.1, 0.5), (0.02, 0.1)):
        centre = best
        for degrees in np.arange(centre - span, centre + span + step / 2, step):
            if abs(degrees) > max_skew:
                continue
            score = _peakiness(xs, ys, float(degrees))
            if score > best_score:
                best, best_score = float(degrees), score
    if best_score < base * MIN_GAIN or abs(best) < MIN_SKEW:
        return 0.0
    return round(best, 2)


@dataclass(frozen=True)
class Orientation:
    rotation: int  # degrees counterclockwise that turn the page upright: 0, 90, 180 or 270
    script: str | None  # the dominant script as Tesseract names it (Latin, Han, Hangul, ...)


def detect_rotation(image: Image.Image, osd, ppi: int) -> Orientation | None:
    """Tesseract's orientation and script detection on a page image of `ppi` pixels per inch.

    `osd` is a tesserocr API initialised with the `osd` model in PSM.OSD_ONLY. An unsure rotation reads as
    0; None when the page has too little text to tell at all."""
    scale = OSD_PPI / ppi
    if scale < 0.9:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BOX)
        ppi = OSD_PPI
    osd.SetImage(image)
    osd.SetSourceResolution(ppi)
    try:
        found = osd.DetectOrientationScript()
    except RuntimeError:  # "too few characters"
        return None
    if not found:
        return None
    rotation = int(found["orient_deg"]) % 360 if found["orient_conf"] >= MIN_ORIENTATION_CONFIDENCE else 0
    return Orientation(rotation, found.get("script_name") or None)


def correction(image: Image.Image, rotation: int = 0) -> Upright:
    """The correction for a displayed page image known to be turned by `rotation` (0/90/180/270):
    the quarter turn that makes it upright, plus the small angle that levels its lines."""
    return Upright(image.size, (rotation % 360) + detect_skew(image, rotation))


def _thumbnail(image: Image.Image) -> Image.Image:
    scale = SKEW_SAMPLE_SIDE / max(image.size)
    if scale >= 1:
        return image
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.BOX)

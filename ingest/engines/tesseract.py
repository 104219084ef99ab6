"""Scans and photos on the CPU: Tesseract (through tesserocr) into the same page layout the text layer gives.

Each page is rendered, turned upright and levelled (`tesseract_orientation.py`), and read line by line;
Tesseract's paragraphs become blocks whose lines keep their boxes, mapped back to the page as displayed.

Orientation and languages are settled cheaply: a page is first read turned as, and in the languages that,
the document's earlier pages were read best (upright, in English for a first page). Only when that reading
is unsure or runs sideways does Tesseract's orientation and script detection run, and the page is read
again turned and/or in the script's languages; the more confident reading wins.

A page is rendered at the resolution its text needs: the size of its text lines, measured on a cheap
low-resolution render, scales the configured resolution down for body text and larger print, which
need fewer pixels; small print keeps the configured resolution.

Pages of a batch are read in parallel threads (tesserocr releases the GIL), as many as the cores and the
memory budget allow, each thread keeping its Tesseract instances warm. A page read while cores would
otherwise idle (a document's first page, which settles the others' languages and turn, or the last
pages of a batch) is cut into horizontal bands at blank rows and its bands are read at once. Rendering
stays on the calling thread because PyMuPDF documents must not be used from several threads.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

# Tesseract built with OpenMP (as Debian's is) thrashes when pages are already read in parallel; the
# limit must be set before the library loads.
os.environ.setdefault("OMP_THREAD_LIMIT", "1")

import tesserocr
from tesserocr import OEM, PSM, RIL, PyTessBaseAPI, WritingDirection, iterate_level

from docground.errors import InvalidRequest

from ..builders import HANGUL_CHAR, TextLine, build_block, clean_line_text
from ..classify import body_size, classify_block, mark_title
from ..geometry import normalize
from ..providers import SourcePage
from ..schema import BBox, PageLayout
from .base import PageEngine, block_id
from .reading_order import reading_order
from .tesseract_orientation import Upright, correction, detect_rotation

TESSDATA = Path("/usr/share/tesseract-ocr/5/tessdata")
DEFAULT_LANGUAGES = "eng"
# Languages for the scripts Tesseract's script detection names (those installed are used). The `_vert`
# models read vertical Chinese and Japanese; Tesseract picks them for vertical lines only.
SCRIPT_LANGUAGES = {
    "Latin": "eng", "Han": "chi_sim+chi_sim_vert", "Japanese": "jpn+jpn_vert", "Katakana": "jpn+jpn_vert",
    "Hiragana": "jpn+jpn_vert", "Hangul": "kor", "Korean": "kor",
}
# Scripts a page that script detection calls Latin is also tried in, on this many of its lines;
# another script's reading must be this many confidence points (0..100) better to be chosen.
PROBED = ("Han", "Japanese", "Hangul")
PROBE_LINES = 4
PROBE_MARGIN = 10.0
# Mean line confidence (0..100) from which a first reading is taken without checking orientation.
CONFIDENT = 70.0
# Between Hangul syllables Tesseract calls words, a gap this wide for the line's height is a word space.
KOREAN_SPACE_GAP = 0.75
# Confidence points by which a reading turned upright may trail a sideways one and still win.
SIDEWAYS_MARGIN = 10.0
# A line below this confidence that is also short is noise read from specks, rules or pictures.
NOISE_CONFIDENCE = 30.0
# Resident memory per reading thread: the language model plus a page image and Tesseract's copies of it.
MB_PER_WORKER = 300
# Pages larger than this (posters, 600 DPI photos) are read at a lower resolution, to bound that memory.
MAX_PIXELS = 25_000_000
# Below this, a page image's resolution is a guess (an image file without one counts as 72 DPI), and
# Tesseract estimates it better from the text itself.
MIN_KNOWN_PPI = 100
DOCUMENTS_REMEMBERED = 64
# Resolution from the text's size: the configured resolution is the one for lines this tall (points, as
# `line_height` measures them), scaled for the page's own within these shares of it. 10 pt Latin body
# text measures about 7.2 and is read at 0.85 of it, as accurately as at the full resolution on
# bench/ocr_cpu.py's pages. The floor is for CJK, whose glyphs fill their line, so it measures taller
# than Latin text of the same size but needs as many pixels; the ceiling because Tesseract reads some
# pages worse, not better, above the configured resolution (it is the most a page is rendered at).
REFERENCE_LINE_PT = 6.2
DPI_RANGE = (0.85, 1.0)
PROBE_DPI = 100  # the text's size is measured on a render this coarse
PROBE_STRIPS = 12  # narrow strips keep a slightly askew line's run short
MIN_RUNS = 8  # fewer measured lines than this: no estimate, the configured resolution
# Bands a page may be cut into when cores would idle: cut only at a blank stretch of rows at least this
# tall, in the middle part of the text, so no line is cut and each band has work.
MIN_CUT_ROWS = 3
CUT_REACH = 0.4  # of a band's share of the text's height, either side of where an even cut would be


@dataclass
class OcrLine:
    text: str
    box: tuple[int, int, int, int]  # pixels of the corrected image
    confidence: float  # 0..100
    row_height: float  # pixels
    paragraph_start: bool
    vertical: bool


@dataclass
class Reading:
    """One pass of Tesseract over one corrected page image."""

    upright: Upright
    languages: str
    lines: list[OcrLine] = field(default_factory=list)

    @property
    def rotation(self) -> int:
        """The quarter turn the page was read at (the rest of the angle is skew)."""
        return round(self.upright.angle / 90) * 90 % 360

    @property
    def chars(self) -> int:
        return sum(len(ln.text) for ln in self.lines)

    @property
    def confidence(self) -> float:
        chars = self.chars
        return sum(ln.confidence * len(ln.text) for ln in self.lines) / chars if chars else 0.0

    @property
    def sideways(self) -> bool:
        """Mostly top-to-bottom lines: vertical CJK, or a page turned a quarter (Tesseract reads a sideways
        page as vertical lines, sometimes well, but its layout is then the page's, not the text's)."""
        return sum(len(ln.text) for ln in self.lines if ln.vertical) > 0.5 * self.chars


class TesseractEngine(PageEngine):
    name = "tesseract"

    def __init__(self, tessdata: Path = TESSDATA, languages: str = "auto", dpi: int = 200, workers: int = 0,
                 memory_mb: int = 2048):
        self.tessdata = Path(tessdata)
        self.installed = installed_languages(self.tessdata)
        self.has_osd = (self.tessdata / "osd.traineddata").is_file()
        languages = languages.strip()
        self.fixed_languages = None if languages in ("", "auto") else languages
        missing = [lang for lang in (self.fixed_languages or "").split("+") if lang and lang not in self.installed]
        if missing:
            raise InvalidRequest(
                f"OCR languages not installed: {', '.join(missing)}; {self.tessdata} has "
                f"{', '.join(sorted(self.installed)) or 'none'} (set DOCGROUND_OCR_LANGUAGES, or install "
                "tesseract-ocr-<lang>)")
        self.dpi = dpi
        self.workers = max(1, min(workers or _cores(), memory_mb // MB_PER_WORKER))
        self.pages_at_once = 2 * self.workers  # small batches: the progress bar moves page by page
        self.version = "2+" + tesserocr.tesseract_version().split()[1]
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None
        self._band_pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._hints: OrderedDict[str, Hint] = OrderedDict()

    # ---- the PageEngine contract
    def parse(self, page: SourcePage, document_id: str) -> PageLayout:
        return self.parse_many([page], document_id)[0]

    def parse_many(self, pages: list[SourcePage], document_id: str) -> list[PageLayout]:
        """Pages read in parallel; at most one rendered image per reading thread waits in memory. A page
        read while fewer pages than workers are left is read in bands, so that no core idles."""
        results: list[PageLayout | None] = [None] * len(pages)
        todo = list(enumerate(pages))
        pool = self._executor()  # Tesseract instances live in its threads only, whoever calls
        if todo and document_id not in self._hints:
            # The first page settles the document's languages and turn, so that the others start with them.
            i, page = todo.pop(0)
            results[i] = pool.submit(self._parse_image, self._render(page), _PageInfo.of(page), document_id,
                                     self.workers).result()
        pending: dict[Future, int] = {}
        for n, (i, page) in enumerate(todo):
            while len(pending) >= self.workers:
                self._collect(wait(pending, return_when=FIRST_COMPLETED).done, pending, results)
            bands = self.workers if len(todo) - n < self.workers else 1
            pending[pool.submit(self._parse_image, self._render(page), _PageInfo.of(page), document_id, bands)] = i
        while pending:
            self._collect(wait(pending, return_when=FIRST_COMPLETED).done, pending, results)
        return results  # type: ignore[return-value]

    @staticmethod
    def _collect(done, pending: dict[Future, int], results: list) -> None:
        for future in done:
            results[pending.pop(future)] = future.result()

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tesseract",
                                                initializer=self._warm)
                # Bands of a page are read here while the page's own thread reads its first band. Band
                # tasks never wait on other tasks, so the two pools cannot deadlock each other.
                self._band_pool = ThreadPoolExecutor(max(1, self.workers - 1), thread_name_prefix="tesseract-band",
                                                     initializer=self._warm)
            return self._pool

    def _warm(self) -> None:
        """Load the first reading's Tesseract instance as the thread starts: later pages find it ready."""
        self._api(self._hint_for("").languages)

    def dpi_for(self, page: SourcePage) -> int:
        """The resolution the page's text needs: the configured one, less for text large enough."""
        try:
            probe = page.render(PROBE_DPI)
        except Exception:  # noqa: BLE001 - the real render below raises what the caller should see
            return self.dpi
        size = line_height(np.asarray(probe.convert("L")))
        if size is None:
            return self.dpi
        line_pt = size * page.width_pt / probe.width  # the probe's pixels back to points
        scale = min(DPI_RANGE[1], max(DPI_RANGE[0], REFERENCE_LINE_PT / max(line_pt, 1e-6)))
        return round(self.dpi * scale)

    def _render(self, page: SourcePage) -> Image.Image:
        wanted = self.dpi_for(page)
        at_dpi = page.width_pt * page.height_pt * (wanted / 72) ** 2
        dpi = wanted if at_dpi <= MAX_PIXELS else int(wanted * (MAX_PIXELS / at_dpi) ** 0.5)
        image = page.render(dpi)  # an image page may come back at its own resolution
        if image.width * image.height > MAX_PIXELS:
            scale = (MAX_PIXELS / (image.width * image.height)) ** 0.5
            image = image.resize((int(image.width * scale), int(image.height * scale)), Image.Resampling.BOX)
        return image.convert("L")

    # ---- one page
    def _parse_image(self, image: Image.Image, info: _PageInfo, document_id: str, bands: int = 1) -> PageLayout:
        ppi = round(image.width * 72 / info.width_pt)
        hint = self._hint_for(document_id)
        reading = self._read(image, correction(image, hint.rotation), hint.languages, ppi, bands)
        if reading.confidence < CONFIDENT or reading.sideways:
            retry = self._reread(image, reading, ppi)
            if retry is not None and _better(retry, reading):
                reading = retry
        if reading.lines:
            self._remember(document_id, Hint(reading.languages, reading.rotation))
        return self._layout(reading, image, info, document_id)

    def _reread(self, image: Image.Image, first: Reading, ppi: int) -> Reading | None:
        """Read again turned upright and in the page's script, when orientation detection says otherwise."""
        guess = detect_rotation(image, self._osd(), ppi) if self.has_osd else None
        if guess is None:
            return None
        languages = first.languages
        upright = correction(image, guess.rotation)
        if self.fixed_languages is None and guess.script in SCRIPT_LANGUAGES and guess.script != "Latin":
            languages = self._installed_or(SCRIPT_LANGUAGES[guess.script], languages)
        elif self.fixed_languages is None:
            languages = self._probe_scripts(image, first, ppi)
        if guess.rotation == first.rotation and languages == first.languages:
            return None
        return self._read(image, upright, languages, ppi)

    def _probe_scripts(self, image: Image.Image, first: Reading, ppi: int) -> str:
        """The languages, among the first reading's and the CJK scripts', that read a few of the page's lines
        most confidently. Script detection calls a Chinese manual full of Latin command names "Latin" (with
        little confidence), and English then reads it as noise: a few lines cost little to check."""
        languages = first.languages
        if not first.lines:
            return languages
        upright = first.upright  # the lines' frame
        pixels = upright.apply(image)
        middle = sorted(first.lines, key=lambda ln: ln.box[1])[len(first.lines) // 2:][:PROBE_LINES]
        top, bottom = min(ln.box[1] for ln in middle), max(ln.box[3] for ln in middle)
        band = pixels.crop((0, max(0, top - 4), pixels.width, min(pixels.height, bottom + 4)))
        best, best_confidence = languages, -1.0
        for candidate in dict.fromkeys([languages, *(self._installed_or(SCRIPT_LANGUAGES[s], "") for s in PROBED)]):
            if not candidate:
                continue
            probe = Reading(upright, candidate)
            self._read_band(probe, band, top, ppi)
            margin = 0.0 if candidate == languages else PROBE_MARGIN
            if probe.confidence > best_confidence + margin:
                best, best_confidence = candidate, probe.confidence
        return best

    def _read(self, image: Image.Image, upright: Upright, languages: str, ppi: int, bands: int = 1) -> Reading:
        """One reading of the page; in `bands` horizontal bands read at once when the page can be cut
        between lines (never for vertical scripts, whose lines a horizontal cut would halve)."""
        pixels = upright.apply(image)
        reading = Reading(upright, languages)
        cuts = band_cuts(np.asarray(pixels), bands) if bands > 1 and "_vert" not in languages else []
        if not cuts:
            self._read_band(reading, pixels, 0, ppi)
            return reading
        edges = [0, *cuts, pixels.height]
        parts = [Reading(upright, languages) for _ in cuts]
        band_pool = self._band_pool
        others = [band_pool.submit(self._read_band, part, pixels.crop((0, top, pixels.width, bottom)), top, ppi)
                  for part, top, bottom in zip(parts, edges[1:-1], edges[2:], strict=True)]
        self._read_band(reading, pixels.crop((0, 0, pixels.width, edges[1])), 0, ppi)
        for part, future in zip(parts, others, strict=True):
            future.result()
            reading.lines.extend(part.lines)
        return reading

    def _read_band(self, reading: Reading, pixels: Image.Image, top: int, ppi: int) -> None:
        """Tesseract's lines of one band of the upright image into the reading, in the whole image's pixels."""
        api = self._api(reading.languages)
        api.SetImage(pixels)
        if ppi >= MIN_KNOWN_PPI:
            api.SetSourceResolution(ppi)
        api.Recognize()
        iterator = api.GetIterator()
        if iterator is None:
            return
        line: OcrLine | None = None
        words: list[tuple[str, tuple[int, int, int, int]]] = []
        for r in iterate_level(iterator, RIL.WORD):
            if r.Empty(RIL.WORD):  # a page without text still yields one empty element
                continue
            if line is None or r.IsAtBeginningOf(RIL.TEXTLINE):
                # A paragraph that began on a line dropped as noise begins on the next one.
                carried = line is not None and not self._keep(reading, line, words) and line.paragraph_start
                x0, y0, x1, y1 = r.BoundingBox(RIL.TEXTLINE)
                line = OcrLine(text="", box=(x0, y0 + top, x1, y1 + top), confidence=r.Confidence(RIL.TEXTLINE),
                               row_height=float(r.RowAttributes()["row_height"]),
                               paragraph_start=carried or r.IsAtBeginningOf(RIL.PARA),
                               vertical=r.Orientation()[1] == WritingDirection.TOP_TO_BOTTOM)
                words = []
            words.append((r.GetUTF8Text(RIL.WORD) or "", r.BoundingBox(RIL.WORD)))
        if line is not None:
            self._keep(reading, line, words)

    @staticmethod
    def _keep(reading: Reading, line: OcrLine, words: list) -> bool:
        """A line joins the reading unless it is noise: no letters or digits, or short and unsure."""
        line.text = clean_line_text(_join_words(words, line.vertical))
        if not any(ch.isalnum() for ch in line.text) or (line.confidence < NOISE_CONFIDENCE and len(line.text) < 4):
            return False
        reading.lines.append(line)
        return True

    def _layout(self, reading: Reading, image: Image.Image, info: _PageInfo, document_id: str) -> PageLayout:
        """Blocks classified and ordered as the upright page reads; their line boxes then go back to the page
        as displayed."""
        upright = reading.upright
        uw, uh = upright.upright_size
        pt_per_px = info.width_pt / image.width
        paragraphs: list[list[TextLine]] = []
        for ln in reading.lines:
            line = TextLine(text=ln.text, bbox=normalize(*ln.box, uw, uh),
                            size=round(ln.row_height * pt_per_px * 2) / 2, vertical=ln.vertical,
                            confidence=round(ln.confidence / 100, 4))
            if paragraphs and not ln.paragraph_start and not _size_breaks(paragraphs[-1][-1], line):
                paragraphs[-1].append(line)
            else:
                paragraphs.append([line])
        body = body_size(paragraphs)
        drafts = [classify_block(p, body) for p in paragraphs]
        mark_title(drafts, info.number, body)
        order = reading_order([_as_horizontal(d.bbox) if _mostly_vertical(drafts) else d.bbox for d in drafts])
        for d in drafts:
            for line in d.lines:
                x0, y0, x1, y1 = line.bbox
                line.bbox = upright.to_page(x0 * uw, y0 * uh, x1 * uw, y1 * uh)
        blocks = [build_block(drafts[i], block_id(document_id, info.number, n), info.number)
                  for n, i in enumerate(order)]
        return PageLayout(page=info.number, width_pt=info.width_pt, height_pt=info.height_pt, blocks=blocks,
                          engine=self.name, engine_version=self.version, reason=_describe(reading))

    # ---- what a document's earlier pages taught
    def _hint_for(self, document_id: str) -> Hint:
        default = Hint(self.fixed_languages or self._installed_or(DEFAULT_LANGUAGES, "eng"), 0)
        return self._hints.get(document_id, default)

    def _remember(self, document_id: str, hint: Hint) -> None:
        with self._pool_lock:
            self._hints[document_id] = hint
            self._hints.move_to_end(document_id)
            while len(self._hints) > DOCUMENTS_REMEMBERED:
                self._hints.popitem(last=False)

    def _installed_or(self, wanted: str, fallback: str) -> str:
        return "+".join(lang for lang in wanted.split("+") if lang in self.installed) or fallback

    # ---- per-thread Tesseract instances (an instance is not safe to share between threads)
    def _api(self, languages: str):
        apis = self._local.__dict__.setdefault("apis", {})
        if languages not in apis:
            apis[languages] = PyTessBaseAPI(path=str(self.tessdata), lang=languages, psm=PSM.AUTO,
                                            oem=OEM.LSTM_ONLY)
        return apis[languages]

    def _osd(self):
        if getattr(self._local, "osd", None) is None:  # one per reading thread
            self._local.osd = PyTessBaseAPI(path=str(self.tessdata), lang="osd", psm=PSM.OSD_ONLY)
        return self._local.osd


@dataclass(frozen=True)
class Hint:
    """How a document's last page was read best: where the next page's first reading starts."""

    languages: str
    rotation: int


@dataclass(frozen=True)
class _PageInfo:
    """What a reading thread needs of a page: never the page object itself (PyMuPDF is single-threaded)."""

    number: int
    width_pt: float
    height_pt: float

    @classmethod
    def of(cls, page: SourcePage) -> _PageInfo:
        return cls(page.number, page.width_pt, page.height_pt)


def _better(retry: Reading, first: Reading) -> bool:
    """A second reading wins when it is more confident and did not lose most of the text doing so; turned
    upright, it wins a near tie with a sideways one."""
    if retry.chars < 0.25 * first.chars:
        return False
    margin = SIDEWAYS_MARGIN if first.sideways and not retry.sideways else 0.0
    return retry.confidence + margin > first.confidence


def _join_words(words: list[tuple[str, tuple[int, int, int, int]]], vertical: bool) -> str:
    """A line's words, spaced. Tesseract splits Korean words at syllables: between Hangul, a space is
    only where the gap is wide for the line's size (Latin and CJK keep Tesseract's own spacing, and
    spaces between Chinese or Japanese characters are dropped later anyway)."""
    words = [(text.strip(), box) for text, box in words if text.strip()]
    if not words:
        return ""
    size = sorted((b[2] - b[0]) if vertical else (b[3] - b[1]) for _, b in words)[len(words) // 2]
    parts = [words[0][0]]
    for (prev, pbox), (text, box) in itertools.pairwise(words):
        gap = box[1] - pbox[3] if vertical else box[0] - pbox[2]
        hangul = HANGUL_CHAR.match(prev[-1]) and HANGUL_CHAR.match(text[0])
        parts.append(" " if not hangul or gap > KOREAN_SPACE_GAP * size else "")
        parts.append(text)
    return "".join(parts)


def _mostly_vertical(drafts: list) -> bool:
    vertical = sum(len(d.text) for d in drafts if d.lines[0].vertical)
    return vertical > 0.5 * sum(len(d.text) for d in drafts)


def _as_horizontal(box: BBox) -> BBox:
    """A box on a page of vertical lines read right to left, turned so those lines read as rows top to
    bottom: reading order's column logic then sees paragraphs side by side, not one-character-wide strips."""
    x0, y0, x1, y1 = box
    return (y0, 1 - x1, y1, 1 - x0)


def _size_breaks(prev: TextLine, line: TextLine) -> bool:
    """A heading set in a larger size stays apart from the paragraph Tesseract joined it to."""
    return abs(prev.size - line.size) > 0.25 * max(prev.size, line.size, 1e-6)


def _describe(reading: Reading) -> str:
    parts = [f"tesseract {reading.languages}"]
    if reading.rotation:
        parts.append(f"turned {reading.rotation}°")
    skew = (reading.upright.angle - reading.rotation + 180) % 360 - 180
    if abs(skew) >= 0.01:
        parts.append(f"levelled {skew:+.2f}°")
    parts.append(f"confidence {reading.confidence / 100:.2f}")
    return ", ".join(parts)


def _dark(gray: np.ndarray) -> np.ndarray:
    return gray < min(128.0, float(gray.mean()) - 2 * float(gray.std()) / 3)


def _runs(inked: np.ndarray) -> np.ndarray:
    """Lengths of the runs of True in a 1-D mask."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], inked.astype(np.int8), [0]))))
    return edges[1::2] - edges[::2]


def line_height(gray: np.ndarray) -> float | None:
    """The typical height (pixels) of a page image's text lines (about three quarters of the font size for
    Latin text); None when there are too few lines to tell.

    Lines run along whichever direction, rows or columns, shows the more contrasted ink profile across
    narrow strips (a page turned a quarter has lines of columns); their heights are the runs of inked
    rows (columns) in those strips."""
    dark = _dark(gray)
    best: tuple[float, np.ndarray] | None = None
    for ink in (dark, dark.T):
        strips = np.array_split(ink, PROBE_STRIPS, axis=1)
        profiles = [p for p in (strip.sum(axis=1) for strip in strips) if p.any()]
        if not profiles:
            return None
        contrast = float(np.mean([p.std() / p.mean() for p in profiles]))
        if best is None or contrast > best[0]:
            best = (contrast, np.concatenate([_runs(strip.any(axis=1)) for strip in strips]))
    runs = best[1][best[1] >= 2]  # a one-pixel run is a speck or a rule
    return float(np.median(runs)) if len(runs) >= MIN_RUNS else None


def band_cuts(gray: np.ndarray, bands: int) -> list[int]:
    """Rows at which an upright page image can be cut into `bands` bands without cutting a line of text:
    for each cut, the widest blank stretch of rows across the whole width in the middle of its band's
    share of the text; fewer cuts (none) where there is no such stretch."""
    inked = _dark(gray).sum(axis=1) > max(2, gray.shape[1] // 500)  # a few specks leave a row blank
    rows = np.flatnonzero(inked)
    if len(rows) == 0:
        return []
    first, last = int(rows[0]), int(rows[-1])
    blank = ~inked
    ends = np.flatnonzero(np.diff(np.concatenate(([0], blank.astype(np.int8), [0]))))
    stretches = [(int(a), int(b)) for a, b in zip(ends[::2], ends[1::2], strict=True) if b - a >= MIN_CUT_ROWS]
    cuts = []
    share = (last - first) / bands
    for k in range(1, bands):
        lo, hi = first + share * (k - CUT_REACH), first + share * (k + CUT_REACH)
        inside = [(b - a, (a + b) // 2) for a, b in stretches if lo <= (a + b) / 2 <= hi and a > first and b <= last]
        if inside:
            cuts.append(max(inside)[1])
    return sorted(set(cuts))


def installed_languages(tessdata: Path) -> set[str]:
    """The language models in a tessdata folder (the orientation model `osd` is not a language)."""
    if not Path(tessdata).is_dir():
        return set()
    return set(tesserocr.get_languages(str(tessdata))[1]) - {"osd"}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


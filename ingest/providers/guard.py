"""Limits on what one page may cost, and the check that keeps hostile PDF pages away from the engines.

A PDF page can hold unbounded work in a few bytes: forms that draw forms that draw forms (2 KB, hours
of interpretation), a compressed stream that inflates to gigabytes, an image whose declared size needs
gigabytes to decode, or damage that crashes MuPDF. MuPDF calls hold the GIL and cannot be interrupted
from Python, so no thread of this process could stop them. Before any engine sees a page, a forked
child runs it through MuPDF's bbox device (the interpretation that text extraction and rendering do,
without their output) under an address-space limit, and the parent kills the child when a page runs
past the time limit. A page that runs too long, needs too much memory, holds an image over the pixel
limit, or breaks or crashes MuPDF is refused with the reason; the rest of the document is read as
usual. The child checks a window of pages ahead of the caller, beside the parse: a document costs one
fork per opened source and a couple of milliseconds of the child's time a page (bench/hostile.py).

Renders are bounded too: a page is rendered at most `render_pixels` large (a 200 x 200 inch poster at a
lower DPI), and smaller still when the machine's available memory is short.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import time
import weakref
from collections import deque
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import Connection

import pymupdf

from docground.errors import DocgroundError, ImageTooLarge, PageTimeout, PageUnreadable

log = logging.getLogger("docground.ingest")

WINDOW = 64  # pages the child checks ahead of the one asked for
BYTES_PER_PIXEL = 3  # renders are RGB
RENDER_COPIES = 4  # a render lives on as a few copies (pixmap, PIL image, grey or resized versions)
MIN_RENDER_PIXELS = 4_000_000  # under memory pressure a page still renders this large (letter at ~170 DPI)


@dataclass(frozen=True)
class PageLimits:
    """What one document and one page may cost; every field is a setting (docground/settings.py)."""

    max_pages: int = 5000
    time_s: float = 10.0  # to interpret one PDF page; 0 turns the child-process check off
    memory_mb: int = 2048  # the check's address space beyond the process's own
    image_pixels: int = 200_000_000  # an image file's frame, or an image inside a PDF page
    render_pixels: int = 50_000_000  # the largest render of a page
    convert_time_s: float = 180.0  # to convert an Office, web or text document to PDF (providers/libreoffice.py)
    convert_memory_mb: int = 3072  # the conversion's address space
    unpacked_mb: int = 1024  # what a ZIP package (DOCX, XLSX, ODT, ...) may unpack to

    @classmethod
    def from_settings(cls, settings) -> PageLimits:
        return cls(max_pages=settings.max_pages, time_s=settings.page_time_limit_s,
                   memory_mb=settings.page_memory_mb, image_pixels=settings.max_image_pixels,
                   render_pixels=settings.max_render_pixels, convert_time_s=settings.convert_time_limit_s,
                   convert_memory_mb=settings.convert_memory_mb, unpacked_mb=settings.max_unpacked_mb)

    def render_scale(self, width_px: float, height_px: float) -> float:
        """The factor (at most 1) that brings a render of this size within the render limit and memory."""
        allowed = self.render_pixels
        available = available_memory()
        if available is not None:
            allowed = min(allowed, max(MIN_RENDER_PIXELS, available // (BYTES_PER_PIXEL * RENDER_COPIES)))
        pixels = width_px * height_px
        if pixels <= allowed:
            return 1.0
        # The largest s with (width * s + 1) * (height * s + 1) <= allowed: renderers round each side up.
        sides = width_px + height_px
        return (-sides + (sides * sides + 4 * pixels * (allowed - 1)) ** 0.5) / (2 * pixels)

    def image_refusal(self, width: int, height: int, where: str) -> ImageTooLarge | None:
        if width * height <= self.image_pixels:
            return None
        return ImageTooLarge(f"{where} is {width}x{height} pixels; the limit is {self.image_pixels:,} pixels "
                             "(DOCGROUND_MAX_IMAGE_PIXELS)")


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes; None where there is no such file."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class PageProbe:
    """Checks the pages of one open PDF in a forked child, ahead of the caller; `refusal(n)` is None
    for a page that is safe to read, else the error that says why not. Not thread-safe (nor are
    PyMuPDF documents)."""

    def __init__(self, doc: pymupdf.Document, limits: PageLimits):
        self.doc = doc
        self.limits = limits
        self.refusals: dict[int, DocgroundError | None] = {}
        self._child: tuple[int, Connection] | None = None
        self._asked: deque[int] = deque()  # pages the child was asked for and has not answered yet
        self._since = 0.0  # when the child began the first of them
        self._finalizer: weakref.finalize | None = None
        self._unavailable = False

    def refusal(self, number: int) -> DocgroundError | None:
        while number not in self.refusals:
            if self._unavailable or (self._child is None and not self._start()):
                return None  # no process to check in: the page is read unchecked, as with time_s = 0
            try:
                if number not in self._asked:
                    self._ask([n for n in range(number, min(number + WINDOW, self.doc.page_count + 1))
                               if n not in self.refusals and n not in self._asked])
                self._receive()
            except (EOFError, OSError):  # the child died, on the page it had begun
                page = self._asked[0] if self._asked else number
                self.refusals[page] = PageUnreadable(f"page {page} crashed the PDF reader")
                self.close()
        return self.refusals[number]

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._child, self._finalizer = None, None
        self._asked.clear()

    # ---- the parent's side
    def _start(self) -> bool:
        self.close()
        ours, theirs = Pipe()
        try:
            pid = os.fork()
        except OSError as exc:  # out of processes, or strict overcommit refusing a large process's copy
            log.warning("page check unavailable, reading this document's pages unchecked: %s", exc)
            ours.close()
            theirs.close()
            self._unavailable = True
            return False
        if pid == 0:  # the child: check pages until told to stop, never return into the caller's code
            try:
                ours.close()
                _check_pages(self.doc, self.limits, theirs)
            finally:
                os._exit(0)
        theirs.close()
        self._child = (pid, ours)
        self._finalizer = weakref.finalize(self, _stop_child, pid, ours)
        return True

    def _ask(self, numbers: list[int]) -> None:
        if not self._asked:
            self._since = time.monotonic()
        self._child[1].send(numbers)
        self._asked.extend(numbers)

    def _receive(self) -> None:
        """One answer from the child, or the verdict on the page it is stuck on."""
        _, conn = self._child
        page = self._asked[0]
        left = self.limits.time_s - (time.monotonic() - self._since)
        if left > 0 and conn.poll(left):
            number, refusal = conn.recv()
            self._asked.popleft()
            self.refusals[number] = refusal
            # Lenient: the child may have begun the next page before this answer was read.
            self._since = time.monotonic()
            return
        self.refusals[page] = PageTimeout(
            f"reading page {page} took longer than {self.limits.time_s:g} s (DOCGROUND_PAGE_TIME_LIMIT_S)")
        self.close()  # a stuck child; the next page gets a new one


def _stop_child(pid: int, conn: Connection) -> None:
    conn.close()
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


# ---- the child's side
def _check_pages(doc: pymupdf.Document, limits: PageLimits, conn: Connection) -> None:
    # The parent's handlers (a server's graceful shutdown) are not the child's; it ends with its parent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _limit_memory(limits.memory_mb)
    while True:
        try:
            numbers = conn.recv()
        except EOFError:
            return
        for number in numbers:
            conn.send((number, _check(doc, number, limits)))


def _check(doc: pymupdf.Document, number: int, limits: PageLimits) -> DocgroundError | None:
    try:
        page = doc.load_page(number - 1)
        for image in page.get_images():
            refused = limits.image_refusal(image[2], image[3], f"an image on page {number}")
            if refused is not None:
                return refused
        _interpret(page)
    except MemoryError:
        return _too_much_memory(number, limits)
    except Exception as exc:  # MuPDF raises its own types for every kind of damage
        if "alloc (" in str(exc) or "out of memory" in str(exc).lower():  # MuPDF's malloc/realloc/calloc failed
            return _too_much_memory(number, limits)
        return PageUnreadable(f"page {number} could not be read: {exc}")
    return None


def _interpret(page: pymupdf.Page) -> None:
    """Everything on the page through MuPDF's interpreter, into a device that only adds up boxes."""
    mupdf = pymupdf.mupdf
    bounds = mupdf.FzRect(mupdf.FzRect.Fixed_EMPTY)  # the device writes here: it must outlive the device
    device = mupdf.FzDevice(mupdf.ll_fz_new_bbox_device(bounds.internal()))
    mupdf.fz_run_page(page.this, device, mupdf.FzMatrix(), mupdf.FzCookie())
    mupdf.fz_close_device(device)
    del device


def _too_much_memory(number: int, limits: PageLimits) -> PageUnreadable:
    return PageUnreadable(f"reading page {number} needs more than {limits.memory_mb} MiB (DOCGROUND_PAGE_MEMORY_MB)")


def _limit_memory(memory_mb: int) -> None:
    """Caps the child's address space at what it already maps plus the page budget."""
    try:
        with open("/proc/self/statm", "rb") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = mapped + memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (OSError, ValueError):
        pass  # no /proc, or a lower limit already set: the time limit still applies

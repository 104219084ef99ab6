"""The Celery app for the tests' worker processes (`celery -A docground_testing.workers_harness worker`): docground's
real app and tasks, with one difference: each page takes DOCGROUND_TEST_PAGE_DELAY_S longer to parse,
so that a test can kill a worker or restart Redis while a document is half done; and the pages of the
document DOCGROUND_TEST_FAIL_DOCUMENT raise a RuntimeError (a failure worth retrying), those of
DOCGROUND_TEST_BAD_DOCUMENT an InvalidRequest (bad input), each attempt counted in home/attempts/<document id>;
and the first batch with page DOCGROUND_TEST_HANG_PAGE hangs DOCGROUND_TEST_HANG_S longer (once: home/hung/<page>
says it did; the first DOCGROUND_TEST_HANG_TIMES such batches where set, home/hung/<page>.<n> for the n-th after
the first), deaf to Celery's soft time limit, so that only the hard limit ends it.
The engines (and so the pipeline fingerprint and the chunks) are the configured ones."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from docground.errors import InvalidRequest
from docground.ingest.engines.factory import build_router
from docground.ingest.routing import Router
from docground.service import Docground
from docground.settings import Settings
from docground.workers import tasks
from docground.workers.celery_app import app

DELAY_S = float(os.environ.get("DOCGROUND_TEST_PAGE_DELAY_S", "0"))
EMBED_DELAY_S = float(os.environ.get("DOCGROUND_TEST_EMBED_DELAY_S", "0"))
FAIL_DOCUMENT = os.environ.get("DOCGROUND_TEST_FAIL_DOCUMENT")
BAD_DOCUMENT = os.environ.get("DOCGROUND_TEST_BAD_DOCUMENT")
HANG_PAGE = int(os.environ.get("DOCGROUND_TEST_HANG_PAGE", "0"))
HANG_S = float(os.environ.get("DOCGROUND_TEST_HANG_S", "0"))
HANG_TIMES = int(os.environ.get("DOCGROUND_TEST_HANG_TIMES", "1"))


def hang_once(pages, hung: Path) -> None:
    """The first batch with HANG_PAGE (the first HANG_TIMES) sleeps HANG_S with the soft time limit's signal
    (SIGUSR1) blocked, as an engine stuck in native code would: the interpreter never gets to raise
    SoftTimeLimitExceeded."""
    if not HANG_PAGE or HANG_PAGE not in {p.number for p in pages}:
        return
    hung.mkdir(parents=True, exist_ok=True)
    for marker in [str(HANG_PAGE)] + [f"{HANG_PAGE}.{n}" for n in range(2, HANG_TIMES + 1)]:
        try:
            (hung / marker).open("x").close()
            break
        except FileExistsError:  # hung this time already: this is a batch sent again
            continue
    else:
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        time.sleep(HANG_S)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})


class PacedRouter(Router):
    """Marks each batch as started (a file named after its first page under home/started/), so that a
    test can kill the worker while the batch is in hand, then takes the delay."""

    def __init__(self, ocr, markers: Path):
        super().__init__(ocr=ocr)
        self.markers = markers

    def parse_many(self, pages, document_id):
        if document_id in (FAIL_DOCUMENT, BAD_DOCUMENT):
            attempts = self.markers.parent / "attempts"
            attempts.mkdir(parents=True, exist_ok=True)
            with open(attempts / document_id, "a") as f:
                f.write(f"{time.time()}\n")
            if document_id == BAD_DOCUMENT:
                raise InvalidRequest("the test harness refuses this document")
            raise RuntimeError("the test harness's engine broke")
        if pages:
            self.markers.mkdir(parents=True, exist_ok=True)
            (self.markers / str(pages[0].number)).touch()
        hang_once(pages, self.markers.parent / "hung")
        time.sleep(DELAY_S * len(pages))
        return super().parse_many(pages, document_id)


class PacedDocground(Docground):
    """Marks a document's chunking and embedding as started (home/embedding/<document id>), then takes
    DOCGROUND_TEST_EMBED_DELAY_S, so that a test can kill the worker mid-embedding."""

    def _prepare(self, kb, doc_id, filename, layouts):
        if EMBED_DELAY_S:
            markers = self.settings.home / "embedding"
            markers.mkdir(parents=True, exist_ok=True)
            (markers / doc_id).touch()
            time.sleep(EMBED_DELAY_S)
        return super()._prepare(kb, doc_id, filename, layouts)


def paced_service(settings: Settings) -> Docground:
    return PacedDocground(settings, router=PacedRouter(build_router(settings).ocr, settings.home / "started"))


app.conf[tasks.SERVICE_SETTING] = paced_service
__all__ = ["app"]

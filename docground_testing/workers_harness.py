"""The Celery app for the tests' worker processes (`celery -A docground_testing.workers_harness worker`): docground's
real app and tasks, with one difference: each page takes DOCGROUND_TEST_PAGE_DELAY_S longer to parse,
so that a test can kill a worker or restart Redis while a document is half done. The engines (and so
the pipeline fingerprint and the chunks) are the configured ones."""

from __future__ import annotations

import os
import time
from pathlib import Path

from docground.ingest.engines.factory import build_router
from docground.ingest.routing import Router
from docground.service import Docground
from docground.settings import Settings
from docground.workers import tasks
from docground.workers.celery_app import app

DELAY_S = float(os.environ.get("DOCGROUND_TEST_PAGE_DELAY_S", "0"))


class PacedRouter(Router):
    """Marks each batch as started (a file named after its first page under home/started/), so that a
    test can kill the worker while the batch is in hand, then takes the delay."""

    def __init__(self, ocr, markers: Path):
        super().__init__(ocr=ocr)
        self.markers = markers

    def parse_many(self, pages, document_id):
        if pages:
            self.markers.mkdir(parents=True, exist_ok=True)
            (self.markers / str(pages[0].number)).touch()
        time.sleep(DELAY_S * len(pages))
        return super().parse_many(pages, document_id)


def paced_service(settings: Settings) -> Docground:
    return Docground(settings, router=PacedRouter(build_router(settings).ocr, settings.home / "started"))


app.conf[tasks.SERVICE_SETTING] = paced_service
__all__ = ["app"]

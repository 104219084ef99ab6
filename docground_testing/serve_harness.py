"""`docground serve` for tests (`python -m docground_testing.serve_harness --port N`): the real app, settings and
runner, with two switches on the store write of a document's chunks, so that a test can kill the store's owner in
the middle of an index write and look at what a restarted owner answers before it writes again:
- DOCGROUND_TEST_UPSERT_PAUSE_S: the write upserts the first half (flushed to disk), marks
  home/upserting/<document id>, and waits that long before writing them all as usual;
- DOCGROUND_TEST_WRITE_HOLD=1: the write marks home/holding/<document id> before writing anything and waits until
  home/release/<document id> exists."""

from __future__ import annotations

import os
import sys
import time

import uvicorn

from docground.api.app import create_app
from docground.api.home import client_url
from docground.service import Docground
from docground.settings import get_settings

PAUSE_S = float(os.environ.get("DOCGROUND_TEST_UPSERT_PAUSE_S", "0"))
HOLD = os.environ.get("DOCGROUND_TEST_WRITE_HOLD") == "1"


class PausingDocground(Docground):
    def _write(self, kb, doc_id, chunks, fingerprint):
        if HOLD:
            self._mark("holding", doc_id)
            while not (self.settings.home / "release" / doc_id).exists():
                time.sleep(0.1)
        if PAUSE_S and len(chunks) > 1:
            store = self.store(kb)
            store.upsert(chunks[:len(chunks) // 2])
            store.flush()
            self._mark("upserting", doc_id)
            time.sleep(PAUSE_S)
        return super()._write(kb, doc_id, chunks, fingerprint)

    def _mark(self, folder: str, doc_id: str) -> None:
        markers = self.settings.home / folder
        markers.mkdir(parents=True, exist_ok=True)
        (markers / doc_id).touch()


def main() -> None:
    port = int(sys.argv[sys.argv.index("--port") + 1])
    settings = get_settings()
    app = create_app(settings, PausingDocground(settings), lock_url=client_url("127.0.0.1", port))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info")


if __name__ == "__main__":
    main()

"""Ingestion under load: N concurrent uploads through the HTTP API while queries run, with the production
shape (a private redis-server, `docground worker` processes, the API owning the embedded store) or the
embedded default (no broker: the API's own ingestion thread). Reports query latency while idle and
during the load, upload latency, ingestion throughput, and errors (any non-2xx answer or failed document).

    .venv/bin/python bench/load.py                       # celery: 20 uploads, 1 worker (prefork, 2 processes)
    .venv/bin/python bench/load.py --mode inprocess
    .venv/bin/python bench/load.py --uploads 20 --pages 8 --workers 1 --concurrency 2 --query-threads 2

On a 2-core machine the workers, the API and the query clients share the cores: query latency under
load mostly measures that contention.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from docground_testing.load import local_stack, run_load, table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("celery", "inprocess"), default="celery")
    ap.add_argument("--uploads", type=int, default=20)
    ap.add_argument("--pages", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=2, help="processes per worker")
    ap.add_argument("--query-threads", type=int, default=2)
    ap.add_argument("--url", help="an already running docground API (then nothing is started here)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="docground-load-") as tmp:
        if args.url:
            api_url, stop, label = args.url, (lambda: None), args.url
        else:
            api, stop = local_stack(args.mode, Path(tmp) / "home", args.workers, args.concurrency)
            api_url = api.url
            label = (f"celery: {args.workers} worker(s) x {args.concurrency} processes, private redis-server"
                     if args.mode == "celery" else "in-process (no broker)")
        try:
            result = run_load(api_url, "load", args.uploads, args.pages, args.query_threads)
        finally:
            stop()
    print(table(result, label))
    for e in result.errors[:10]:
        print("error:", e)
    sys.exit(1 if result.errors else 0)


if __name__ == "__main__":
    main()

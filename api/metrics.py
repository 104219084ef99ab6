"""Prometheus metrics at GET /metrics: request and query latency, ingest progress and queue depth.

Ingest figures are read from the registry at scrape time, not counted in this process: Celery workers
in other processes parse the pages, and the registry is where every one of them records progress.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func, select
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from docground.registry import Document, Registry

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RATE_WINDOW_S = 60.0
WAITING = ("queued", "processing")


class IngestCollector:
    """Pages ingested (a counter, and pages/s over the last minute of scrapes), documents by status, and
    the queue: documents waiting or in progress and the pages they have left."""

    def __init__(self, registry: Callable[[], Registry | None]):
        self.registry = registry
        self._samples: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()

    def collect(self):
        registry = self.registry()
        if registry is None:  # the service is still starting
            return
        with registry.session() as s:
            pages_done = float(s.scalar(select(func.coalesce(func.sum(Document.pages_done), 0))) or 0)
            rows = s.execute(select(Document.status, func.count(),
                                    func.coalesce(func.sum(Document.pages_total - Document.pages_done), 0))
                             .group_by(Document.status)).all()
        pages = CounterMetricFamily("docground_ingest_pages", "pages ingested (all documents in the registry)")
        pages.add_metric([], pages_done)
        yield pages
        rate = GaugeMetricFamily("docground_ingest_pages_per_second", "pages ingested per second, last minute")
        rate.add_metric([], self._rate(pages_done))
        yield rate
        docs = GaugeMetricFamily("docground_documents", "documents by status", labels=["status"])
        for status, count, _ in rows:
            docs.add_metric([status or "unknown"], count)
        yield docs
        depth = GaugeMetricFamily("docground_queue_depth", "documents queued or being processed")
        depth.add_metric([], sum(count for status, count, _ in rows if status in WAITING))
        yield depth
        left = GaugeMetricFamily("docground_queue_pages", "pages left to parse in queued or processing documents")
        left.add_metric([], float(sum(max(0, p or 0) for status, _, p in rows if status in WAITING)))
        yield left

    def _rate(self, total: float) -> float:
        now = time.monotonic()
        with self._lock:
            self._samples.append((now, total))
            while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
                self._samples.popleft()
            (t0, v0) = self._samples[0]
        return max(0.0, (total - v0) / (now - t0)) if now > t0 else 0.0


class Metrics:
    def __init__(self, registry: Callable[[], Registry | None]):
        self.registry = CollectorRegistry()
        self.http_seconds = Histogram("docground_http_request_seconds", "HTTP request latency",
                                      ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.query_seconds = Histogram("docground_query_seconds", "query latency (retrieval, answer, citations)",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(IngestCollector(registry))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = request.scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        metrics: Metrics = request.app.state.metrics
        metrics.http_seconds.labels(request.method, template, str(response.status_code)).observe(elapsed)
        if template.endswith("/query") and response.status_code == 200:
            metrics.query_seconds.observe(elapsed)
        return response


def install_metrics(app: FastAPI) -> None:
    def service():
        return getattr(app.state, "service", None)
    app.state.metrics = Metrics(lambda: service().registry if service() is not None else None)
    app.add_middleware(MetricsMiddleware)

    @app.get("/metrics", operation_id="metrics", tags=["health"], response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                              "description": "Prometheus text exposition (open, like /healthz)"}})
    def metrics_endpoint(request: Request) -> Response:
        return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

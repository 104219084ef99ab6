"""The HTTP service: one Docground service per process owns the stores."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from docground import __version__
from docground.service import Docground
from docground.settings import Settings, get_settings

from .errors import install_error_handlers
from .routes import health, query
from .routes import documents


def create_app(settings: Settings | None = None, service: Docground | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.ready = False
        app.state.service = service or Docground(settings)
        # Load the embedding model before answering ready: the first query should not pay for it.
        await run_in_threadpool(lambda: app.state.service.embedder)
        app.state.ready = True
        try:
            yield
        finally:
            app.state.service.close()

    app = FastAPI(title="docground", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(query.router)
    app.include_router(documents.router)  # its lifespan starts the ingestion runner
    return app

"""The HTTP service: one Docground service per process owns the stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

from docground import __version__
from docground.service import Docground
from docground.settings import Settings, get_settings
from docground.webhooks import WebhookSender
from docground.workers.runner import Runner, make_runner

from . import mcp_server
from .auth import BodySizeLimit, Keys, RateLimiter, declare_guard, guard
from .errors import install_error_handlers
from .home import serving_home
from .metrics import install_metrics
from .routes import documents, health, kbs, openai_compat, query, viewer, webhooks


def create_app(settings: Settings | None = None, service: Docground | None = None,
               lock_url: str | None = None) -> FastAPI:
    """`lock_url` (docground serve): the address written to the home's lock file (api/home.py) while the app
    runs, so that the CLI on the same home goes through this server instead of opening its stores."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.ready = False
        # The lock first: a CLI started meanwhile waits for this server instead of racing it for the stores.
        with serving_home(settings.home, lock_url):
            app.state.service = service or Docground(settings)
            app.state.keys = Keys(app.state.service.registry)
            # Load the embedding model before answering ready: the first query should not pay for it.
            await run_in_threadpool(lambda: app.state.service.embedder)
            try:
                async with running_jobs(app.state.service) as runner, sending_webhooks(app.state.service):
                    app.state.runner = runner  # the documents routes hand uploads to it
                    app.state.ready = True
                    yield
            finally:
                app.state.service.close()

    # guard checks every /v1 route (key, tenant scope, rate limit), including routes added later.
    app = FastAPI(title="docground", version=__version__, lifespan=lifespan, dependencies=[Depends(guard)])
    app.state.settings = settings
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
    install_error_handlers(app)
    declare_guard(app)  # the schema's security and guard errors, for every route registered below too
    install_metrics(app)
    app.add_middleware(BodySizeLimit, max_bytes=int(settings.max_upload_mb * 2**20))
    app.include_router(health.router)
    app.include_router(query.router)
    app.include_router(documents.router)
    app.include_router(kbs.router)
    app.include_router(viewer.router)
    app.include_router(openai_compat.router)
    app.include_router(mcp_server.http_router(settings))  # /mcp; its lifespan runs the MCP sessions
    webhooks.declare(app)
    return app


@asynccontextmanager
async def sending_webhooks(service: Docground) -> AsyncIterator[WebhookSender]:
    """The threads that send webhook events (docground/webhooks.py), whichever process wrote them: those a
    stopped server left pending go out as this one starts."""
    sender = WebhookSender(service.registry, service.settings)
    sender.start()
    try:
        yield sender
    finally:
        await run_in_threadpool(sender.close)


@asynccontextmanager
async def running_jobs(service: Docground) -> AsyncIterator[Runner]:
    """The runner uploads are handed to (Celery workers with a broker, else threads of this process), started
    and closed with the app, and only after the service exists: it resumes unfinished jobs as it starts."""
    runner = make_runner(service)
    await run_in_threadpool(runner.start)
    try:
        yield runner
    finally:
        await run_in_threadpool(runner.close)

"""Error sanitation: DocgroundErrors answer with their code and message; anything else answers a
generic 500 without internals (the details go to the log)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from docground.errors import DocgroundError

log = logging.getLogger("docground.api")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DocgroundError)
    async def docground_error(_: Request, exc: DocgroundError) -> JSONResponse:
        return JSONResponse(status_code=exc.http_status, content=exc.to_dict())

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
        return JSONResponse(status_code=422, content={"code": "invalid_request", "message": message})

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"code": "internal_error", "message": "internal error"})

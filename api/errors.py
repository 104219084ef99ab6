"""Error sanitation: DocgroundErrors answer with their code and message; anything else answers a
generic 500 without internals (the details go to the log). Every error is one model, `ErrorBody`
(`code`, `message`), and `errors(...)` declares a route's error statuses with it in the OpenAPI schema.
README.md ("Error codes") lists every code with its status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from docground.errors import DocgroundError

from .models import ErrorBody

log = logging.getLogger("docground.api")

# What each status means in this API, and the codes it carries (README.md: "Error codes").
STATUS_MEANINGS = {
    400: "the request cannot be served as asked (empty_file, llm_not_configured, malformed_request)",
    401: "missing or unknown API key (unauthorized)",
    403: "the key does not reach this knowledge base or route (forbidden)",
    404: "no such knowledge base, document, page or figure, or one of another tenant (not_found)",
    409: "conflicts with the current state (already_exists, idempotency_conflict, document_not_ready, store_busy)",
    413: "too large (payload_too_large, too_many_pages, image_too_large, unpacked_too_large)",
    415: "not a PDF, page image, Office document (DOCX, PPTX, XLSX, ODT, ODP, ODS, RTF, DOC, PPT, XLS), web page, "
         "Markdown or Unicode text (unsupported_file_type)",
    422: "invalid request or unreadable file (invalid_request, invalid_callback_url, corrupt_file, encrypted_file, "
         "conversion_failed, page_timeout, page_unreadable, no_readable_pages)",
    429: "rate limit reached (rate_limited)",
    500: "internal error (internal_error, pipeline_mismatch); details are in the server log",
    502: "the configured LLM endpoint failed (llm_unavailable)",
    503: "a configured OCR backend, or LibreOffice for Office documents, is unavailable (ocr_unavailable, "
         "converter_unavailable)",
    507: "the data directory's disk is full or over quota (no_space); free space there and send it again",
}


FRAMEWORK_CODES = {400: "malformed_request", 404: "not_found", 405: "method_not_allowed"}
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def errors(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses` for the error statuses a route can answer, each with ErrorBody."""
    return {status: {"model": ErrorBody, "description": STATUS_MEANINGS[status]} for status in statuses}


def declare_errors(schema: dict, operation: dict, statuses) -> None:
    """Adds error statuses (ErrorBody) to one operation of a built schema, keeping what it declares."""
    schema.setdefault("components", {}).setdefault("schemas", {}).setdefault(
        "ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}"))
    for status in statuses:
        operation.setdefault("responses", {}).setdefault(str(status), {
            "description": STATUS_MEANINGS[status], "content": {"application/json": {"schema": ERROR_REF}}})


def declare_error_model(app: FastAPI) -> None:
    """The schema tells what these handlers answer: any operation may fail with 500 internal_error, one
    with a body with 400 malformed_request, and a 422 is always ErrorBody (FastAPI's default would
    declare its HTTPValidationError)."""
    build = app.openapi

    def openapi() -> dict:
        schema = build()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                invalid = operation.get("responses", {}).get("422")
                if invalid and "ErrorBody" not in str(invalid):
                    operation["responses"]["422"] = {"description": STATUS_MEANINGS[422],
                                                     "content": {"application/json": {"schema": ERROR_REF}}}
                # a body the framework cannot parse answers 400 malformed_request (framework_error)
                declare_errors(schema, operation, (400, 500) if "requestBody" in operation else (500,))
        for operations in schema.get("webhooks", {}).values():  # what docground sends: a receiver's errors are its own
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        for unused in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(unused, None)
        return schema

    app.openapi = openapi


def install_error_handlers(app: FastAPI) -> None:
    declare_error_model(app)

    @app.exception_handler(DocgroundError)
    async def docground_error(_: Request, exc: DocgroundError) -> JSONResponse:
        return JSONResponse(status_code=exc.http_status, content=exc.to_dict())

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
        return JSONResponse(status_code=422, content={"code": "invalid_request", "message": message})

    @app.exception_handler(HTTPException)
    async def framework_error(_: Request, exc: HTTPException) -> JSONResponse:
        # Raised by the framework itself (an unparseable body: 400, an unknown path: 404, ...): the same model.
        code = FRAMEWORK_CODES.get(exc.status_code, "http_error")
        return JSONResponse(status_code=exc.status_code, content={"code": code, "message": str(exc.detail)},
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"code": "internal_error", "message": "internal error"})

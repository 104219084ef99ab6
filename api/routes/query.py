from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from docground.errors import DocgroundError

from ..errors import errors
from ..models import KbName, QueryRequest, QueryResponse

log = logging.getLogger("docground.api")
router = APIRouter(tags=["query"])


@router.post("/v1/knowledge-bases/{kb}/query", response_model=QueryResponse, operation_id="query",
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "JSON, or with stream=true server-sent events: `delta` events "
                                             "({\"text\"}) while generating, then one `done` event (the "
                                             "QueryResponse, markers repaired, citations verified) or `error`"},
                        **errors(400, 404, 409, 413, 422, 502)})
def query(kb: KbName, body: QueryRequest, request: Request):
    service = request.app.state.service
    if not body.stream:
        return service.query(kb, body.query, body.top_k, body.mode)
    events = service.query_stream(kb, body.query, body.top_k, body.mode)  # errors before streaming answer as JSON
    return StreamingResponse(_sse(events), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _sse(events: Iterator[tuple[str, dict]]) -> Iterator[str]:
    try:
        for name, data in events:
            yield f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
    except DocgroundError as exc:  # the status line is sent already: the error travels as an event
        yield f"event: error\ndata: {json.dumps(exc.to_dict())}\n\n"
    except Exception:
        log.exception("streaming an answer failed")
        yield 'event: error\ndata: {"code": "internal_error", "message": "internal error"}\n\n'

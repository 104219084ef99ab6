from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    ready = getattr(request.app.state, "ready", False)
    return JSONResponse(status_code=200 if ready else 503, content={"status": "ok" if ready else "starting"})

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok", "starting"]


@router.get("/healthz", operation_id="healthz", response_model=Health,
            responses={503: {"model": Health, "description": "starting: not ready for requests yet"}})
def healthz(request: Request) -> JSONResponse:
    ready = getattr(request.app.state, "ready", False)
    return JSONResponse(status_code=200 if ready else 503, content={"status": "ok" if ready else "starting"})

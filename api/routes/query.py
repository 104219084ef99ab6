from __future__ import annotations

from fastapi import APIRouter, Request

from ..models import QueryRequest, QueryResponse

router = APIRouter(tags=["query"])


@router.post("/v1/knowledge-bases/{kb}/query", response_model=QueryResponse)
def query(kb: str, body: QueryRequest, request: Request) -> QueryResponse:
    return request.app.state.service.query(kb, body.query, body.top_k)

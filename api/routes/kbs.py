"""Knowledge bases: the admin creates them and gets each one's API key; a KB key sees only its own.
A knowledge base's settings (its webhook callback URL) and webhook secret are its key's to change."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select

from docground.errors import NotFound
from docground.registry import KnowledgeBase
from docground.webhooks import check_callback_url

from ..auth import caller, for_any_tenant, require_admin
from ..errors import errors
from ..models import (
    KbName,
    KnowledgeBaseCreate,
    KnowledgeBaseInfo,
    KnowledgeBaseKey,
    KnowledgeBaseUpdate,
    WebhookSecret,
)

# Links let generated clients (and schemathesis' stateful runs) follow a new knowledge base's name.
KB_LINKS = {"links": {
    op: {"operationId": op, "parameters": {"kb": "$response.body#/name"}}
    for op in ("upload_document", "query", "get_knowledge_base", "list_documents", "rotate_key",
               "update_knowledge_base", "rotate_webhook_secret")}}

router = APIRouter(tags=["knowledge bases"])


@router.post("/v1/knowledge-bases", response_model=KnowledgeBaseKey, status_code=201,
             dependencies=[Depends(require_admin)], operation_id="create_knowledge_base",
             responses={201: KB_LINKS, **errors(409, 413, 422)})
def create(body: KnowledgeBaseCreate, request: Request) -> KnowledgeBaseKey:
    callback_url = _checked(request, body.callback_url)
    key = KnowledgeBaseKey(name=body.name, api_key=request.app.state.keys.issue(body.name, create=True))
    if callback_url is not None:
        request.app.state.service.registry.set_callback_url(body.name, callback_url)
    return key


@router.patch("/v1/knowledge-bases/{kb}", response_model=KnowledgeBaseInfo, operation_id="update_knowledge_base",
              responses=errors(404, 422))
def update(kb: KbName, body: KnowledgeBaseUpdate, request: Request) -> KnowledgeBaseInfo:
    """Change the knowledge base's settings: `callback_url` (null removes it). Fields left out stay."""
    registry = request.app.state.service.registry
    if "callback_url" in body.model_fields_set:
        registry.set_callback_url(kb, _checked(request, body.callback_url))
    return get_kb(kb, request)


@router.post("/v1/knowledge-bases/{kb}/webhook-secret", response_model=WebhookSecret,
             operation_id="rotate_webhook_secret", responses=errors(404, 422))
def rotate_webhook_secret(kb: KbName, request: Request) -> WebhookSecret:
    """A new secret for the knowledge base's webhooks, shown once; every attempt from now on (retries of
    earlier events too) is signed with it, and the old one stops verifying."""
    return WebhookSecret(name=kb, secret=request.app.state.service.registry.rotate_webhook_secret(kb))


@router.post("/v1/knowledge-bases/{kb}/api-key", response_model=KnowledgeBaseKey,
             dependencies=[Depends(require_admin)], operation_id="rotate_key", responses=errors(404, 422))
def rotate_key(kb: KbName, request: Request) -> KnowledgeBaseKey:
    """A new key for the knowledge base; the old one stops working."""
    return KnowledgeBaseKey(name=kb, api_key=request.app.state.keys.issue(kb, create=False))


@router.get("/v1/knowledge-bases", response_model=list[KnowledgeBaseInfo], operation_id="list_knowledge_bases")
@for_any_tenant
def list_kbs(request: Request) -> list[KnowledgeBaseInfo]:
    registry = request.app.state.service.registry
    own = caller(request).kb
    return [_info(registry, kb) for kb in _names(registry) if own is None or kb.name == own]


@router.get("/v1/knowledge-bases/{kb}", response_model=KnowledgeBaseInfo, operation_id="get_knowledge_base",
            responses=errors(404, 422))
def get_kb(kb: KbName, request: Request) -> KnowledgeBaseInfo:
    registry = request.app.state.service.registry
    row = registry.get_kb(kb)
    if row is None:
        raise NotFound(f"knowledge base {kb!r} does not exist")
    return _info(registry, row)


def _names(registry) -> list[KnowledgeBase]:
    with registry.session() as s:
        return list(s.scalars(select(KnowledgeBase).order_by(KnowledgeBase.name)))


def _info(registry, row) -> KnowledgeBaseInfo:
    return KnowledgeBaseInfo(name=row.name, documents=len(registry.documents(row.name)),
                             has_api_key=row.api_key_hash is not None, callback_url=row.callback_url,
                             has_webhook_secret=row.webhook_secret is not None)


def _checked(request: Request, callback_url: str | None) -> str | None:
    if callback_url is None:
        return None
    return check_callback_url(callback_url, request.app.state.service.settings.webhook_allow_private)

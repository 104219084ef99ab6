"""OpenAI-compatible chat: any OpenAI client or chat frontend (Open WebUI, LibreChat...) talks to a knowledge
base as if it were a model.

- `GET /v1/models`: the knowledge bases the key may read, one model each (the model id is the name).
- `POST /v1/chat/completions`: answers the last user message from the knowledge base named by `model`,
  extractive, or generated through DOCGROUND_LLM_ENDPOINT (`mode`, as in /query). Earlier turns make a
  follow-up standalone first (`standalone_question`). `stream: true` answers in OpenAI's chunk format.

The reply's content is the answer with [n] markers, then a "Sources" list with viewer links (what a chat
frontend shows). Two extra top-level fields carry the rest, in the completion and in the last stream chunk:
- `citations`: [{n, quote, document_id, filename, page, boxes, boxes_pt, viewer_url}] for the [n] markers;
- `docground`: {question (the standalone question that was searched), answer_mode, knowledge_base}.
Extra request fields: `top_k` (passages, 5) and `mode` (auto | extractive | generate).

Streaming sends the verified answer, not the model's raw tokens: markers are repaired against the sources
once the whole answer is there, and the content must agree with `citations`.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from docground.errors import DocgroundError, Forbidden, InvalidRequest
from docground.retrieval import selection
from docground.retrieval.answers import extractive_answer
from docground.retrieval.generation import ChatClient
from docground.retrieval.lexical import STOPWORDS
from docground.retrieval.tokens import terms
from docground.settings import Settings

from ..auth import caller, for_any_tenant
from ..links import LinkedCitation, base_url, linked_citations
from ..models import AnswerMode, QueryResponse
from .kbs import _names

log = logging.getLogger("docground.api")
router = APIRouter(tags=["openai"])

# ---- follow-up questions without an LLM: a documented rule.
# A follow-up needs the conversation when it names its subject by a pronoun ("When did it open?"), opens
# like "and ..."/"what about ...", or has fewer than FOLLOW_UP_MIN_TOPIC_WORDS words that are not stopwords
# ("Why?", "How many stations?"). Then the topic words of the previous (standalone) question go in front.
ANAPHORS = frozenset({"it", "its", "they", "them", "their", "theirs", "he", "him", "his", "she", "her", "hers",
                      "this", "that", "these", "those", "there"})
OPENERS = ("and ", "also ", "what about ", "how about ", "and what ", "same for ")
FOLLOW_UP_MIN_TOPIC_WORDS = 3
CONTEXT_TOPIC_WORDS = 8
REWRITE_PROMPT = (
    "Rewrite the user's last question as one standalone question that can be understood without the "
    "conversation: name what pronouns and ellipses refer to. Do not answer it. Reply with the question only."
)
ASSISTANT_CHARS = 600  # of each earlier answer shown to the rewriting model
NOT_FOUND_TEXT = "The documents in this knowledge base do not answer this question."


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return " ".join(p.get("text", "") for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, max_tokens...: accepted, not used
    model: str = Field(description="the knowledge base's name")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    top_k: int = Field(5, ge=1, le=50)
    mode: AnswerMode = "auto"


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "docground"


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]


@router.get("/v1/models", response_model=ModelList, include_in_schema=False)
@for_any_tenant
def list_models(request: Request) -> ModelList:
    """The knowledge bases this key may read, as models."""
    own = caller(request).kb
    rows = _names(request.app.state.service.registry)
    return ModelList(data=[ModelCard(id=r.name, created=int(r.created_at.timestamp()) if r.created_at else 0)
                           for r in rows if own is None or r.name == own])


@router.post("/v1/chat/completions", include_in_schema=False)
@for_any_tenant
def chat_completions(body: ChatRequest, request: Request):
    who = caller(request)
    kb = body.model
    if not who.admin and kb != who.kb:
        raise Forbidden(f"this API key does not grant access to knowledge base {kb!r}")
    service = request.app.state.service
    turn = standalone_question(body.messages, service.settings, body.mode)
    reply = Reply(kb, turn.search, base_url(service.settings, str(request.base_url)))
    if turn.search != turn.answer_by:  # a follow-up the rule completed: an extractive answer, one event
        response = follow_up_answer(service, kb, turn, body.top_k)
        return reply.completion(response) if not body.stream else \
            _streaming(reply.chunks(iter([("done", response.model_dump(mode="json"))])))
    if not body.stream:
        return reply.completion(service.query(kb, turn.search, body.top_k, body.mode))
    # errors before streaming answer as JSON
    return _streaming(reply.chunks(service.query_stream(kb, turn.search, body.top_k, body.mode)))


def _streaming(chunks: Iterator[str]) -> StreamingResponse:
    return StreamingResponse(chunks, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class Reply:
    """One answer in OpenAI's shapes: a chat.completion, or chat.completion.chunk events."""

    def __init__(self, kb: str, question: str, base: str):
        self.kb, self.question, self.base = kb, question, base
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.created = int(time.time())

    def content(self, citations: list[LinkedCitation], response: QueryResponse) -> str:
        if not response.answer:
            return NOT_FOUND_TEXT
        cited = {}
        for c in citations:
            cited.setdefault(c.n, c)
        sources = [f"[{n}] {c.filename}, page {c.page}: {c.viewer_url}" for n, c in sorted(cited.items())]
        return response.answer + ("\n\nSources:\n" + "\n".join(sources) if sources else "")

    def extras(self, response: QueryResponse) -> tuple[str, dict]:
        citations = linked_citations(response, self.base)
        return self.content(citations, response), {
            "citations": [c.model_dump(mode="json") for c in citations],
            "docground": {"question": self.question, "answer_mode": response.answer_mode, "knowledge_base": self.kb},
        }

    def completion(self, response: QueryResponse) -> dict:
        content, extras = self.extras(response)
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.kb,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}} | extras

    def chunk(self, delta: dict, finish_reason: str | None = None, **extras) -> str:
        data = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.kb,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]} | extras
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    def chunks(self, events: Iterator[tuple[str, dict]]) -> Iterator[str]:
        yield self.chunk({"role": "assistant", "content": ""})
        try:
            for name, data in events:
                if name != "done":
                    continue  # the model's raw deltas: the verified answer follows once it is complete
                content, extras = self.extras(QueryResponse.model_validate(data))
                for piece in re.findall(r"\S+\s*|\s+", content):
                    yield self.chunk({"content": piece})
                yield self.chunk({}, "stop", **extras)
        except DocgroundError as exc:  # the status line is sent already: the error travels as a chunk
            yield f"data: {json.dumps({'error': exc.to_dict()})}\n\n"
        except Exception:
            log.exception("streaming a chat completion failed")
            yield 'data: {"error": {"code": "internal_error", "message": "internal error"}}\n\n'
        yield "data: [DONE]\n\n"


# ---- follow-ups
@dataclass(frozen=True)
class Turn:
    search: str  # the last user message made standalone: what retrieval looks for
    answer_by: str  # what the answer's sentences are chosen by (the rule keeps the follow-up's own words)


def standalone_question(messages: list[ChatMessage], settings: Settings, mode: AnswerMode = "auto") -> Turn:
    """The last user message as a question that stands alone: rewritten by the LLM when one is configured
    (and the mode may use it), else completed by the rule above."""
    asked = [m.text.strip() for m in messages if m.role == "user" and m.text.strip()]
    if not asked:
        raise InvalidRequest("messages: there is no user message to answer")
    if len(asked) > 1 and settings.llm_endpoint and mode != "extractive":
        rewritten = llm_rewrite(messages, settings)
        if rewritten:
            return Turn(rewritten, rewritten)
    if len(asked) == 1 or mode == "generate":  # generate without an LLM fails in the service, as on /query
        return Turn(asked[-1], asked[-1])
    search = rule_rewrite(asked)
    # The previous topic finds the passages; the follow-up's own words pick the answer among them, else the
    # earlier topic (more words) would win over what is asked now.
    return Turn(search, asked[-1] if topic_words(asked[-1]) else search)


def follow_up_answer(service, kb: str, turn: Turn, top_k: int) -> QueryResponse:
    """An extractive answer from the passages the standalone question finds, chosen by the follow-up."""
    hits = service.retrieve(kb, turn.search, max(top_k, selection.RERANK_DEPTH))
    return extractive_answer(turn.answer_by, hits, service.text_layer, top_k=top_k)


def rule_rewrite(asked: list[str]) -> str:
    """Each user question in turn, made standalone from the one before it (see ANAPHORS above)."""
    standalone = asked[0]
    for question in asked[1:]:
        if needs_context(question):
            context = topic_words(standalone)
            standalone = f"{' '.join(context)} {question}" if context else question
        else:
            standalone = question
    return standalone


def needs_context(question: str) -> bool:
    words = terms(question)
    if not words:
        return False
    lowered = question.lower().lstrip()
    return (any(w in ANAPHORS for w in words) or lowered.startswith(OPENERS)
            or len([w for w in words if w not in STOPWORDS]) < FOLLOW_UP_MIN_TOPIC_WORDS)


def topic_words(question: str) -> list[str]:
    seen: list[str] = []
    for word in terms(question):
        if word not in STOPWORDS and word not in ANAPHORS and word not in seen:
            seen.append(word)
    return seen[:CONTEXT_TOPIC_WORDS]


def llm_rewrite(messages: list[ChatMessage], settings: Settings) -> str | None:
    at = max(i for i, m in enumerate(messages) if m.role == "user" and m.text.strip())
    turns = []
    for m in messages[:at]:
        if m.role in ("user", "assistant") and m.text.strip():
            text = m.text.split("\n\nSources:\n")[0]  # our own footer says nothing about the question
            turns.append(f"{m.role.capitalize()}: {text[:ASSISTANT_CHARS]}")
    question = messages[at].text.strip()
    prompt = "Conversation:\n" + "\n".join(turns) + f"\n\nLast question: {question}\n\nStandalone question:"
    client = ChatClient(settings.llm_endpoint, settings.llm_model, settings.llm_api_key, settings.llm_timeout_s, 128)
    rewritten = client.complete([{"role": "system", "content": REWRITE_PROMPT}, {"role": "user", "content": prompt}])
    lines = [line.strip() for line in rewritten.strip().splitlines() if line.strip()]
    return lines[0] if lines else None

"""DeepSeek-OCR-2 behind an OpenAI-compatible endpoint, such as

    vllm serve deepseek-ai/DeepSeek-OCR-2 --logits-processors \\
        vllm.model_executor.models.deepseek_ocr:NGramPerReqLogitsProcessor \\
        --no-enable-prefix-caching --mm-processor-cache-gb 0 --api-server-count 4

Every page is one chat completion (the page as a base64 PNG, then the prompt text; the server puts the image
token in front). Requests in flight are bounded; each has a timeout; overloads, server errors and dropped
connections are retried with backoff. The server batches whatever is in flight. `stream` asks for one page
as server-sent events and hands each piece of text on as it arrives (`docground convert --stream`).
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import httpx

from .schema import FINISH_ERROR, FINISH_LENGTH, FINISH_STOP, Generation, PageRequest, TextSink

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 10.0


def image_data_url(request: PageRequest) -> str:
    buf = io.BytesIO()
    # compress_level 1: a 144 DPI page encodes in a few ms instead of ~100, and PNG stays lossless
    request.image.convert("RGB").save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def chat_payload(request: PageRequest, model: str) -> dict:
    s = request.sampling
    body = {
        "model": model,
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": image_data_url(request)}},
            {"type": "text", "text": request.task},
        ]}],
        "temperature": 0.0,
        "max_tokens": s.max_tokens,
        # the grounding tags are special tokens: skipping them would leave labels and boxes unparseable
        "skip_special_tokens": False,
        "vllm_xargs": s.ngram_args(),
    }
    if s.ignore_eos:
        body["ignore_eos"] = True
    return body


def read_completion(data: dict) -> Generation:
    try:
        choice = data["choices"][0]
        text = choice["message"]["content"] or ""
        reason = choice.get("finish_reason")
        tokens = int((data.get("usage") or {}).get("completion_tokens") or 0)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        return Generation.failed(f"unexpected response from the endpoint: {exc!r}")
    return finished(text, reason, tokens)


def finished(text: str, reason: str | None, tokens: int) -> Generation:
    if reason == "stop":
        return Generation(text=text, finish_reason=FINISH_STOP, tokens=tokens)
    if reason == "length":
        return Generation(text=text, finish_reason=FINISH_LENGTH, tokens=tokens)
    return Generation(text=text, finish_reason=str(reason), tokens=tokens, error=f"finish_reason {reason!r}")


def read_events(lines: Iterable[str], on_text: TextSink) -> Generation:
    """A streamed chat completion (`data: {...}` lines, then `data: [DONE]`), each piece of text handed to
    `on_text` as it is read. A failure part-way keeps the text that came before it."""
    pieces: list[str] = []
    reason, tokens = None, 0
    try:
        for line in lines:
            if not line.startswith("data:"):
                continue  # blank separators, comments, event names
            data = line[len("data:"):].strip()
            if data == "[DONE]":
                break
            event = json.loads(data)
            if "error" in event or event.get("object") == "error":  # vLLM reports a failure mid-stream this way
                raise ValueError(f"the endpoint failed mid-page: {str(event.get('error') or event)[:300]}")
            tokens = int((event.get("usage") or {}).get("completion_tokens") or tokens)
            for choice in event.get("choices") or ():
                if piece := (choice.get("delta") or {}).get("content"):
                    pieces.append(piece)
                    on_text(piece)
                reason = choice.get("finish_reason") or reason
    except (httpx.TransportError, ValueError, TypeError, AttributeError) as exc:  # JSONDecodeError is a ValueError
        return Generation(text="".join(pieces), finish_reason=FINISH_ERROR, tokens=tokens,
                          error=f"{type(exc).__name__}: {exc}")
    return finished("".join(pieces), reason, tokens)


class EndpointBackend:
    name = "endpoint"

    def __init__(self, base_url: str, model: str, concurrency: int = 32, timeout_s: float = 300.0,
                 retries: int = 2):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.retries = retries
        timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.client = httpx.Client(timeout=timeout, limits=limits)
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ocr-endpoint")

    def generate(self, requests: Iterable[PageRequest]) -> list[Generation]:
        futures = [self.pool.submit(self._complete, r) for r in requests]
        return [f.result() for f in futures]

    def _complete(self, request: PageRequest) -> Generation:
        body = chat_payload(request, self.model)
        error, delay = "", 0.0
        for attempt in range(self.retries + 1):
            time.sleep(delay)
            delay = min(MAX_BACKOFF_S, 0.5 * 2 ** attempt)
            try:
                response = self.client.post(self.url, json=body)
            except httpx.TransportError as exc:  # refused, reset, timed out
                error = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in RETRY_STATUS:
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                delay = _retry_after(response, delay)
                continue
            if response.status_code >= 400:
                return Generation.failed(f"HTTP {response.status_code}: {response.text[:300]}")
            try:
                return read_completion(response.json())
            except ValueError as exc:
                return Generation.failed(f"the endpoint did not answer JSON: {exc}")
        return Generation.failed(f"{error} (after {self.retries + 1} tries)")

    def stream(self, request: PageRequest, on_text: TextSink) -> Generation:
        """One page as server-sent events. What fails before the response starts is retried as in `generate`;
        nothing is retried once the response has begun (text may have been handed on)."""
        body = chat_payload(request, self.model) | {"stream": True, "stream_options": {"include_usage": True}}
        error, delay = "", 0.0
        for attempt in range(self.retries + 1):
            time.sleep(delay)
            delay = min(MAX_BACKOFF_S, 0.5 * 2 ** attempt)
            try:
                with self.client.stream("POST", self.url, json=body) as response:
                    if response.status_code in RETRY_STATUS:
                        error = f"HTTP {response.status_code}: {response.read().decode(errors='replace')[:200]}"
                        delay = _retry_after(response, delay)
                        continue
                    if response.status_code >= 400:
                        return Generation.failed(f"HTTP {response.status_code}: "
                                                 f"{response.read().decode(errors='replace')[:300]}")
                    return read_events(response.iter_lines(), on_text)
            except httpx.TransportError as exc:  # refused, reset, timed out before the first event
                error = f"{type(exc).__name__}: {exc}"
        return Generation.failed(f"{error} (after {self.retries + 1} tries)")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return min(MAX_BACKOFF_S, max(0.0, float(response.headers.get("retry-after", default))))
    except ValueError:  # an HTTP date: not worth parsing for a few seconds' wait
        return default

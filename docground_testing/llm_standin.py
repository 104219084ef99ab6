"""Local OpenAI-compatible chat endpoints in a thread, standing in for vLLM in tests, and the local HTTP server
they run on (`LocalServer`, `QuietHandler`), which other tests' receivers use too.

`StandIn` is the language model: its reply is a function of the request, so a test can write the answer a
model would give for the sources it was actually shown (`source_number` finds which [n] holds a phrase).
Streams like vLLM when asked to: `data: {"choices": [{"delta": {"content": ...}}]}` lines, then `data: [DONE]`.

`OcrStandIn` is `vllm serve` with DeepSeek-OCR-2: each request's `Answer` is scripted (status, text, finish
reason, a dropped connection), streamed in token-sized `pieces` with the usage, and it can hold a stream back
until the test releases it, or answer slowly and count the requests in flight.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

Reply = Callable[[dict], str]


def source_number(request: dict, phrase: str) -> int:
    """The number [n] of the source that holds the phrase, in the prompt the model was sent."""
    prompt = request["messages"][-1]["content"]
    for m in re.finditer(r"^\[(\d+)\] .*?\n(.*?)(?=\n\n\[\d+\] |\n\nQuestion: )", prompt, re.MULTILINE | re.DOTALL):
        if phrase in m.group(2):
            return int(m.group(1))
    raise AssertionError(f"no source holds {phrase!r}")


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps the test's output clean, with the few ways a stand-in answers."""

    def log_message(self, *args) -> None:
        pass

    def read_json(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["content-length"])))

    def send(self, status: int, kind: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_events(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()

    def send_event(self, data: dict | str) -> None:
        """One server-sent event, flushed so that the client has it before the next one is written."""
        self.wfile.write(f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode())
        self.wfile.flush()


class LocalServer:
    """`handler` served on 127.0.0.1 (a free port) from a thread while the `with` block runs."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def endpoint(self) -> str:
        """The base URL an OpenAI client is given."""
        return f"{self.url}/v1"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class StandIn(LocalServer):
    def __init__(self, reply: Reply, status: int = 200):
        self.reply = reply
        self.status = status
        self.requests: list[dict] = []
        standin = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.read_json()
                standin.requests.append(body | {"path": self.path, "authorization": self.headers.get("authorization")})
                if standin.status != 200:
                    self.send(standin.status, "application/json", b'{"error": "overloaded"}')
                    return
                text = standin.reply(body)
                if body.get("stream"):
                    self.start_events()
                    for piece in re.findall(r"\S+\s*|\s+", text):
                        self.send_event({"choices": [{"index": 0, "delta": {"content": piece}}]})
                    self.send_event("[DONE]")
                    return
                payload = {"id": "x", "object": "chat.completion", "model": body.get("model"),
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                        "finish_reason": "stop"}]}
                self.send(200, "application/json", json.dumps(payload).encode())

        super().__init__(Handler)


def pieces(text: str) -> list[str]:
    """Token-sized pieces, tags split across pieces as a tokenizer may split them."""
    return re.findall(r".{1,3}", text, re.S)


@dataclass
class Answer:
    """What `OcrStandIn` answers one request with; `cut`: a stream's connection drops after that many pieces."""

    text: str
    finish_reason: str = "stop"
    status: int = 200
    cut: int | None = None


Script = Callable[[dict, int], Answer]  # (the request's body, its number from 1) -> its answer
PROMPT_TOKENS = 1133  # what DeepSeek-OCR-2's prompt for one page costs


class OcrStandIn(LocalServer):
    """`POST /v1/chat/completions` as vLLM serving DeepSeek-OCR-2 answers it: `answers` is the Answer to every
    request, or a Script. Streamed: a role event, one event per piece, the finish reason, the usage, `[DONE]`;
    after `hold_after` pieces it waits (up to `wait_s`) for `release` before sending the rest. Each answer
    waits `delay_s` first; it records the requests and the most that were ever in flight at once."""

    def __init__(self, answers: Answer | Script, hold_after: int | None = None, wait_s: float = 20.0,
                 delay_s: float = 0.0):
        self.script = answers if callable(answers) else lambda body, n: answers
        self.hold_after, self.wait_s, self.delay_s = hold_after, wait_s, delay_s
        self.release = threading.Event()
        self.held_until_released = None  # True: the client asked for the rest; False: the wait timed out
        self.requests: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        standin = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.read_json()
                try:
                    answer = standin.arrived(body | {"path": self.path})
                    time.sleep(standin.delay_s)
                    if answer.status != 200:
                        self.send(answer.status, "application/json", b'{"error": "nope"}')
                    elif body.get("stream"):
                        standin.stream(self, answer)
                    else:
                        self.send(200, "application/json", json.dumps(standin.completion(answer)).encode())
                finally:
                    with standin.lock:
                        standin.in_flight -= 1

        super().__init__(Handler)

    def arrived(self, request: dict) -> Answer:
        with self.lock:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            n = len(self.requests)
        return self.script(request, n)

    @staticmethod
    def usage(answer: Answer) -> dict:
        return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": len(pieces(answer.text))}

    def completion(self, answer: Answer) -> dict:
        message = {"role": "assistant", "content": answer.text}
        return {"choices": [{"index": 0, "message": message, "finish_reason": answer.finish_reason}],
                "usage": self.usage(answer)}

    def stream(self, handler: QuietHandler, answer: Answer) -> None:
        handler.start_events()
        handler.send_event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        for i, piece in enumerate(pieces(answer.text)):
            if i == answer.cut:
                return  # the connection drops mid-page
            if i == self.hold_after:
                self.held_until_released = self.release.wait(self.wait_s)
            handler.send_event({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        finish = {"index": 0, "delta": {"content": ""}, "finish_reason": answer.finish_reason}
        handler.send_event({"choices": [finish]})
        handler.send_event({"choices": [], "usage": self.usage(answer)})
        handler.send_event("[DONE]")

    def __exit__(self, *exc) -> None:
        self.release.set()  # a held stream finishes, so that the server can shut down
        super().__exit__(*exc)

"""A local OpenAI-compatible chat endpoint in a thread, standing in for vLLM in tests.

Its reply is a function of the request, so a test can write the answer a model would give for the
sources it was actually shown (`source_number` finds which [n] holds a phrase). Streams like vLLM when
asked to: `data: {"choices": [{"delta": {"content": ...}}]}` lines, then `data: [DONE]`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Reply = Callable[[dict], str]


def source_number(request: dict, phrase: str) -> int:
    """The number [n] of the source that holds the phrase, in the prompt the model was sent."""
    prompt = request["messages"][-1]["content"]
    for m in re.finditer(r"^\[(\d+)\] .*?\n(.*?)(?=\n\n\[\d+\] |\n\nQuestion: )", prompt, re.MULTILINE | re.DOTALL):
        if phrase in m.group(2):
            return int(m.group(1))
    raise AssertionError(f"no source holds {phrase!r}")


class StandIn:
    def __init__(self, reply: Reply, status: int = 200):
        self.reply = reply
        self.status = status
        self.requests: list[dict] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                standin.requests.append(body | {"path": self.path, "authorization": self.headers.get("authorization")})
                if standin.status != 200:
                    self._send(standin.status, "application/json", b'{"error": "overloaded"}')
                    return
                text = standin.reply(body)
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.end_headers()
                    for piece in re.findall(r"\S+\s*|\s+", text):
                        chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                payload = {"id": "x", "object": "chat.completion", "model": body.get("model"),
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                        "finish_reason": "stop"}]}
                self._send(200, "application/json", json.dumps(payload).encode())

            def _send(self, status: int, kind: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

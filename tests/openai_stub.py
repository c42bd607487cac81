"""A real local HTTP server that speaks the OpenAI protocol (chat completions, legacy
completions, models), with scripted failures: 429 with Retry-After, 500, slow replies past the
client's timeout, and malformed bodies. It counts every call. Used by tests and benchmarks."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    """One scripted reply: status 200 with the normal answer unless told otherwise."""

    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0
    body: bytes | None = None  # raw body to send instead of the normal answer (malformed output)


OK = Reply()


def prompt_text(body: dict) -> str:
    if "messages" in body:
        return body["messages"][-1]["content"]
    return body.get("prompt", "")


class OpenAIStub:
    def __init__(self, latency: float = 0.0, responder: Callable[[dict], str] | None = None):
        self.latency = latency
        self.responder = responder or (lambda body: f"Answer to: {prompt_text(body)}")
        self.scripts: dict[str, list[Reply]] = {}
        self.calls: Counter[str] = Counter()
        self.bodies: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, text: str, *replies: Reply) -> None:
        """Replies for calls whose prompt is `text`, in order; the last one repeats."""
        self.scripts[text] = list(replies)

    def __enter__(self) -> OpenAIStub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_reply(self, text: str) -> Reply:
        with self._lock:
            n = self.calls[text]
            self.calls[text] += 1
            replies = self.scripts.get(text)
        if not replies:
            return OK
        return replies[min(n, len(replies) - 1)]

    def _handler_class(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(
                        200, json.dumps({"object": "list", "data": [{"id": "stub", "object": "model"}]}).encode()
                    )
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with stub._lock:
                    stub.bodies.append(body)
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    self._answer(body)
                finally:
                    with stub._lock:
                        stub.in_flight -= 1

            def _answer(self, body: dict) -> None:
                reply = stub._next_reply(prompt_text(body))
                time.sleep(stub.latency + reply.delay)
                if reply.status != 200:
                    headers = {"Retry-After": reply.retry_after} if reply.retry_after else {}
                    error = {"error": {"message": f"scripted {reply.status}", "type": "server_error"}}
                    self._send(reply.status, json.dumps(error).encode(), headers)
                    return
                if reply.body is not None:
                    self._send(200, reply.body)
                    return
                text = stub.responder(body)
                usage = {"prompt_tokens": len(prompt_text(body).split()), "completion_tokens": len(text.split())}
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                if self.path.endswith("/chat/completions"):
                    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    obj = "chat.completion"
                elif self.path.endswith("/completions"):
                    choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
                    obj = "text_completion"
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                payload = {
                    "id": "stub-1",
                    "object": obj,
                    "created": int(time.time()),
                    "model": body.get("model", "stub"),
                    "choices": [choice],
                    "usage": usage,
                }
                self._send(200, json.dumps(payload).encode())

        return Handler

"""A real local HTTP server that speaks the OpenAI protocol (chat completions, legacy
completions, models), with scripted failures: 429 with Retry-After, 500, slow replies past the
client's timeout, and malformed bodies. It counts every call. Used by tests and benchmarks.

It plays one server's dialect, with that server's quirks (generation/dialects.py says where each
comes from):
- "openai": 400 ``Unrecognized request argument supplied: <name>`` for any body field outside
  OpenAI's API reference (as the real API answers); /v1/models cards owned by "system".
- "vllm": reads ``repetition_penalty``; /v1/models cards ``owned_by: "vllm"``.
- "llamacpp": reads ``repeat_penalty`` and ignores ``repetition_penalty`` silently; cards
  ``owned_by: "llamacpp"``.
- "tgi": reads ``presence_penalty`` as ``repetition_penalty - 2``; ``GET /info`` names its router.
- "generic" (default): reads nothing beyond the standard fields, ignores the rest.
Every server honours ``stop`` (the text ends before the first stop sequence). The repetition
penalty each request was actually given is recorded in ``penalties``.

``stream: true`` is answered as OpenAI's API reference describes chat completion chunks (and as
generation/server.py, vLLM and llama.cpp's server send them): ``text/event-stream``, a first
chunk whose delta holds the role, the text word by word (``stream_delay`` seconds apart), a chunk
with the finish reason and an empty delta, then ``data: [DONE]``."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from generation.dialects import OPENAI_CHAT_FIELDS, OPENAI_COMPLETIONS_FIELDS

OWNERS = {"openai": "system", "vllm": "vllm", "llamacpp": "llamacpp", "tgi": "tgi", "generic": "stub"}


def effective_penalty(dialect: str, body: dict) -> float:
    """The repetition penalty a server of this dialect applies for this request body."""
    if dialect == "vllm":
        return float(body.get("repetition_penalty", 1.0))
    if dialect == "llamacpp":
        return float(body.get("repeat_penalty", 1.0))
    if dialect == "tgi" and "presence_penalty" in body:
        return float(body["presence_penalty"]) + 2.0
    return 1.0


def apply_stop(text: str, stop) -> str:
    for sequence in [stop] if isinstance(stop, str) else (stop or []):
        if sequence in text:
            text = text[: text.index(sequence)]
    return text


@dataclass(frozen=True)
class Reply:
    """One scripted reply: status 200 with the normal answer unless told otherwise."""

    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0
    body: bytes | None = None  # raw body to send instead of the normal answer (malformed output)
    content_type: str = "application/json"  # a proxy's error page says text/html


OK = Reply()


def prompt_text(body: dict) -> str:
    if "messages" in body:
        return body["messages"][-1]["content"]
    return body.get("prompt", "")


class OpenAIStub:
    def __init__(
        self,
        latency: float = 0.0,
        responder: Callable[[dict], str] | None = None,
        dialect: str = "generic",
        letter_probabilities: Callable[[dict], dict[str, float]] | None = None,
        stream_delay: float = 0.0,
    ):
        self.dialect = dialect
        self.stream_delay = stream_delay
        # logprobs requests (a judge's one-letter verdict): {"A": p, "B": p, "C": p}; by default
        # 0.8 on the letter the responder's text starts with
        self.letter_probabilities = letter_probabilities
        self.latency = latency
        self.responder = responder or (lambda body: f"Answer to: {prompt_text(body)}")
        self.scripts: dict[str, list[Reply]] = {}
        self.calls: Counter[str] = Counter()
        self.bodies: list[dict] = []
        self.penalties: list[float] = []
        self.authorizations: list[str | None] = []
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

    def _logprobs_reply(self, body: dict) -> dict:
        """A chat completion of one token with its top_logprobs, shaped as OpenAI's."""
        if self.letter_probabilities:
            probabilities = self.letter_probabilities(body)
        else:
            letter = (self.responder(body).strip().strip("*[]") or "?")[:1].upper()
            probabilities = {x: (0.8 if x == letter else 0.1) for x in "ABC"}
        ranked = sorted(probabilities.items(), key=lambda kv: -kv[1])
        ranked.append(("The", min(p for _, p in ranked) / 10 or 1e-6))  # a judge also considers other tokens

        def entry(token: str, p: float) -> dict:
            return {"token": token, "logprob": math.log(p) if p > 0 else -100.0, "bytes": list(token.encode())}

        top = [entry(t, p) for t, p in ranked[: body.get("top_logprobs") or 1]]
        return {
            "id": "stub-lp",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ranked[0][0]},
                    "logprobs": {"content": [{**entry(*ranked[0]), "top_logprobs": top}]},
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": len(prompt_text(body).split()), "completion_tokens": 1, "total_tokens": 0},
        }

    def _handler_class(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(
                self, status: int, body: bytes, headers: dict[str, str] | None = None, kind: str = "application/json"
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                with stub._lock:
                    stub.authorizations.append(self.headers.get("Authorization"))
                if self.path.rstrip("/").endswith("/models"):
                    card = {"id": "stub", "object": "model", "created": 0, "owned_by": OWNERS[stub.dialect]}
                    self._send(200, json.dumps({"object": "list", "data": [card]}).encode())
                elif self.path.rstrip("/") == "/info" and stub.dialect == "tgi":
                    info = {"model_id": "stub", "router": "text-generation-router", "version": "3.3.6"}
                    self._send(200, json.dumps(info).encode())
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def _unrecognized(self, body: dict) -> str | None:
                """OpenAI refuses a body field it does not know."""
                if stub.dialect != "openai":
                    return None
                known = OPENAI_CHAT_FIELDS if self.path.endswith("/chat/completions") else OPENAI_COMPLETIONS_FIELDS
                unknown = sorted(set(body) - known)
                return unknown[0] if unknown else None

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with stub._lock:
                    stub.bodies.append(body)
                    stub.authorizations.append(self.headers.get("Authorization"))
                unknown = self._unrecognized(body)
                if unknown:
                    error = {
                        "message": f"Unrecognized request argument supplied: {unknown}",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                    self._send(400, json.dumps({"error": error}).encode())
                    return
                with stub._lock:
                    stub.penalties.append(effective_penalty(stub.dialect, body))
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
                    self._send(200, reply.body, kind=reply.content_type)
                    return
                if body.get("logprobs"):
                    self._send(200, json.dumps(stub._logprobs_reply(body)).encode())
                    return
                text = apply_stop(stub.responder(body), body.get("stop"))
                usage = {"prompt_tokens": len(prompt_text(body).split()), "completion_tokens": len(text.split())}
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                if body.get("stream") is True and self.path.endswith("/chat/completions"):
                    self._stream(body, text)
                    return
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

            def _stream(self, body: dict, text: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                base = {"id": "stub-s", "object": "chat.completion.chunk", "created": int(time.time())}
                base["model"] = body.get("model", "stub")

                def event(delta: dict, finish: str | None = None) -> None:
                    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                    self.wfile.write(b"data: " + json.dumps({**base, "choices": [choice]}).encode() + b"\n\n")
                    self.wfile.flush()

                try:
                    event({"role": "assistant", "content": ""})
                    for k, word in enumerate(text.split(" ")):
                        time.sleep(stub.stream_delay)
                        event({"content": word if k == 0 else " " + word})
                    event({}, "stop")
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler

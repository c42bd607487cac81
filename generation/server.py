"""A minimal OpenAI-compatible server (/v1/models, /v1/chat/completions) in front of a local
backend, so that the judge and the openai_compat backend can use a local model through the very
same client code path as GPT-4. One generation at a time; for throughput use vLLM or TGI."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from generation.config import SamplingConfig
from generation.types import GenerationRequest


def make_server(backend: Any, model_name: str, host: str = "127.0.0.1", port: int = 8001) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet; errors still go to the reply
            pass

        def _send(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"message": message, "type": "invalid_request_error"}})

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._send(
                    200, {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "local"}]}
                )
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._error(404, f"no route {self.path}")
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                messages = body["messages"]
                if not isinstance(messages, list) or not messages:
                    raise ValueError("messages must be a non-empty list")
                sampling = SamplingConfig(
                    temperature=float(body.get("temperature", 0.7)),
                    top_p=float(body.get("top_p", 1.0)),
                    repetition_penalty=float(body.get("repetition_penalty", 1.0)),
                    max_new_tokens=int(body.get("max_tokens") or 512),
                    seed=body.get("seed"),
                )
                sampling.validate()
            except (KeyError, TypeError, ValueError) as exc:
                self._error(400, f"bad request: {exc}")
                return
            with lock:
                result = next(iter(backend.generate([GenerationRequest(0, messages)], sampling)))
            if not result.ok:
                self._error(500, result.error)
                return
            prompt_tokens, completion_tokens = result.prompt_tokens or 0, result.completion_tokens or 0
            self._send(
                200,
                {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model_name,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": result.text},
                            "finish_reason": result.finish_reason or "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                },
            )

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server

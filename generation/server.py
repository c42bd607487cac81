"""An OpenAI-compatible server (/v1/models, /v1/chat/completions, /v1/completions, /health) in
front of a local backend, so that the judge and the openai_compat backend can use a local model
through the very same client code path as GPT-4, and so can any OpenAI client.

A drop-in for what clients rely on (tests/test_serve_openai_protocol.py checks it field by field,
the way llama.cpp's and vLLM's servers answer): streaming as server-sent events ending in
``data: [DONE]`` (with ``stream_options.include_usage``), ``stop`` sequences, content given as a
list of text parts, ``max_tokens`` or ``max_completion_tokens``, LIMA's repetition penalty under
vLLM's name (``repetition_penalty``) or llama.cpp's (``repeat_penalty``), and errors as
``{"error": {"message", "type", "param", "code"}}`` with the offending field in ``param``. Fields
it does not use are ignored, as vLLM and llama.cpp do. ``logprobs`` with ``top_logprobs`` are given
for one token (``max_tokens`` 1), from one forward pass and no generation: what a judge's
probability verdict needs; our extension ``label_tokens`` (``["A", "B", "C"]``) gives exactly the
labels' log probabilities, so such a verdict can always be read (the ``score`` method).
Concurrent requests are generated together in one batch (``Batcher``); a streamed answer is
generated whole, then sent in pieces."""

from __future__ import annotations

import json
import queue
import re
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from generation.config import SamplingConfig
from generation.types import GenerationRequest, GenerationResult

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_STOP_SEQUENCES = 4  # OpenAI's limit
DEFAULT_PORT = 8001  # where `manage.py serve_openai` listens unless told, and the local judge looks
OWNER = "lima-eval"  # generation.dialects reads this as vLLM's field names


class BadRequest(ValueError):
    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param, self.code = param, code


@dataclass
class Parsed:
    request: GenerationRequest
    sampling: SamplingConfig
    stop: list[str]
    stream: bool
    include_usage: bool
    top_logprobs: int | None = None  # logprobs asked for: how many alternatives
    labels: list[str] | None = None  # our extension: the log probability of exactly these next tokens


def _number(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadRequest(f"'{name}' must be a number from {low} to {high}", name, "invalid_value")
    return float(value)


def _content(message: dict, i: int) -> str:
    """A message's text: a string, or OpenAI's list of content parts ({"type": "text", "text"})."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise BadRequest(
                    "only text content parts ({'type': 'text', 'text': ...}) are supported",
                    f"messages[{i}].content[{j}]",
                    "invalid_value",
                )
            texts.append(part["text"])
        return "\n".join(texts)
    raise BadRequest("'content' must be a string or a list of text parts", f"messages[{i}].content", "invalid_type")


def parse_messages(body: dict) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list", "messages", "invalid_value")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest("each message must be an object", f"messages[{i}]", "invalid_type")
        role = message.get("role")
        if role not in ROLES:
            raise BadRequest(
                f"unknown role {role!r}: one of {', '.join(ROLES)}", f"messages[{i}].role", "invalid_value"
            )
        out.append({"role": ROLES[role], "content": _content(message, i)})
    return out


def parse_prompt(body: dict) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("'prompt' must be a string (one prompt per request)", "prompt", "invalid_value")
    return prompt


def parse(body: Any, chat: bool) -> Parsed:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    messages = parse_messages(body) if chat else []
    text = None if chat else parse_prompt(body)
    if body.get("n", 1) not in (1, None):
        raise BadRequest("'n' must be 1 (one choice per request)", "n", "invalid_value")
    top_logprobs = None
    if body.get("logprobs") not in (None, False, 0):
        if not chat:
            raise BadRequest("logprobs: use /v1/chat/completions", "logprobs", "unsupported_parameter")
        if body.get("max_tokens", body.get("max_completion_tokens")) != 1 or body.get("stream"):
            raise BadRequest(
                "logprobs are given for one token (a verdict's letter): set max_tokens to 1, without stream",
                "logprobs",
                "unsupported_parameter",
            )
        top_logprobs = body.get("top_logprobs") or 0
        if isinstance(top_logprobs, bool) or not isinstance(top_logprobs, int) or not 0 <= top_logprobs <= 20:
            raise BadRequest("'top_logprobs' must be a whole number from 0 to 20", "top_logprobs", "invalid_value")
    labels = body.get("label_tokens")
    if labels is not None:
        if top_logprobs is None:
            raise BadRequest("'label_tokens' go with logprobs", "label_tokens", "invalid_value")
        texts = isinstance(labels, list) and all(isinstance(x, str) and x for x in labels)
        if not texts or not 1 <= len(labels) <= 20:
            raise BadRequest("'label_tokens' must be a list of 1 to 20 texts", "label_tokens", "invalid_value")
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(name)
    max_tokens = 512 if max_tokens is None else max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadRequest(f"'{name}' must be a whole number >= 1", name, "invalid_value")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or len(stop) > MAX_STOP_SEQUENCES or not all(isinstance(s, str) and s for s in stop):
        raise BadRequest(f"'stop' must be a string or a list of up to {MAX_STOP_SEQUENCES} strings", "stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadRequest("'seed' must be a whole number", "seed", "invalid_type")
    penalty_name = "repeat_penalty" if "repeat_penalty" in body else "repetition_penalty"
    sampling = SamplingConfig(
        temperature=_number(body, "temperature", 0.7, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 1e-9, 1.0),
        repetition_penalty=_number(body, penalty_name, 1.0, 1e-9, 10.0),
        max_new_tokens=max_tokens,
        seed=seed,
    )
    stream = body.get("stream") is True
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise BadRequest("'stream_options' must be an object", "stream_options", "invalid_type")
    request = GenerationRequest(0, messages, text=text)
    return Parsed(request, sampling, stop, stream, bool(options.get("include_usage")), top_logprobs, labels)


def cut_at_stop(text: str, stop: list[str], finish_reason: str) -> tuple[str, str]:
    """The text up to the first stop sequence (the sequence itself left out), as servers do."""
    ends = [text.index(s) for s in stop if s in text]
    if not ends:
        return text, finish_reason
    return text[: min(ends)], "stop"


def _pieces(text: str) -> list[str]:
    """The text in word-sized pieces for streaming (each keeps its leading whitespace)."""
    return re.findall(r"\s*\S+", text) + ([text[len(text.rstrip()) :]] if text != text.rstrip() else [])


class Batcher:
    """Concurrent requests share one batched generate: the first request to arrive waits up to
    ``window`` seconds for others (at most ``max_batch``), those with the same sampling settings
    go to the backend together (hf_local left-pads and batches them), and each caller gets its
    own result. One batch at a time, under the same lock as the logprobs forward passes."""

    def __init__(self, backend: Any, lock: threading.Lock, window: float = 0.02, max_batch: int = 16):
        self.backend, self.lock, self.window, self.max_batch = backend, lock, window, max_batch
        self.waiting: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, name="batcher", daemon=True).start()

    def generate(self, request: GenerationRequest, sampling: SamplingConfig) -> GenerationResult:
        return self._wait(sampling, request)["result"]

    def score(self, request: GenerationRequest, labels: list[str]) -> tuple[list[tuple[str, float]], int, int]:
        """The labels' next-token log probabilities (the score method), batched like generation:
        (labels and log probabilities, the prompt's length, how many prompts shared the pass)."""
        slot = self._wait(("labels", tuple(labels)), request)
        return (*slot["result"], slot["size"])

    def _wait(self, key: Any, request: GenerationRequest) -> dict:
        slot: dict = {"done": threading.Event()}
        self.waiting.put((request, key, slot))
        slot["done"].wait()
        if isinstance(slot["result"], Exception):
            raise slot["result"]
        return slot

    def _collect(self) -> list:
        items = [self.waiting.get()]
        deadline = time.monotonic() + self.window
        while len(items) < self.max_batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                items.append(self.waiting.get(timeout=left))
            except queue.Empty:
                break
        return items

    def _loop(self) -> None:
        while True:
            groups: dict[Any, list] = defaultdict(list)
            for item in self._collect():
                groups[item[1]].append(item)
            for key, group in groups.items():
                requests = [
                    GenerationRequest(i, request.messages, request.sample_index, request.text)
                    for i, (request, _, _) in enumerate(group)
                ]
                results: dict[int, Any]
                try:
                    with self.lock:
                        if isinstance(key, tuple) and key[0] == "labels":
                            results = dict(enumerate(self.backend.batch_label_logprobs(requests, list(key[1]))))
                        else:
                            results = {result.key: result for result in self.backend.generate(requests, key)}
                except Exception as exc:  # noqa: BLE001  (a failed batch fails its callers, not the server)
                    if isinstance(key, tuple):
                        results = dict.fromkeys(range(len(group)), exc)
                    else:
                        failed = [GenerationResult(i, finish_reason="error", error=str(exc)) for i in range(len(group))]
                        results = dict(enumerate(failed))
                for i, (_, _, slot) in enumerate(group):
                    slot["result"], slot["size"] = results[i], len(group)
                    slot["done"].set()


def make_server(
    backend: Any, model_name: str, host: str = "127.0.0.1", port: int = 8001, batch_window: float = 0.02
) -> ThreadingHTTPServer:
    lock = threading.Lock()
    batcher = Batcher(backend, lock, window=batch_window)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet; errors still go to the reply
            pass

        batch_size = 0

        def _send(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if self.batch_size:
                self.send_header("X-Batch-Size", str(self.batch_size))  # how many answers were generated together
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
            kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "server_error")
            self._send(status, {"error": {"message": message, "type": kind, "param": param, "code": code}})

        def do_GET(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            if path == "/v1/models":
                card = {"id": model_name, "object": "model", "created": int(time.time()), "owned_by": OWNER}
                self._send(200, {"object": "list", "data": [card]})
            elif path == "/health":
                self._send(200, {"status": "ok"})
            else:
                self._error(404, f"no route {self.path}", code="not_found")

        def do_POST(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            if path not in ("/v1/chat/completions", "/v1/completions"):
                self._error(404, f"no route {self.path}", code="not_found")
                return
            chat = path == "/v1/chat/completions"
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                parsed = parse(body, chat)
            except json.JSONDecodeError as exc:
                self._error(400, f"the body is not valid JSON ({exc.msg})", code="invalid_json")
                return
            except BadRequest as exc:
                self._error(400, str(exc), exc.param, exc.code)
                return
            if parsed.top_logprobs is not None:
                self._logprobs(parsed)
                return
            result = batcher.generate(parsed.request, parsed.sampling)
            self.batch_size = result.metadata.get("batch_size", 1)
            if not result.ok:
                self._error(500, result.error)
                return
            text, finish = cut_at_stop(result.text, parsed.stop, result.finish_reason or "stop")
            if parsed.stream:
                self._stream(chat, text, finish, result, parsed.include_usage)
            else:
                self._send(200, self._completion(chat, text, finish, result))

        def _logprobs(self, parsed: Parsed) -> None:
            """The next token and its alternatives, from one forward pass (a judge's verdict
            read as probabilities: the `score` method), in OpenAI's logprobs shape."""
            if parsed.labels:  # several judges' verdicts at once share one forward pass
                top, prompt_tokens, self.batch_size = batcher.score(parsed.request, parsed.labels)
                top = sorted(top, key=lambda pair: -pair[1])
            else:
                with lock:
                    top, prompt_tokens = backend.next_token_logprobs(parsed.request, max(1, parsed.top_logprobs or 1))

            def entry(token: str, logprob: float) -> dict:
                return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

            first = entry(*top[0])
            first["top_logprobs"] = [entry(t, lp) for t, lp in (top if parsed.labels else top[: parsed.top_logprobs])]
            result = GenerationResult(0, text=top[0][0], prompt_tokens=prompt_tokens, completion_tokens=1)
            reply = self._completion(True, top[0][0], "length", result)
            reply["choices"][0]["logprobs"] = {"content": [first], "refusal": None}
            self._send(200, reply)

        def _usage(self, result: GenerationResult) -> dict:
            prompt_tokens, completion_tokens = result.prompt_tokens or 0, result.completion_tokens or 0
            return {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }

        def _completion(self, chat: bool, text: str, finish: str, result: GenerationResult) -> dict:
            if chat:
                choice: dict = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None}
            else:
                choice = {"index": 0, "text": text, "logprobs": None}
            return {
                "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": model_name,
                "choices": [{**choice, "finish_reason": finish}],
                "usage": self._usage(result),
            }

        def _stream(self, chat: bool, text: str, finish: str, result: GenerationResult, include_usage: bool) -> None:
            """Server-sent events, as OpenAI sends them: a first delta with the role, the text in
            pieces, a last delta with the finish reason, the usage if asked for, then [DONE]."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
            created = int(time.time())
            kind = "chat.completion.chunk" if chat else "text_completion"

            def event(choices: list, usage: dict | None = None) -> None:
                chunk = {"id": ident, "object": kind, "created": created, "model": model_name, "choices": choices}
                if include_usage:
                    chunk["usage"] = usage
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

            def choice(piece: str | None, finish_reason: str | None, role: bool = False) -> dict:
                if chat:
                    delta: dict = {"role": "assistant", "content": ""} if role else {}
                    if piece is not None:
                        delta["content"] = piece
                    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                return {"index": 0, "text": piece or "", "logprobs": None, "finish_reason": finish_reason}

            try:
                if chat:
                    event([choice(None, None, role=True)])
                for piece in _pieces(text):
                    event([choice(piece, None)])
                event([choice(None if chat else "", finish)])
                if include_usage:
                    event([], self._usage(result))
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server

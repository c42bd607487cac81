"""Any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, TGI, ...) through the openai client:
chat completions or legacy completions, bounded concurrency, our own retries."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import openai
from openai.types import Completion
from openai.types.chat import ChatCompletion

from generation import dialects
from generation.config import ConfigError, SamplingConfig
from generation.retry import MalformedResponse, PermanentError, RetryPolicy, call_with_retries, describe, expect
from generation.types import GenerationRequest, GenerationResult

NO_KEY = "no-key"  # local servers ignore the key, but the client insists on one


def api_key_from_env(env_name: str | None, base_url: str) -> str:
    """The key for this server: from the variable named for it, or OPENAI_API_KEY for OpenAI's own
    host. Any other server gets no key: a user's OpenAI key never travels to a server it was not
    named for (a loopback listener once captured it)."""
    if not env_name:
        if not dialects.is_openai_host(base_url):
            return NO_KEY
        env_name = "OPENAI_API_KEY"
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(f"openai_compat: the environment variable {env_name} (api_key_env) is not set")
    return value


def make_client(base_url: str, api_key_env: str | None, timeout: float) -> openai.OpenAI:
    # max_retries=0: retries are ours (jitter, Retry-After, permanent vs transient, recorded)
    return openai.OpenAI(
        base_url=base_url, api_key=api_key_from_env(api_key_env, base_url), timeout=timeout, max_retries=0
    )


def resolve_dialect(config: dict[str, Any]) -> str:
    """The configured dialect, or the detected one when it is 'auto' (or unset)."""
    dialect = config.get("dialect") or dialects.AUTO
    if dialect != dialects.AUTO:
        return dialect
    key = api_key_from_env(config.get("api_key_env"), config["base_url"])
    return dialects.detect(config["base_url"], None if key == NO_KEY else key)


def check_reachable(base_url: str, api_key_env: str | None = None, timeout: float = 5.0) -> None:
    """Raise ConfigError when nothing answers at base_url (any HTTP answer counts as reachable)."""
    client = make_client(base_url, api_key_env, timeout)
    try:
        client.models.list()
    except (openai.APIConnectionError, openai.APITimeoutError) as exc:
        raise ConfigError(
            f"openai_compat: nothing answers at {base_url} ({type(exc).__name__}); is the server up?"
        ) from exc
    except openai.AuthenticationError as exc:
        raise ConfigError(f"openai_compat: {base_url} refused the API key: {exc.message}") from exc
    except openai.APIError:
        pass  # some servers have no /models; they answered, which is what we check


def completion_prompt(messages: list[dict[str, str]]) -> str:
    """A plain transcript for the legacy completions API."""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(lines) + "\n\nAssistant:"


# The transcript's own turn markers: a model completing it stops before inventing the next turn.
COMPLETION_STOP = ["\nUser:", "\nSystem:"]


class OpenAICompatBackend:
    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.model = config["model"]
        self.api = config.get("api", "chat")
        self.concurrency = config.get("concurrency", 8)
        self.policy = RetryPolicy(max_retries=config.get("max_retries", 5))
        self.client = make_client(config["base_url"], config.get("api_key_env"), config.get("timeout", 120))
        self.dialect = resolve_dialect(config)

    @property
    def preferred_chunk(self) -> int:
        return self.concurrency * 4

    def _request(self, request: GenerationRequest, sampling: SamplingConfig) -> dict[str, Any]:
        common = self._body(request, sampling)
        if self.api == "chat":
            reply = self.client.chat.completions.create(messages=request.messages, **common)  # type: ignore[arg-type]
            expect(reply, ChatCompletion)
            if not reply.choices or reply.choices[0].message is None or reply.choices[0].message.content is None:
                raise MalformedResponse("no choices[0].message.content in the reply")
            choice = reply.choices[0]
            text = choice.message.content
        else:
            reply = self.client.completions.create(
                prompt=completion_prompt(request.messages), stop=COMPLETION_STOP, **common
            )
            expect(reply, Completion)
            if not reply.choices or reply.choices[0].text is None:
                raise MalformedResponse("no choices[0].text in the reply")
            choice = reply.choices[0]
            text = choice.text.strip()  # the transcript leaves a space (or a newline) after "Assistant:"
        usage = reply.usage
        return {
            "text": text,
            "finish_reason": choice.finish_reason or "stop",
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "model": reply.model,
        }

    def _body(self, request: GenerationRequest, sampling: SamplingConfig) -> dict[str, Any]:
        fields = dialects.sampling_fields(self.dialect, sampling)
        common: dict[str, Any] = {"model": self.model, **fields.body}
        if "seed" in common:
            common["seed"] += request.sample_index
        if fields.extra_body:
            common["extra_body"] = fields.extra_body
        return common

    def stream_one(
        self, request: GenerationRequest, sampling: SamplingConfig, on_text: Callable[[str], None]
    ) -> GenerationResult:
        """One answer streamed (``stream: true``, server-sent events of chunks, as OpenAI's API
        reference and the servers that copy it send them), its text handed to ``on_text`` at every
        chunk that adds to it. Opening the stream is retried as any call is; a stream broken half
        way is an error (its partial text is not an answer)."""
        started = time.monotonic()
        common = self._body(request, sampling)

        def open_stream() -> Any:
            if self.api == "chat":
                return self.client.chat.completions.create(messages=request.messages, stream=True, **common)  # type: ignore[arg-type]
            return self.client.completions.create(
                prompt=completion_prompt(request.messages), stop=COMPLETION_STOP, stream=True, **common
            )

        text, finish, model = "", "stop", self.model
        try:
            chunks = call_with_retries(open_stream, self.policy)
            for chunk in chunks:
                model = getattr(chunk, "model", None) or model
                for choice in chunk.choices or []:
                    piece = (
                        choice.delta.content if self.api == "chat" and choice.delta else getattr(choice, "text", None)
                    )
                    if piece:
                        text += piece
                        on_text(text.strip())
                    finish = choice.finish_reason or finish
        except PermanentError as exc:
            return GenerationResult(
                request.key, finish_reason="error", error=str(exc), latency_seconds=time.monotonic() - started
            )
        except Exception as exc:  # noqa: BLE001 - the stream broke (a reset, a timeout, a chunk not JSON): an error result
            error = f"the stream broke after {len(text)} characters: {describe(exc)}"
            return GenerationResult(
                request.key, finish_reason="error", error=error, latency_seconds=time.monotonic() - started
            )
        return GenerationResult(
            key=request.key,
            text=text.strip(),
            finish_reason=finish,
            latency_seconds=time.monotonic() - started,
            notes="" if text.strip() else "empty response",
            metadata={"model": model, "dialect": self.dialect, "streamed": True},
        )

    def _one(self, request: GenerationRequest, sampling: SamplingConfig) -> GenerationResult:
        started = time.monotonic()
        retries: list[str] = []
        try:
            out = call_with_retries(
                lambda: self._request(request, sampling),
                self.policy,
                on_retry=lambda attempt, exc, delay: retries.append(f"{type(exc).__name__} -> wait {delay:.1f}s"),
            )
        except PermanentError as exc:
            return GenerationResult(
                key=request.key,
                finish_reason="error",
                error=str(exc),
                latency_seconds=time.monotonic() - started,
                metadata={"retries": retries},
            )
        metadata: dict[str, Any] = {"model": out["model"], "dialect": self.dialect}
        if retries:
            metadata["retries"] = retries
        if notes := self.sampling_notes(sampling):
            metadata["sampling_notes"] = notes
        return GenerationResult(
            key=request.key,
            text=out["text"],
            prompt_tokens=out["prompt_tokens"],
            completion_tokens=out["completion_tokens"],
            finish_reason=out["finish_reason"],
            latency_seconds=time.monotonic() - started,
            notes="" if out["text"].strip() else "empty response",
            metadata=metadata,
        )

    def sampling_notes(self, sampling: SamplingConfig) -> list[str]:
        """What of the sampling this server was not sent, or was sent under another name."""
        return dialects.describe(self.dialect, sampling)

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> Iterator[GenerationResult]:
        """Yield one result per request, in completion order, with at most `concurrency` in flight."""
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai") as pool:
            futures = [pool.submit(self._one, r, sampling) for r in requests]
            for future in as_completed(futures):
                yield future.result()

    def close(self) -> None:
        self.client.close()

"""OpenAI-compatible servers differ in which body fields they read, and under which names. A
dialect decides what a request carries; a sampling setting a server cannot honour is never sent
blindly and never dropped silently: it is returned as a note that the system records and shows.

Where each behaviour comes from:
- openai: the API answers 400 ``Unrecognized request argument supplied: <name>`` (type
  invalid_request_error) to any body field it does not know (OpenAI's API reference lists the
  fields of chat and legacy completions; the error is reported in many client issue threads).
  It has no repetition penalty (frequency_penalty / presence_penalty are other things).
- vllm: reads ``repetition_penalty`` (and top_k, min_p) as extra sampling parameters of its
  OpenAI server (vllm/entrypoints/openai/protocol.py); it applies the penalty to the prompt's tokens
  and the generated ones. Its /v1/models cards say ``owned_by: "vllm"``.
- llamacpp: llama.cpp's server (and llama-cpp-python's) reads ``repeat_penalty`` over the last
  ``repeat_last_n`` (64) tokens and ignores ``repetition_penalty`` silently (measured: output
  identical at 1.0 and 3.0 under that name). /v1/models says ``owned_by: "llamacpp"``
  (tools/server), or ``"me"`` with ``permissions`` (llama-cpp-python's server/app.py).
- tgi: text-generation-inference's chat API has no repetition_penalty field; it maps
  ``presence_penalty`` to ``repetition_penalty = presence_penalty + 2.0`` (router/src/lib.rs,
  ChatRequest::try_into_generate). Its ``GET /info`` answers ``router: "text-generation-router"``.
- generic: only the fields every OpenAI-compatible server reads.
Our own ``manage.py serve_openai`` reads vLLM's names and says ``owned_by: "lima-eval"``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from generation.config import SamplingConfig

DIALECTS = ("openai", "vllm", "llamacpp", "tgi", "generic")
AUTO = "auto"
OPENAI_HOSTS = ("api.openai.com",)

# The body fields OpenAI's API accepts (API reference, chat completions and legacy completions):
# a stub of it refuses every other field, as the real one does.
OPENAI_CHAT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "reasoning_effort",
        "response_format",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "web_search_options",
    }
)
OPENAI_COMPLETIONS_FIELDS = frozenset(
    {
        "model",
        "prompt",
        "best_of",
        "echo",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "max_tokens",
        "n",
        "presence_penalty",
        "seed",
        "stop",
        "stream",
        "stream_options",
        "suffix",
        "temperature",
        "top_p",
        "user",
    }
)

_SERVER_NAMES = {"openai": "OpenAI", "vllm": "vLLM", "llamacpp": "llama.cpp", "tgi": "TGI", "generic": "this server"}


def is_openai_host(base_url: str) -> bool:
    return (urlsplit(base_url).hostname or "").lower() in OPENAI_HOSTS


@dataclass
class RequestFields:
    """What one request carries: standard fields go in the body, the others in extra_body (the
    openai client merges them into the JSON body); notes say what was not sent, or sent differently."""

    body: dict[str, Any] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def sampling_fields(dialect: str, sampling: SamplingConfig) -> RequestFields:
    """The request fields for LIMA-style sampling on a server of this dialect."""
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {', '.join(DIALECTS)}, not {dialect!r}")
    out = RequestFields(
        body={"temperature": sampling.temperature, "top_p": sampling.top_p, "max_tokens": sampling.max_new_tokens}
    )
    if sampling.seed is not None:
        out.body["seed"] = sampling.seed
    penalty = sampling.repetition_penalty
    if penalty != 1.0:
        if dialect == "vllm":
            out.extra_body["repetition_penalty"] = penalty
            out.notes.append(f"repetition penalty {penalty}: sent as repetition_penalty (vLLM: prompt tokens too)")
        elif dialect == "llamacpp":
            out.extra_body["repeat_penalty"] = penalty
            out.notes.append(f"repetition penalty {penalty}: sent as repeat_penalty (llama.cpp: the last 64 tokens)")
        elif dialect == "tgi" and -2.0 <= penalty - 2.0 <= 2.0:
            out.body["presence_penalty"] = round(penalty - 2.0, 6)
            out.notes.append(
                f"repetition penalty {penalty}: sent as presence_penalty {penalty - 2.0:+.2f} "
                "(TGI's chat API reads repetition_penalty = presence_penalty + 2)"
            )
        else:
            out.notes.append(f"repetition penalty {penalty}: not supported by {_SERVER_NAMES[dialect]}, not sent")
    return out


def describe(dialect: str, sampling: SamplingConfig) -> list[str]:
    """The notes a system shows for its sampling on its dialect."""
    return sampling_fields(dialect, sampling).notes


# -- detection ----------------------------------------------------------------------------------


def _get_json(url: str, api_key: str | None, timeout: float) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310 (http(s) checked by the config)
            return json.loads(reply.read(1 << 20))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def dialect_of_models(payload: Any) -> str | None:
    """The dialect a /v1/models answer gives away, or None."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list) or not payload["data"]:
        return None
    card = payload["data"][0]
    if not isinstance(card, dict):
        return None
    owner = card.get("owned_by")
    if owner in ("vllm", "lima-eval"):
        return "vllm"
    if owner == "llamacpp" or (owner == "me" and "permissions" in card):
        return "llamacpp"
    return None


def detect(base_url: str, api_key: str | None = None, timeout: float = 5.0) -> str:
    """The dialect of the server at base_url: OpenAI by its host, then what /v1/models and TGI's
    /info say of the server; generic when nothing tells."""
    if is_openai_host(base_url):
        return "openai"
    found = dialect_of_models(_get_json(base_url.rstrip("/") + "/models", api_key, timeout))
    if found:
        return found
    root = base_url.rstrip("/").removesuffix("/v1")
    info = _get_json(root + "/info", api_key, timeout)
    if isinstance(info, dict) and info.get("router") == "text-generation-router":
        return "tgi"
    return "generic"

"""One small interface for every backend: generate(requests, sampling) -> results."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from generation.config import ConfigError, SamplingConfig, validate_backend_config
from generation.types import GenerationRequest, GenerationResult


class Backend(Protocol):
    @property
    def preferred_chunk(self) -> int:
        """How many requests the caller should hand over at once."""
        ...

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> Iterator[GenerationResult]:
        """Yield exactly one result per request (errors included), in any order."""
        ...

    def close(self) -> None: ...


OnText = Callable[[str], None]  # called with the answer's text so far, each time it grows


def stream_one(
    backend: Backend, request: GenerationRequest, sampling: SamplingConfig, on_text: OnText
) -> GenerationResult:
    """One answer, its text handed to ``on_text`` as it is generated (the whole text so far, each
    time it grows) where the backend can stream (a local model: every decoding step; a server:
    every chunk of its event stream); a backend that cannot hands it over once, whole."""
    streamer = getattr(backend, "stream_one", None)
    if streamer is not None:
        return streamer(request, sampling, on_text)
    [result] = list(backend.generate([request], sampling))
    if result.ok:
        on_text(result.text)
    return result


def make_backend(name: str, config: dict[str, Any]) -> Backend:
    config = validate_backend_config(name, config)
    if name == "hf_local":
        from generation.hf_local import HFLocalBackend

        return HFLocalBackend(config)
    if name == "openai_compat":
        from generation.openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(config)
    raise ConfigError(f"backend {name!r} does not generate; its responses are imported (manage.py import_responses)")


def preflight(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """Everything that can be checked before a job is enqueued: the config, the model path, the
    API key variable, and that the server answers. Raises ConfigError saying what to fix."""
    config = validate_backend_config(name, config, check_paths=True)
    if name == "openai_compat":
        from generation.openai_compat import check_reachable, resolve_dialect

        check_reachable(config["base_url"], config.get("api_key_env"))
        config["dialect"] = resolve_dialect(config)  # 'auto' becomes what the server is
    return config

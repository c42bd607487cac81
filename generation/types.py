"""What goes into a backend and what comes out. Plain data, no Django."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GenerationRequest:
    """One response to produce: the conversation so far (ending with the user's turn)."""

    key: Any  # the caller's handle (e.g. (prompt id, sample index)), returned untouched
    messages: list[dict[str, str]]
    sample_index: int = 0
    text: str | None = None  # a raw prompt to continue (legacy completions), instead of the chat format


@dataclass
class GenerationResult:
    key: Any
    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_seconds: float | None = None
    finish_reason: str = ""  # stop, length, error
    error: str = ""  # empty on success; a permanent error otherwise (after any retries)
    notes: str = ""  # e.g. the history was trimmed to fit the context
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.error

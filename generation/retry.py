"""Retries for outbound API calls: transient errors (429, 5xx, timeouts, connection resets,
malformed bodies) are retried with exponential backoff and jitter, honouring Retry-After;
everything else is permanent and returned at once. Shared by generation and the judge."""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import openai

T = TypeVar("T")


class MalformedResponse(Exception):
    """The server answered 200 but the body is not what the protocol promises."""


class PermanentError(Exception):
    """Retrying will not help (bad request, auth, unknown model, or retries exhausted)."""


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0


def retry_after_seconds(exc: BaseException) -> float | None:
    """Read Retry-After (seconds or an HTTP date) or retry-after-ms from an API error."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    if headers.get("retry-after-ms"):
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return max(0.0, parsed.timestamp() - time.time())


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError | MalformedResponse):
        return True
    if isinstance(exc, openai.APIResponseValidationError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500 or exc.status_code == 408
    return isinstance(exc, json.JSONDecodeError)  # a body that is not JSON at all


def expect(reply: object, kind: type, what: str = "the reply") -> None:
    """A 200 whose body is not the JSON expected (a proxy's HTML error page: the openai client
    hands it back as a string) is a malformed answer, retried like a 5xx."""
    if not isinstance(reply, kind):
        raise MalformedResponse(f"{what} is not a {kind.__name__} but {str(reply)[:80]!r}")


def describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        body = exc.body
        message = body.get("message") if isinstance(body, dict) and body.get("message") else exc.message
        return f"HTTP {exc.status_code}: {message}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Call fn until it succeeds, a permanent error occurs, or retries run out."""
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise PermanentError(describe(exc)) from exc
            if attempt >= policy.max_retries:
                raise PermanentError(f"gave up after {attempt + 1} attempts: {describe(exc)}") from exc
            delay = retry_after_seconds(exc)
            if delay is None:
                delay = min(policy.max_delay, policy.base_delay * 2**attempt) * random.uniform(0.5, 1.0)
            delay = min(delay, policy.max_retry_after)
            if on_retry:
                on_retry(attempt, exc, delay)
            sleep(delay)
            attempt += 1

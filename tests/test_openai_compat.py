"""The openai_compat backend against a real local HTTP server speaking the OpenAI protocol."""

import json
import time

import pytest

from generation.config import ConfigError, SamplingConfig
from generation.openai_compat import OpenAICompatBackend, check_reachable
from generation.types import GenerationRequest
from tests.openai_stub import OpenAIStub, Reply

SAMPLING = SamplingConfig(max_new_tokens=64)


def backend(stub, **extra):
    return OpenAICompatBackend({"base_url": stub.url, "model": "stub-model", "concurrency": 4, "timeout": 2, **extra})


def requests(*texts):
    return [GenerationRequest(key=t, messages=[{"role": "user", "content": t}]) for t in texts]


def run(b, reqs):
    return {r.key: r for r in b.generate(reqs, SAMPLING)}


def test_it_generates_with_the_chat_api_and_reports_usage():
    with OpenAIStub(dialect="vllm") as stub:
        results = run(backend(stub), requests("hello there", "why"))
    assert results["hello there"].text == "Answer to: hello there"
    assert (results["hello there"].prompt_tokens, results["hello there"].completion_tokens) == (2, 4)
    assert results["why"].finish_reason == "stop" and results["why"].ok
    body = stub.bodies[0]
    assert (body["model"], body["temperature"], body["top_p"], body["max_tokens"]) == ("stub-model", 0.7, 0.9, 64)
    assert body["repetition_penalty"] == 1.2


def test_it_can_use_the_legacy_completions_api():
    with OpenAIStub() as stub:
        result = run(backend(stub, api="completions"), requests("hi"))["hi"]
    assert result.ok and result.text.startswith("Answer to: User: hi")
    assert stub.bodies[0]["prompt"].endswith("Assistant:")


def test_a_429_with_retry_after_is_waited_out_then_succeeds():
    with OpenAIStub() as stub:
        stub.script("busy", Reply(status=429, retry_after="1"), Reply())
        started = time.monotonic()
        result = run(backend(stub), requests("busy"))["busy"]
        waited = time.monotonic() - started
    assert result.ok and result.text == "Answer to: busy"
    assert stub.calls["busy"] == 2
    assert waited >= 1.0, "Retry-After: 1 was honoured"
    assert result.metadata["retries"] == ["RateLimitError -> wait 1.0s"]


def test_repeated_500s_end_as_a_permanent_error_on_that_prompt_while_others_complete():
    with OpenAIStub() as stub:
        stub.script("doomed", Reply(status=500))
        results = run(backend(stub, max_retries=2), requests("a", "doomed", "b", "c"))
    assert results["doomed"].error.startswith("gave up after 3 attempts: HTTP 500")
    assert results["doomed"].finish_reason == "error" and results["doomed"].text == ""
    assert stub.calls["doomed"] == 3
    assert all(results[k].ok for k in "abc")


def test_a_400_is_permanent_and_not_retried():
    with OpenAIStub() as stub:
        stub.script("bad", Reply(status=400))
        result = run(backend(stub), requests("bad"))["bad"]
    assert result.error.startswith("HTTP 400") and stub.calls["bad"] == 1


def test_a_slow_server_times_out_and_is_retried():
    with OpenAIStub() as stub:
        stub.script("slow", Reply(delay=3.0), Reply())
        result = run(backend(stub, timeout=0.5), requests("slow"))["slow"]
    assert result.ok and stub.calls["slow"] == 2
    assert result.metadata["retries"][0].startswith("APITimeoutError")


@pytest.mark.parametrize(
    "body", [b"<html>oops</html>", b'{"id": "x", "choices": []}', b'{"choices": [{"message": {}}]}']
)
def test_malformed_bodies_are_retried_and_then_reported(body):
    with OpenAIStub() as stub:
        stub.script("garbled", Reply(body=body))
        result = run(backend(stub, max_retries=1), requests("garbled"))["garbled"]
    assert result.error.startswith("gave up after 2 attempts") and stub.calls["garbled"] == 2


def test_a_malformed_body_once_then_a_good_one_succeeds():
    with OpenAIStub() as stub:
        stub.script("flaky", Reply(body=b"not json"), Reply())
        result = run(backend(stub), requests("flaky"))["flaky"]
    assert result.ok and result.text == "Answer to: flaky"


def test_concurrency_is_bounded():
    with OpenAIStub(latency=0.2) as stub:
        results = run(backend(stub, concurrency=3), requests(*[f"p{i}" for i in range(12)]))
    assert len(results) == 12 and all(r.ok for r in results.values())
    assert stub.max_in_flight == 3


def test_an_api_key_named_in_the_config_must_be_set(monkeypatch):
    monkeypatch.delenv("MY_PROVIDER_KEY", raising=False)
    with pytest.raises(ConfigError, match="MY_PROVIDER_KEY"):
        OpenAICompatBackend({"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "MY_PROVIDER_KEY"})


def test_an_unreachable_base_url_is_reported_before_any_work():
    with pytest.raises(ConfigError, match="nothing answers at http://127.0.0.1:9/v1"):
        check_reachable("http://127.0.0.1:9/v1", timeout=2)
    with OpenAIStub() as stub:
        check_reachable(stub.url)


def test_a_200_html_page_from_a_proxy_is_retried_and_then_recorded_not_raised():
    with OpenAIStub() as stub:
        stub.script("proxied", Reply(body=b"<html>502</html>", content_type="text/html"))
        results = run(backend(stub, max_retries=1), requests("proxied", "fine"))
    assert results["fine"].ok and not results["proxied"].ok
    assert "not a ChatCompletion" in results["proxied"].error and stub.calls["proxied"] == 2


def test_a_streamed_answer_grows_with_each_chunk_and_a_refusal_on_opening_is_retried():
    with OpenAIStub(responder=lambda body: "Paris is the capital of **France**.", stream_delay=0.01) as stub:
        stub.script("capital?", Reply(status=429, retry_after="0"), Reply())
        seen: list[str] = []
        [request] = requests("capital?")
        result = backend(stub).stream_one(request, SamplingConfig(), seen.append)
    assert (result.ok, result.text, result.finish_reason) == (True, "Paris is the capital of **France**.", "stop")
    assert seen == ["Paris", "Paris is", "Paris is the", "Paris is the capital", "Paris is the capital of", result.text]
    assert stub.calls["capital?"] == 2 and all(body["stream"] is True for body in stub.bodies)


def test_a_stream_broken_half_way_is_an_error_not_an_answer():
    piece = {"index": 0, "delta": {"content": "Half"}, "finish_reason": None}
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [piece]}
    chunk = b"data: " + json.dumps(chunk).encode() + b"\n\n"
    with OpenAIStub() as stub:
        stub.script("broken?", Reply(body=chunk + b"data: {not json\n\n", content_type="text/event-stream"))
        [request] = requests("broken?")
        result = backend(stub, max_retries=0).stream_one(request, SamplingConfig(), lambda text: None)
    assert not result.ok and result.error.startswith("the stream broke after 4 characters")

"""What an OpenAI client relies on, checked field by field against the server we ship
(`manage.py serve_openai`'s generation/server.py): the test any server we ship must pass. The
model is a tiny one taught to answer "tell me a story" with "the cat is a big dog", so every
answer is known in advance.

The expected shapes are OpenAI's API reference, as llama.cpp's and vLLM's servers follow it: a
chat.completion with choices[].message and usage; server-sent events of chat.completion.chunk
ending in ``data: [DONE]``; a text_completion for /v1/completions; errors as
{"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

import json
import threading

import pytest
import requests
from openai import BadRequestError, OpenAI

from generation.hf_local import HFLocalBackend
from generation.server import make_server
from tests.tiny_models import make_model, make_tokenizer, memorise

STORY = "the cat is a big dog"  # every word in the tiny vocabulary: one token each


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    tokenizer = make_tokenizer()
    model = make_model(tokenizer, seed=3)
    messages = [{"role": "user", "content": "tell me a story"}]
    answer = tokenizer(STORY, add_special_tokens=False)["input_ids"] + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    memorise(model, tokenizer, [(messages, answer)], steps=120)
    folder = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    server = make_server(HFLocalBackend({"model_path": str(folder)}), "tiny", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(server_url):
    return OpenAI(base_url=server_url, api_key="unused", max_retries=0, timeout=30)


def ask(client, **extra):
    return client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "tell me a story"}], temperature=0, **extra
    )


def test_plain_chat_completion(client):
    reply = ask(client, max_tokens=16)
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-") and reply.model == "tiny"
    (choice,) = reply.choices
    assert (choice.index, choice.message.role, choice.message.content, choice.finish_reason) == (
        0,
        "assistant",
        STORY,
        "stop",
    )
    assert reply.usage.completion_tokens == 6 and reply.usage.total_tokens == reply.usage.prompt_tokens + 6
    assert [m.id for m in client.models.list()] == ["tiny"]


def test_streaming_yields_the_same_text_in_chunks_then_done(client, server_url):
    chunks = list(ask(client, max_tokens=16, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == STORY and len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 6
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    raw = requests.post(
        f"{server_url}/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": "tell me a story"}], "stream": True},
        timeout=30,
    )
    assert raw.headers["Content-Type"] == "text/event-stream"
    events = [line for line in raw.text.split("\n\n") if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


def test_stop_sequences_end_the_text_before_them(client):
    reply = ask(client, max_tokens=16, stop=["is", "big"])
    assert reply.choices[0].message.content == "the cat " and reply.choices[0].finish_reason == "stop"
    assert ask(client, max_tokens=16, stop="dog").choices[0].message.content == "the cat is a big "


def test_max_tokens_1_gives_one_token_and_length(client):
    reply = ask(client, max_tokens=1)
    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == ("the", "length")
    assert reply.usage.completion_tokens == 1
    assert ask(client, max_completion_tokens=2).choices[0].message.content == "the cat"


def test_content_given_as_text_parts(client):
    parts = [{"type": "text", "text": "tell me"}, {"type": "text", "text": "a story"}]
    reply = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": parts}],
        temperature=0,
        max_tokens=16,
    )
    assert reply.choices[0].message.content == STORY


def test_logprobs_of_one_token_from_one_forward_pass(client):
    reply = ask(client, max_tokens=1, logprobs=True, top_logprobs=5)
    (first,) = reply.choices[0].logprobs.content
    assert first.token == reply.choices[0].message.content == "the"
    assert len(first.top_logprobs) == 5 and first.top_logprobs[0].token == "the"
    assert [t.logprob for t in first.top_logprobs] == sorted((t.logprob for t in first.top_logprobs), reverse=True)
    assert -1.0 < first.logprob <= 0.0, "the memorised answer is the most probable by far"
    with pytest.raises(BadRequestError) as excinfo:
        ask(client, max_tokens=5, logprobs=True)
    assert excinfo.value.param == "logprobs"


def test_legacy_completions(client, server_url):
    reply = client.completions.create(model="tiny", prompt="the sky is", max_tokens=3, temperature=0)
    assert reply.object == "text_completion" and reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 3 and isinstance(reply.choices[0].text, str)
    streamed = list(
        client.completions.create(model="tiny", prompt="the sky is", max_tokens=3, temperature=0, stream=True)
    )
    assert "".join(c.choices[0].text for c in streamed).strip() == reply.choices[0].text.strip()


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": 5}, "temperature"),
        ({"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_a_bad_request_is_a_400_naming_the_field(server_url, body, param):
    reply = requests.post(f"{server_url}/chat/completions", json={"model": "tiny", **body}, timeout=30)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"]) == ("invalid_request_error", param) and error["message"]


def test_the_openai_client_raises_on_a_bad_role(client):
    with pytest.raises(BadRequestError) as excinfo:
        client.chat.completions.create(model="tiny", messages=[{"role": "robot", "content": "hi"}])
    assert excinfo.value.param == "messages[0].role"


def test_unknown_routes_and_bodies(server_url):
    missing = requests.post(f"{server_url}/embeddings", json={}, timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    broken = requests.post(f"{server_url}/chat/completions", data=b"{not json", timeout=10)
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"
    # fields it does not use are ignored, as vLLM and llama.cpp ignore them
    extra = requests.post(
        f"{server_url}/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": "tell me a story"}], "temperature": 0,
              "max_tokens": 16, "user": "x", "top_k": 5, "repeat_penalty": 1.0},
        timeout=30,
    )  # fmt: skip
    assert extra.status_code == 200 and json.loads(extra.text)["choices"][0]["message"]["content"] == STORY


def test_concurrent_requests_are_generated_in_one_batch_and_each_gets_its_own_answer(server_url):
    from concurrent.futures import ThreadPoolExecutor

    def one(k: int) -> tuple[str, str]:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "tell me a story"}], "temperature": 0,
                "max_tokens": 16 if k % 2 else 2}  # fmt: skip
        reply = requests.post(f"{server_url}/chat/completions", json=body, timeout=60)
        return reply.headers["X-Batch-Size"], reply.json()["choices"][0]["message"]["content"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert [text for _, text in results] == [STORY if k % 2 else "the cat" for k in range(8)]
    assert max(int(size) for size, _ in results) > 1, "requests that arrive together share a batch"


def test_label_scores_in_one_batch_equal_those_asked_one_at_a_time(server_url):
    """Left padding with the right position ids: a prompt's label probabilities do not depend on
    the prompts it shares a forward pass with."""
    from concurrent.futures import ThreadPoolExecutor

    prompts = ["tell me a story", "what is the sky", "tell me a joke about a cat and a dog please"]

    def score(prompt: str) -> tuple[str, dict]:
        body = {"model": "tiny", "messages": [{"role": "user", "content": prompt}], "max_tokens": 1, "logprobs": True,
                "top_logprobs": 3, "label_tokens": ["the", "cat", "dog"]}  # fmt: skip
        reply = requests.post(f"{server_url}/chat/completions", json=body, timeout=60)
        top = reply.json()["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        return reply.headers.get("X-Batch-Size", "1"), {t["token"]: t["logprob"] for t in top}

    alone = [score(p)[1] for p in prompts]
    with ThreadPoolExecutor(len(prompts) * 2) as pool:
        together = list(pool.map(score, prompts * 2))
    for k, (_, scores) in enumerate(together):
        assert scores == pytest.approx(alone[k % len(prompts)], abs=1e-4)
    assert max(int(size) for size, _ in together) > 1

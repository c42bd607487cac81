"""Continuous batching (generation/continuous.py) and the server's real streaming: tokens leave as
each decoding step makes them, a request joins the answers already being generated instead of
waiting for them to end, answers are those of hf_local's batched generate, and a stop sequence's
beginning is never streamed.

The model is a tiny one taught two answers. Where a test is about timing, each forward pass of
the model is slowed by a fixed sleep (a forward hook on the transformers model), so that the time
an answer still needs after its first token has a floor whatever the machine's load (the hook
sits on the embedding, which both a batched step and a lone answer's lean step read once)."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from generation.config import SamplingConfig
from generation.continuous import DONE, DecodeLoop, held_back
from generation.hf_local import HFLocalBackend
from generation.model_thread import made_apart
from generation.server import make_server
from generation.types import GenerationRequest
from tests.tiny_models import make_model, make_tokenizer, memorise

STORY = "the cat is a big dog"
LONG = "one cat one dog tell me a story about the sun the moon the river the tree the star please"  # in the vocabulary
STEP_S = 0.03  # the forward pass's added sleep in the timing tests


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tokenizer = make_tokenizer()
    model = make_model(tokenizer, seed=3)
    end = [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    pairs = [("tell me a story", STORY), ("tell me a long story", LONG)]
    memorise(
        model,
        tokenizer,
        [
            ([{"role": "user", "content": q}], tokenizer(a, add_special_tokens=False)["input_ids"] + end)
            for q, a in pairs
        ],
        steps=150,
    )
    folder = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    backend = HFLocalBackend({"model_path": str(folder)})
    delay = {"s": 0.0}
    # every forward pass reads the embedding once, through transformers' forward or the lean one
    backend.loaded.model.model.embed_tokens.register_forward_hook(lambda *_: time.sleep(delay["s"]))
    server = make_server(backend, "tiny", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", backend, delay
    server.shutdown()
    server.server_close()


@pytest.fixture
def slow(served):
    url, backend, delay = served
    delay["s"] = STEP_S
    yield url
    delay["s"] = 0.0


def chat(question: str, **extra) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": question}], "temperature": 0,
            "repetition_penalty": 1.0, **extra}  # fmt: skip


def stream_chunks(url: str, body: dict, first: threading.Event | None = None) -> list[tuple[float, dict | str]]:
    """Each server-sent event with the time it arrived (the JSON chunk, or "[DONE]")."""
    out: list[tuple[float, dict | str]] = []
    with requests.post(f"{url}/chat/completions", json={**body, "stream": True}, stream=True, timeout=60) as reply:
        assert reply.status_code == 200 and reply.headers["Content-Type"] == "text/event-stream"
        for line in reply.iter_lines():
            if not line:
                continue
            data = line.decode().removeprefix("data: ")
            out.append((time.monotonic(), data if data == "[DONE]" else json.loads(data)))
            if first is not None and data != "[DONE]" and json.loads(data)["choices"][0]["delta"].get("content"):
                first.set()
    return out


def contents(chunks) -> list[tuple[float, str]]:
    return [
        (at, c["choices"][0]["delta"]["content"])
        for at, c in chunks
        if isinstance(c, dict) and c["choices"] and c["choices"][0]["delta"].get("content")
    ]


def test_a_streamed_answer_leaves_token_by_token_while_it_is_generated(slow):
    chunks = stream_chunks(slow, chat("tell me a long story", max_tokens=64))
    pieces = contents(chunks)
    assert "".join(p for _, p in pieces) == LONG
    assert len(pieces) == len(LONG.split()), "one chunk per token"
    done_at = chunks[-1][0]
    assert chunks[-1][1] == "[DONE]"
    # every token after the first costs a forward pass of at least STEP_S: an answer generated
    # whole and then sent would have its first chunk and its [DONE] a few milliseconds apart
    floor = (len(pieces) - 1) * STEP_S
    assert done_at - pieces[0][0] >= 0.8 * floor, "the first token was sent before the last was generated"


def test_a_request_joins_the_answers_being_generated_instead_of_waiting(slow):
    first = threading.Event()
    long_chunks: list = []
    worker = threading.Thread(
        target=lambda: long_chunks.extend(stream_chunks(slow, chat("tell me a long story", max_tokens=64), first))
    )
    worker.start()
    assert first.wait(30)
    reply = requests.post(f"{slow}/chat/completions", json=chat("tell me a story", max_tokens=16), timeout=60)
    short_done = time.monotonic()
    worker.join(60)
    assert reply.json()["choices"][0]["message"]["content"] == STORY
    assert reply.headers["X-Batch-Size"] == "2", "it was decoded in the same steps as the long answer"
    assert "".join(p for _, p in contents(long_chunks)) == LONG
    assert short_done < long_chunks[-1][0], "the short answer did not wait for the long one to end"


def test_a_stop_sequence_and_its_beginning_are_never_streamed(served):
    url, _, _ = served
    pieces = [p for _, p in contents(stream_chunks(url, chat("tell me a story", stop=["big dog"], max_tokens=16)))]
    assert "".join(pieces) == "the cat is a "
    assert not any("big" in p for p in pieces)
    assert held_back("the cat is a bi", ("big dog",)) == 2 and held_back("the cat", ("big dog",)) == 0
    reply = requests.post(
        f"{url}/chat/completions", json=chat("tell me a story", stop=["big dog"], max_tokens=16), timeout=30
    )
    assert reply.json()["choices"][0]["message"]["content"] == "the cat is a "


@pytest.fixture(scope="module")
def random_backend(tmp_path_factory):
    tokenizer = make_tokenizer()
    folder = tmp_path_factory.mktemp("random")
    make_model(tokenizer, seed=11).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return HFLocalBackend({"model_path": str(folder)})


PROMPTS = ["tell me a story", "what is the sky", "write a poem about the cat and the dog please", "hi", "why"]


def test_answers_arriving_at_different_times_are_those_of_batched_generate(random_backend):
    """Left padding, merged caches and rows leaving the batch change no greedy answer; the answer
    that outlasts the others ends alone, through the lean decoder."""
    loop = DecodeLoop(random_backend, threading.Lock())
    # the first: the longest prompt (so no later arrival pads it) and, without a penalty, 60 tokens;
    # the others stop within 12 + 7 x 4 tokens, arriving 5 ms apart while each step takes at least
    # 20 ms (a sleep on the embedding), so they end long before it however loaded the machine
    order = [PROMPTS[2], PROMPTS[0], PROMPTS[1], PROMPTS[3], PROMPTS[4]]
    sampling = [SamplingConfig(temperature=0.0, repetition_penalty=1.0, max_new_tokens=60)] + [
        SamplingConfig(temperature=0.0, repetition_penalty=1.2, max_new_tokens=12 + 7 * i) for i in range(1, 5)
    ]
    requests_ = [GenerationRequest(i, [{"role": "user", "content": p}]) for i, p in enumerate(order)]
    streams = []
    slowed = random_backend.loaded.model.model.embed_tokens.register_forward_hook(lambda *_: time.sleep(0.02))
    try:
        for request, config in zip(requests_, sampling, strict=True):
            streams.append(loop.submit(request, config))
            time.sleep(0.005)
        results = []
        for stream in streams:
            assert stream.done.wait(60)
            results.append(stream.result())
    finally:
        slowed.remove()
    for request, config, result in zip(requests_, sampling, results, strict=True):
        [alone] = list(random_backend.generate([request], config))
        assert (result.text, result.finish_reason, result.completion_tokens) == (
            alone.text,
            alone.finish_reason,
            alone.completion_tokens,
        )
    assert max(r.metadata["batch_size"] for r in results) > 1
    assert results[0].completion_tokens == 60 and max(r.completion_tokens for r in results[1:]) <= 40
    assert results[0].metadata["lean_steps"] > 0, "the first answer ended alone, through the lean decoder"


def test_a_lone_answer_joined_mid_way_and_left_alone_again_is_generates(random_backend):
    """A lone answer decodes in the lean decoder's cache; another request joins (its keys and
    values go back into the batch's cache), ends, and the first decodes alone again: every token is
    the one hf_local's generate gives each prompt alone."""
    loop = DecodeLoop(random_backend, threading.Lock())
    # without a penalty this model's answer to PROMPTS[2] runs to its 60 tokens (with one it stops
    # after 7, and the other request could arrive after it ended)
    first_config = SamplingConfig(temperature=0.0, repetition_penalty=1.0, max_new_tokens=60)
    other_config = SamplingConfig(temperature=0.0, repetition_penalty=1.2, max_new_tokens=6)
    first = GenerationRequest("first", [{"role": "user", "content": PROMPTS[2]}])
    other = GenerationRequest("other", [{"role": "user", "content": PROMPTS[0]}])
    # each step at least 20 ms (a sleep on the embedding, which every forward reads once), so that
    # the lone answer's 60 steps outlast the other's arrival however loaded the machine
    slowed = random_backend.loaded.model.model.embed_tokens.register_forward_hook(lambda *_: time.sleep(0.02))
    try:
        lone = loop.submit(first, first_config)
        deadline = time.monotonic() + 30
        while lone.lean_steps < 3:  # decoding alone, through the lean decoder
            assert time.monotonic() < deadline and not lone.done.is_set()
            time.sleep(0.001)
        before_join = lone.lean_steps
        joined = loop.submit(other, other_config)
        assert lone.done.wait(60) and joined.done.wait(60)
    finally:
        slowed.remove()
    result, joined_result = lone.result(), joined.result()
    assert result.metadata["batch_size"] == 2 and result.completion_tokens == 60
    assert 3 <= before_join and lone.lean_steps > before_join + 30, "alone again after the other answer ended"
    for request, config, got in ((first, first_config, result), (other, other_config, joined_result)):
        [alone] = list(random_backend.generate([request], config))
        assert (got.text, got.completion_tokens) == (alone.text, alone.completion_tokens)


def test_a_seeded_sampled_answer_is_the_same_alone_or_in_company(random_backend):
    loop = DecodeLoop(random_backend, threading.Lock())
    config = SamplingConfig(temperature=1.0, top_p=0.9, repetition_penalty=1.0, max_new_tokens=20, seed=5)
    request = GenerationRequest("x", [{"role": "user", "content": "tell me a joke"}])
    alone = loop.generate(request, config).text
    company = [
        loop.submit(GenerationRequest(i, [{"role": "user", "content": p}]), config) for i, p in enumerate(PROMPTS)
    ]
    again = loop.generate(request, config).text
    for stream in company:
        stream.done.wait(60)
    assert again == alone and alone


def test_an_answer_whose_caller_went_away_stops_at_the_next_step(served):
    _, backend, delay = served
    delay["s"] = STEP_S
    try:
        loop = DecodeLoop(backend, threading.Lock())
        stream = loop.submit(
            GenerationRequest(0, [{"role": "user", "content": "tell me a long story"}]),
            SamplingConfig(temperature=0.0, repetition_penalty=1.0, max_new_tokens=64),
        )
        first = stream.events.get(timeout=30)
        assert first is not DONE
        stream.cancel()
        assert stream.done.wait(10)
        result = stream.result()
        assert result.finish_reason == "cancelled" and result.completion_tokens < len(LONG.split())
    finally:
        delay["s"] = 0.0


def test_without_max_tokens_the_prompt_keeps_its_place_and_the_answer_has_the_rest(served):
    """As vLLM: no max_tokens means what the context leaves, not a fixed 512 that on a short
    context cut the prompt to its last token (the tiny model's context is 256)."""
    url, backend, _ = served
    body = {"model": "tiny", "messages": [{"role": "user", "content": "tell me a story"}], "temperature": 0}
    reply = requests.post(f"{url}/chat/completions", json=body, timeout=30).json()
    [item] = backend.prepare([GenerationRequest(0, body["messages"])], SamplingConfig(max_new_tokens=1))
    assert reply["usage"]["prompt_tokens"] == len(item.input_ids) > 1
    assert reply["choices"][0]["message"]["content"] == STORY


def test_other_work_on_the_model_runs_on_the_loop_thread_between_steps(random_backend):
    """The server's label scores and next-token probabilities go through ``call``: done by the loop
    thread (the model's only OpenMP team: generation/continuous.py says why), between two steps of
    the answers being generated, which stay those of generate."""
    loop = DecodeLoop(random_backend, threading.Lock())
    assert loop.call(lambda: threading.current_thread().name) == "decode-loop"
    with pytest.raises(ValueError, match="invalid literal"):
        loop.call(lambda: int("not a number"))
    config = SamplingConfig(temperature=0.0, repetition_penalty=1.2, max_new_tokens=30)
    request = GenerationRequest("story", [{"role": "user", "content": PROMPTS[2]}])
    stream = loop.submit(request, config)
    scored = []
    labels = GenerationRequest("q", [{"role": "user", "content": "is the sky blue"}])
    while not scored or not stream.done.is_set():  # at least once, and as long as the answer runs
        scored.append(loop.call(lambda: random_backend.label_logprobs(labels, ["yes", "no"])))
    assert stream.done.wait(60) and all(len(pairs) == 2 for pairs, _ in scored)
    assert len({repr(pairs) for pairs, _ in scored}) == 1, "the same scores whenever they are asked"
    [alone] = list(random_backend.generate([request], config))
    assert stream.result().text == alone.text
    assert made_apart(lambda: threading.current_thread().name) == "load-model"
    with pytest.raises(RuntimeError, match="in its own thread"):
        made_apart(lambda: (_ for _ in ()).throw(RuntimeError("raised in its own thread")))

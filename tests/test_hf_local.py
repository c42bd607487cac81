"""The hf_local backend on tiny random Llamas made in the test."""

import pytest
import torch

from generation.config import SamplingConfig
from generation.hf_local import HFLocalBackend, plan_batches
from generation.types import GenerationRequest
from tests.tiny_models import make_model, make_tokenizer, memorise, save_tiny

GREEDY = SamplingConfig(temperature=0.0, repetition_penalty=1.0, max_new_tokens=12)

PROMPTS = [
    "hi",
    "tell me a joke about the cat",
    "why is the sky blue please explain",
    "write a poem about the moon and the sun and a tree by the river",
    "what",
    "how is the coffee",
]


def req(i, text):
    return GenerationRequest(key=i, messages=[{"role": "user", "content": text}])


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny"), seed=3)


def run(backend, requests, sampling=GREEDY):
    return {r.key: r for r in backend.generate(requests, sampling)}


def test_batched_greedy_equals_one_at_a_time_greedy(tiny_dir):
    batched = HFLocalBackend({"model_path": str(tiny_dir), "max_batch_size": 8})
    single = HFLocalBackend({"model_path": str(tiny_dir), "max_batch_size": 1}, loaded=batched.loaded)
    requests = [req(i, t) for i, t in enumerate(PROMPTS)]
    together = run(batched, requests)
    alone = run(single, requests)
    assert {r.metadata["batch_size"] for r in together.values()} == {len(PROMPTS)}, "all in one padded batch"
    assert len({r.prompt_tokens for r in together.values()}) > 3, "prompts of different lengths"
    for i in range(len(PROMPTS)):
        assert together[i].text == alone[i].text, f"prompt {i} differs when padded"
        assert together[i].completion_tokens == alone[i].completion_tokens


def test_it_stops_on_the_end_of_turn_token_and_on_eos():
    tokenizer = make_tokenizer()
    model = make_model(tokenizer, seed=1)
    vocab = tokenizer.get_vocab()
    eot, eos = vocab["<|im_end|>"], vocab["</s>"]
    asks_eot = [{"role": "user", "content": "tell me about the sun"}]
    asks_eos = [{"role": "user", "content": "tell me about the moon"}]
    memorise(model, tokenizer, [(asks_eot, [vocab["warm"], vocab["star"], eot]), (asks_eos, [vocab["cold"], eos])])
    from generation.hf_local import LoadedModel, stop_token_ids

    tokenizer.padding_side = "left"
    loaded = LoadedModel(model, tokenizer, torch.device("cpu"), 256, stop_token_ids(tokenizer, model))
    assert set(loaded.stop_ids) == {eot, eos}
    backend = HFLocalBackend({"model_path": "unused"}, loaded=loaded)
    results = run(backend, [GenerationRequest("eot", asks_eot), GenerationRequest("eos", asks_eos)])
    assert (results["eot"].text, results["eot"].finish_reason, results["eot"].completion_tokens) == (
        "warm star",
        "stop",
        2,
    )
    assert (results["eos"].text, results["eos"].finish_reason, results["eos"].completion_tokens) == ("cold", "stop", 1)


def test_a_streamed_answer_grows_token_by_token_and_ends_as_the_whole_answer(tiny_dir):
    backend = HFLocalBackend({"model_path": str(tiny_dir)})
    backend.loaded.stop_ids = []  # all twelve tokens: twelve steps to watch
    seen: list[str] = []
    streamed = backend.stream_one(req(0, "tell me a joke about the cat"), GREEDY, seen.append)
    whole = run(backend, [req(0, "tell me a joke about the cat")])[0]
    assert streamed.text == whole.text and streamed.completion_tokens == whole.completion_tokens == 12
    assert len(seen) >= 6, "handed on as it grew, not once at the end"
    assert all(later.startswith(earlier) for earlier, later in zip(seen, seen[1:], strict=False)), "grows"
    assert seen[-1] == whole.text


def test_a_streamed_answer_stops_at_the_end_of_turn_token_as_the_batch_does():
    tokenizer = make_tokenizer()
    model = make_model(tokenizer, seed=1)
    vocab = tokenizer.get_vocab()
    asks = [{"role": "user", "content": "tell me about the sun"}]
    memorise(model, tokenizer, [(asks, [vocab["warm"], vocab["star"], vocab["<|im_end|>"]])])
    from generation.hf_local import LoadedModel, stop_token_ids

    tokenizer.padding_side = "left"
    loaded = LoadedModel(model, tokenizer, torch.device("cpu"), 256, stop_token_ids(tokenizer, model))
    seen: list[str] = []
    result = HFLocalBackend({"model_path": "unused"}, loaded=loaded).stream_one(
        GenerationRequest(0, asks), GREEDY, seen.append
    )
    assert (result.text, result.finish_reason, seen) == ("warm star", "stop", ["warm", "warm star"])


def test_without_a_stop_token_it_ends_at_max_new_tokens(tiny_dir):
    backend = HFLocalBackend({"model_path": str(tiny_dir)})
    backend.loaded.stop_ids = []  # nothing can stop it
    result = run(backend, [req(0, "hi")], SamplingConfig(temperature=0, repetition_penalty=1.0, max_new_tokens=7))[0]
    assert (result.finish_reason, result.completion_tokens) == ("length", 7)


def test_a_history_longer_than_the_context_is_trimmed_from_the_left_with_a_note(tmp_path):
    folder = save_tiny(tmp_path / "short", context=64)
    backend = HFLocalBackend({"model_path": str(folder)})
    long_turn = " ".join(["the sky is blue"] * 6)  # 24 tokens a turn
    messages = [
        {"role": "user", "content": long_turn},
        {"role": "assistant", "content": long_turn},
        {"role": "user", "content": "tell me a joke"},
    ]
    sampling = SamplingConfig(temperature=0, max_new_tokens=16)
    result = run(backend, [GenerationRequest(0, messages)], sampling)[0]
    assert result.notes.startswith("trimmed: dropped the 2 oldest message(s)")
    assert result.prompt_tokens <= 64 - 16
    untrimmed = run(backend, [GenerationRequest(1, messages[-1:])], sampling)[1]
    assert untrimmed.notes == "" and untrimmed.text == result.text, "what is left is the last user turn"


def test_a_single_turn_too_long_is_cut_at_its_start(tmp_path):
    folder = save_tiny(tmp_path / "short", context=48)
    backend = HFLocalBackend({"model_path": str(folder)})
    messages = [{"role": "user", "content": " ".join(["tell me a story"] * 20)}]
    result = run(backend, [GenerationRequest(0, messages)], SamplingConfig(temperature=0, max_new_tokens=8))[0]
    assert "and the first" in result.notes and result.prompt_tokens == 40


def test_sampling_with_a_seed_is_reproducible(tiny_dir):
    backend = HFLocalBackend({"model_path": str(tiny_dir)})
    sampling = SamplingConfig(temperature=1.0, top_p=0.95, max_new_tokens=10, seed=42)
    requests = [req(i, t) for i, t in enumerate(PROMPTS)]
    first, second = run(backend, requests, sampling), run(backend, requests, sampling)
    assert {k: r.text for k, r in first.items()} == {k: r.text for k, r in second.items()}
    other = run(backend, requests, SamplingConfig(temperature=1.0, top_p=0.95, max_new_tokens=10, seed=7))
    assert {k: r.text for k, r in other.items()} != {k: r.text for k, r in first.items()}


def test_the_repetition_penalty_only_counts_generated_tokens():
    from generation.hf_local import GeneratedTokensRepetitionPenalty

    processor = GeneratedTokensRepetitionPenalty(2.0, prompt_length=3)
    input_ids = torch.tensor([[5, 6, 7, 8]])  # 5, 6, 7 are the prompt; 8 was generated
    scores = torch.tensor([[1.0] * 5 + [4.0, 4.0, 4.0, 4.0, -4.0]])
    out = processor(input_ids, scores.clone())
    assert out[0, 5:9].tolist() == [4.0, 4.0, 4.0, 2.0], "prompt tokens untouched, generated token halved"
    assert out[0, 9].item() == -4.0


def test_batches_are_bounded_by_size_and_token_budget():
    lengths = [10, 200, 12, 11, 190, 13]
    batches = plan_batches(lengths, max_new_tokens=50, max_batch_size=3, max_batch_tokens=600)
    assert sorted(i for b in batches for i in b) == list(range(6))
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or (max(lengths[i] for i in batch) + 50) * len(batch) <= 600
    assert batches[0] == [0, 3, 2], "shortest first, grouped by length"
    assert plan_batches([5000], 50, 3, 600) == [[0]], "a prompt over the budget still gets a batch of its own"


def test_a_core_busy_elsewhere_is_left_to_its_process():
    """Another process spinning on a core: this one measures it and takes the cores left (torch's
    two threads on one free core ran training at 67 tokens/s, one thread at 140)."""
    import os
    import subprocess
    import sys
    import time

    from generation.hf_local import busy_elsewhere, configure_threads

    cores = len(os.sched_getaffinity(0))
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert busy_elsewhere() >= 0.7
        assert configure_threads(fresh=True) <= max(1, cores - 1)
    finally:
        burner.kill()
        burner.wait()

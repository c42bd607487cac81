"""generation/lean.py: one row decoded without transformers' per-step machinery gives generate's
tokens (greedy, and sampled from the same seed), its stream, and leaves alone the models it does not
run. Tiny random Llamas made in the test, dense and int4; the bundled model in a slow test."""

from __future__ import annotations

import inspect

import pytest
import torch

from generation import lean, quantized
from generation.config import ConfigError, SamplingConfig, validate_backend_config
from generation.hf_local import HFLocalBackend, LoadedModel, stop_token_ids
from generation.lean import LeanLlama
from generation.quantized import DENSE_FROM_ROWS, quantize_int4
from generation.types import GenerationRequest
from tests.tiny_models import WORDS, make_model, make_tokenizer

PROMPTS = ["hi", "tell me a joke about the cat", "why is the sky blue please explain", "write a poem about the moon"]


def loaded(model, tokenizer, context: int = 256) -> LoadedModel:
    tokenizer.padding_side = "left"
    return LoadedModel(model, tokenizer, torch.device("cpu"), context, stop_token_ids(tokenizer, model))


def tiny(form: str, seed: int = 4, context: int = 256, output_int8: bool | None = None):
    """A tiny random Llama whose weights are large enough that its answers depend on the prompt
    (at the usual initial scale every prompt gets the same few tokens)."""
    tokenizer = make_tokenizer()
    model = make_model(tokenizer, seed=seed, context=context, tie_word_embeddings=True)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.normal_(0, 0.3)
    if form == "int4":
        model = model.to(torch.bfloat16)
        quantize_int4(model, output_int8)
    elif form == "bfloat16":
        model = model.to(torch.bfloat16)
    return model, tokenizer


def chat_ids(tokenizer, text: str) -> list[int]:
    messages = [{"role": "user", "content": text}]
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"])


def generated(backend: HFLocalBackend, sampling: SamplingConfig, prompts=PROMPTS) -> list:
    requests = [GenerationRequest(key=i, messages=[{"role": "user", "content": p}]) for i, p in enumerate(prompts)]
    return sorted(backend.generate(requests, sampling), key=lambda r: r.key)


@pytest.mark.parametrize("form", ["float32", "bfloat16", "int4"])
@pytest.mark.parametrize(
    "sampling",
    [
        SamplingConfig(temperature=0.0, repetition_penalty=1.0, max_new_tokens=24),
        SamplingConfig(temperature=0.0, repetition_penalty=1.2, max_new_tokens=24),  # the paper's penalty
        SamplingConfig(temperature=0.7, top_p=0.9, repetition_penalty=1.2, max_new_tokens=24, seed=11),
    ],
    ids=["greedy", "greedy-penalised", "sampled"],
)
def test_one_row_gives_generates_tokens(form, sampling, monkeypatch):
    model, tokenizer = tiny(form)
    model.generation_config.eos_token_id = None  # no stop: every answer runs to its length
    lm = loaded(model, tokenizer)
    ours = generated(HFLocalBackend({"max_batch_size": 1}, loaded=lm), sampling)
    assert {r.metadata["decoder"] for r in ours} == {"lean"}
    monkeypatch.setenv("EVALSITE_LEAN_DECODE", "0")
    theirs = generated(HFLocalBackend({"max_batch_size": 1}, loaded=loaded(model, tokenizer)), sampling)
    assert {r.metadata["decoder"] for r in theirs} == {"generate"}
    assert [r.text for r in ours] == [r.text for r in theirs]
    assert [r.completion_tokens for r in ours] == [r.completion_tokens for r in theirs]
    assert len({r.text for r in ours}) > 1, "answers that differ: the prompts reach the model"


def test_it_stops_where_generate_stops_and_streams_the_same_text():
    model, tokenizer = tiny("float32", seed=7)
    lm = loaded(model, tokenizer)
    decoder = lm.one_row_decoder()
    assert decoder is not None
    ids = chat_ids(tokenizer, "tell me a story")
    with torch.inference_mode():
        free = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, eos_token_id=None)
    free_tokens = free[0, len(ids) :].tolist()
    stop = free_tokens[5]  # a token it makes sixth: as a stop token, generate ends there
    with torch.inference_mode():
        stopped = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, eos_token_id=[stop])
    heard: list[int] = []
    tokens = decoder.generate(ids, 12, [stop], on_token=heard.append)
    assert tokens == stopped[0, len(ids) :].tolist() == free_tokens[: free_tokens.index(stop) + 1]
    assert heard == tokens

    texts: list[str] = []
    backend = HFLocalBackend({}, loaded=lm)
    request = GenerationRequest(key=0, messages=[{"role": "user", "content": "tell me a story"}])
    sampling = SamplingConfig(temperature=0.0, repetition_penalty=1.0, max_new_tokens=12)
    result = backend.stream_one(request, sampling, texts.append)
    assert result.metadata["decoder"] == "lean"
    assert len(texts) > 3 and texts[-1] == result.text, "the text grows as the tokens come"
    assert all(later.startswith(earlier.rstrip()) for earlier, later in zip(texts, texts[1:], strict=False))


@pytest.mark.parametrize("form", ["float32", "int4"])
def test_a_long_prompt_and_new_tokens_after_a_cached_prefix_give_the_whole_forwards_logits(form):
    """A prompt past DENSE_FROM_ROWS (an int4 layer expands its weight there) and a second chunk
    of several tokens after a cached prefix (attention masked so each sees the prefix and the
    tokens before it): the last logits of the model's own forward over the whole sequence."""
    model, tokenizer = tiny(form, context=512)
    decoder = LeanLlama(model)
    length = DENSE_FROM_ROWS + 20
    ids = torch.tensor([tokenizer.convert_tokens_to_ids(WORDS[i % len(WORDS)]) for i in range(length)])
    with torch.inference_mode():
        whole = model(input_ids=ids[None]).logits[0, -1].float()
        # the library's own two chunks (its cache argument is `cache` since transformers 5.2x)
        name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        first = model(input_ids=ids[None, :100], use_cache=True)
        grown = first["cache"] if "cache" in first else first["past_key_values"]
        second = model(input_ids=ids[None, 100:], **{name: grown}).logits[0, -1].float()
        cache = decoder.new_cache(length)
        at_once = decoder.forward(ids, 0, cache)
        cache = decoder.new_cache(length)
        decoder.forward(ids[:100], 0, cache)
        in_two = decoder.forward(ids[100:], 100, cache)
    tolerance = 1e-4 if form == "float32" else 0.02  # bfloat16 activations: a few last bits
    assert torch.allclose(at_once, whole, atol=tolerance)
    assert torch.allclose(in_two, second, atol=tolerance)
    assert int(at_once.argmax()) == int(whole.argmax())
    if form == "float32":  # exact arithmetic but for rounding: two chunks are the whole
        assert torch.allclose(in_two, whole, atol=1e-4)


@pytest.mark.skipif(not quantized.int4_supported(), reason="this torch has no CPU int4 matmul")
@pytest.mark.parametrize("output_int8", [False, True])
def test_the_int4_one_token_step_is_the_general_forward_bit_for_bit(output_int8):
    """The int4 form's one-token step (kernels called directly, query and key rotated together,
    torch's fused RMS norm) against the general forward on the same tokens: the same logits and
    the same cache, every bit, over a prompt and 30 greedy steps, with the output layer in
    bfloat16 or at 8 bits (the two CPUs' forms); a dense model has no step."""
    model, tokenizer = tiny("int4", output_int8=output_int8)
    fast, general = LeanLlama(model), LeanLlama(model)
    assert fast.step_layers is not None and LeanLlama(tiny("bfloat16")[0]).step_layers is None
    general.step_layers = None  # the path every n-token forward takes
    ids = torch.tensor(chat_ids(tokenizer, PROMPTS[2]))
    with torch.inference_mode():
        caches = [fast.new_cache(len(ids) + 31), general.new_cache(len(ids) + 31)]
        logits = [fast.forward(ids, 0, caches[0]), general.forward(ids, 0, caches[1])]
        for at in range(len(ids), len(ids) + 30):
            token = torch.tensor([int(logits[1].argmax())])
            logits = [fast.forward(token, at, caches[0]), general.forward(token, at, caches[1])]
            assert torch.equal(logits[0], logits[1]), f"step at position {at}"
    assert all(torch.equal(a, b) for a, b in zip(caches[0], caches[1], strict=True))


def test_models_it_does_not_run_go_through_generate(monkeypatch):
    model, tokenizer = tiny("float32")
    assert LeanLlama.supports(model)
    model.generation_config.no_repeat_ngram_size = 2  # generate would apply it: this path does not
    assert not LeanLlama.supports(model)
    lm = loaded(model, tokenizer)
    [result] = generated(HFLocalBackend({}, loaded=lm), SamplingConfig(temperature=0.0, max_new_tokens=4), ["hi"])
    assert result.metadata["decoder"] == "generate"
    other, _ = tiny("float32")
    other.config.model_type = "mistral"  # another architecture, even one shaped alike
    assert not LeanLlama.supports(other)
    monkeypatch.setenv("EVALSITE_LEAN_DECODE", "0")
    assert not lean.enabled()


@pytest.mark.skipif(not quantized.int4_supported(), reason="this torch has no CPU int4 matmul")
def test_a_float32_model_answers_one_prompt_on_its_int4_form_and_batches_in_float32(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALSITE_QUANTIZED_CACHE", str(tmp_path / "quantized"))
    model, tokenizer = tiny("float32", seed=5)
    model.generation_config.eos_token_id = None  # every answer runs to its length
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    folder = {"model_path": str(tmp_path / "model"), "device": "cpu"}
    sampling = SamplingConfig(temperature=0.0, repetition_penalty=1.0, max_new_tokens=16)
    mixed = HFLocalBackend(validate_backend_config("hf_local", {**folder, "one_row_weights": "int4"}))
    shown: list[str] = []
    alone = [  # what the chat and the arena ask: one answer a person waits for
        mixed.stream_one(GenerationRequest(i, [{"role": "user", "content": p}]), sampling, shown.append)
        for i, p in enumerate(PROMPTS)
    ]
    assert {r.metadata["decoder"] for r in alone} == {"lean-int4"} and shown
    together = generated(mixed, sampling)
    assert {r.metadata["decoder"] for r in together} == {"generate"}
    assert type(mixed.loaded.model.model.layers[0].mlp.up_proj) is torch.nn.Linear, "batches run the float32 model"
    one_prompt_job = generated(mixed, sampling, PROMPTS[:1])  # a job's chunk of one, or its last batch alone
    assert one_prompt_job[0].metadata["decoder"] == "lean", "a job's every answer on the model's own weights"
    same = mixed.loaded.one_row_decoder(same_weights=True)
    assert same is not None and same.model is mixed.loaded.model, "serve_openai's loop: a decoder of the batch's model"

    monkeypatch.setenv("EVALSITE_LEAN_DECODE", "0")
    int4 = HFLocalBackend(validate_backend_config("hf_local", {**folder, "weights": "int4"}))
    by_generate = [generated(int4, sampling, [prompt])[0] for prompt in PROMPTS]
    assert [r.text for r in alone] == [r.text for r in by_generate], "the int4 model's own answers"
    dense = HFLocalBackend(validate_backend_config("hf_local", folder))
    assert [r.text for r in together] == [r.text for r in generated(dense, sampling)]
    assert one_prompt_job[0].text == generated(dense, sampling, PROMPTS[:1])[0].text
    assert len({r.text for r in alone}) > 1, "answers that differ: the prompts reach the model"
    with pytest.raises(ConfigError, match="one_row_weights"):
        validate_backend_config("hf_local", {**folder, "one_row_weights": "int8"})


@pytest.mark.slow
def test_the_bundled_model_at_int4_answers_as_generate_does():
    from generation.bundled import bundled_backend_config
    from generation.hf_local import load

    config = bundled_backend_config()
    if config is None:
        pytest.skip("the bundled model is not installed")
    lm = load({**config, "weights": "int4"})
    decoder = lm.one_row_decoder()
    assert decoder is not None and decoder.step_layers is not None, "the int4 one-token step"
    for text in ("Explain how tides work in a few sentences.", "What is 17 times 23?"):
        ids = chat_ids(lm.tokenizer, text)
        with torch.inference_mode():
            out = lm.model.generate(
                torch.tensor([ids]),
                max_new_tokens=48,
                do_sample=False,
                eos_token_id=lm.stop_ids,
                top_p=None,
                top_k=None,
            )
        assert decoder.generate(ids, 48, lm.stop_ids) == out[0, len(ids) :].tolist()

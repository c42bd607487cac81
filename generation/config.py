"""Sampling settings and backend configurations, validated here so that a bad system is
refused when it is registered, with a message that says which field is wrong."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

# where `manage.py serve_openai` listens unless told, and where the local judge looks for it; here,
# not in generation/server.py, so that what only needs the port does not import torch with the server
LOCAL_SERVER_PORT = 8001


class ConfigError(ValueError):
    """A configuration a user gave is wrong; the message names the field and what to do."""


@dataclass(frozen=True)
class SamplingConfig:
    """LIMA's decoding (docs/paper.md, Generation): nucleus sampling p=0.9, temperature 0.7,
    a repetition penalty of 1.2 on tokens already generated, at most 2,048 new tokens."""

    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.2
    max_new_tokens: int = 2048
    seed: int | None = None  # fixed seed -> reproducible samples (per prompt, per sample index)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SamplingConfig:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"sampling: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        config = cls(**data)
        config.validate()
        return config

    def validate(self) -> None:
        if not isinstance(self.temperature, int | float) or self.temperature < 0:
            raise ConfigError("sampling.temperature must be a number >= 0 (0 means greedy)")
        if not isinstance(self.top_p, int | float) or not 0 < self.top_p <= 1:
            raise ConfigError("sampling.top_p must be in (0, 1]")
        if not isinstance(self.repetition_penalty, int | float) or self.repetition_penalty <= 0:
            raise ConfigError("sampling.repetition_penalty must be > 0 (1.0 means none)")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ConfigError("sampling.max_new_tokens must be a whole number >= 1")
        if self.seed is not None and not isinstance(self.seed, int):
            raise ConfigError("sampling.seed must be a whole number or null")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


BACKENDS = ("hf_local", "openai_compat", "imported")

# field -> (type, required, help)
_BACKEND_FIELDS: dict[str, dict[str, tuple[type | tuple[type, ...], bool, str]]] = {
    "hf_local": {
        "model_path": (str, True, "a transformers model folder, a folder holding a GGUF file, or a .gguf file"),
        "gguf_file": (str, False, "the GGUF file's name inside model_path"),
        "dtype": (str, False, "float32, bfloat16 or float16"),
        "device": (str, False, "cpu, cuda, cuda:1, ... (default: cuda when available)"),
        "weights": (str, False, "int4: linear layers kept at 4 bits on CPU (faster one prompt at a time, less memory)"),
        "one_row_weights": (
            str,
            False,
            "int4: a job's answers run on the dtype's weights, the chat's and the arena's on their int4 form (CPU)",
        ),
        "max_batch_tokens": (int, False, "upper bound on padded tokens per batch (memory bound)"),
        "max_batch_size": (int, False, "upper bound on prompts per batch"),
    },
    "openai_compat": {
        "base_url": (str, True, "e.g. https://api.openai.com/v1 or http://127.0.0.1:8001/v1"),
        "model": (str, True, "the model name the server expects"),
        "api": (str, False, "'chat' (default) or 'completions' (legacy)"),
        "api_key_env": (str, False, "the variable holding the key (default: none; OPENAI_API_KEY for OpenAI)"),
        "dialect": (str, False, "openai, vllm, llamacpp, tgi, generic or auto: which sampling fields are sent"),
        "concurrency": (int, False, "requests in flight at once (default 8)"),
        "timeout": ((int, float), False, "seconds per request (default 120)"),
        "max_retries": (int, False, "retries for 429, 5xx and timeouts (default 5)"),
    },
    "imported": {
        "source": (str, False, "where the responses came from (a file name, a URL, a paper)"),
    },
}

DTYPES = ("float32", "bfloat16", "float16", "auto")
WEIGHTS = ("int4",)  # generation.quantized: forms other than the dtype's floats
# generation.dialects.DIALECTS and "auto" (kept here: dialects imports this module)
DIALECT_CHOICES = ("auto", "openai", "vllm", "llamacpp", "tgi", "generic")


def validate_backend_config(backend: str, config: dict[str, Any] | None, *, check_paths: bool = True) -> dict[str, Any]:
    """Return a cleaned copy of ``config`` or raise ConfigError naming the bad field."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is not one of: {', '.join(BACKENDS)}")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError("backend_config must be a JSON object")
    spec = _BACKEND_FIELDS[backend]
    unknown = sorted(set(config) - set(spec))
    if unknown:
        raise ConfigError(f"{backend}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(spec))}")
    cleaned: dict[str, Any] = {}
    for name, (kind, required, help_text) in spec.items():
        if name not in config or config[name] in (None, ""):
            if required:
                raise ConfigError(f"{backend}: {name} is required ({help_text})")
            continue
        value = config[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(f"{backend}: {name} has the wrong type ({help_text})")
        cleaned[name] = value
    if backend == "hf_local":
        _check_hf_local(cleaned, check_paths)
    elif backend == "openai_compat":
        _check_openai_compat(cleaned)
    return cleaned


def _check_hf_local(cfg: dict[str, Any], check_paths: bool) -> None:
    if cfg.get("dtype") and cfg["dtype"] not in DTYPES:
        raise ConfigError(f"hf_local: dtype must be one of {', '.join(DTYPES)}")
    if cfg.get("weights") and cfg["weights"] not in WEIGHTS:
        raise ConfigError(f"hf_local: weights must be one of {', '.join(WEIGHTS)} (or absent: the dtype's floats)")
    if cfg.get("one_row_weights") and cfg["one_row_weights"] not in WEIGHTS:
        raise ConfigError(f"hf_local: one_row_weights must be one of {', '.join(WEIGHTS)} (or absent: as the batches)")
    for name in ("max_batch_tokens", "max_batch_size"):
        if name in cfg and cfg[name] < 1:
            raise ConfigError(f"hf_local: {name} must be >= 1")
    if not check_paths:
        return
    path = Path(cfg["model_path"]).expanduser()
    if not path.exists():
        raise ConfigError(f"hf_local: model_path {path} does not exist")
    if path.is_file():
        if path.suffix != ".gguf":
            raise ConfigError(f"hf_local: model_path {path} is a file but not a .gguf file; give its folder")
        return
    if cfg.get("gguf_file"):
        if not (path / cfg["gguf_file"]).is_file():
            raise ConfigError(f"hf_local: gguf_file {cfg['gguf_file']} is not in {path}")
        return
    if not (path / "config.json").is_file():
        raise ConfigError(f"hf_local: {path} has no config.json; give a transformers model folder or set gguf_file")


def _check_openai_compat(cfg: dict[str, Any]) -> None:
    if not cfg["base_url"].startswith(("http://", "https://")):
        raise ConfigError("openai_compat: base_url must start with http:// or https://")
    if cfg.get("dialect", "auto") not in (*DIALECT_CHOICES,):
        raise ConfigError(f"openai_compat: dialect must be one of {', '.join(DIALECT_CHOICES)}")
    if cfg.get("api", "chat") not in ("chat", "completions"):
        raise ConfigError("openai_compat: api must be 'chat' or 'completions'")
    if cfg.get("concurrency", 8) < 1:
        raise ConfigError("openai_compat: concurrency must be >= 1")
    if cfg.get("timeout", 120) <= 0:
        raise ConfigError("openai_compat: timeout must be > 0")

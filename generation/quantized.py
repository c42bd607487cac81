"""Weights at 4 bits on CPU: fewer bytes read per generated token.

One prompt at a time, decoding a small model on CPU is bound by reading its weights (the
SmolLM2-135M's linear layers are 212 MB in bfloat16, read once per token). Here each linear layer's
weight is kept as 4-bit integers in groups of 32 along the input dimension, each group with its own
scale and minimum: the Q4_1 form the bundled GGUF file ships, so re-quantising its de-quantised
weights gives back the same grid and the model's outputs are those of the file (bench/generation.py
checks the perplexity before and after). torch's CPU kernel ``_weight_int4pack_mm_for_cpu``
multiplies by the packed weight without expanding it; for many rows at once (a long prompt's
prefill, a large batch) expanding the weight once and using the bfloat16 matmul is faster, so the
layer keeps the plain nibbles as well and switches on the number of rows. Measured here with torch
2.13 on the model's three layer shapes, the packed kernel including nothing to expand: 30-77x
faster than expanding and multiplying for one row, 1.1-1.7x for 128 rows, about even at 160, up to
1.4x slower at 256 (a short prompt's prefill of about 50 rows took 0.22 s expanded, 0.07 s packed).

The embedding, tied to the output layer, is kept in bfloat16. On a CPU without bfloat16
instructions (AVX512-BF16 or AMX: ``bf16_instructions``) the output layer is made 8-bit at load
time, one scale per row (``Int8Linear``, untied from the embedding, which keeps its bfloat16 copy for
look-ups): for a 135M model it is the largest matrix read per token (49,152 x 576: 56.6 MB in
bfloat16), and there its bfloat16 matmul took 3.1 ms a token, as long as all the int4 layers
together, torch's ``_weight_int8pack_mm`` 1.4 ms (an Intel Xeon with AVX-512 and no bfloat16
instructions, 2 threads, torch 2.13; faster at every batch size up to 64 rows). On a CPU with them
an 8-bit output layer was no faster (41.4 tokens/s against 48.1 one prompt at a time), so the
bfloat16 one stays there. llama.cpp reads that matrix from the bundled file as Q8_0, 8 bits in
blocks of 32; rows here share one scale (the perplexity of the shipped reference answers went from
17.78 to 17.85; float32's is 17.76). The converted model is written once to
a cache folder (``EVALSITE_QUANTIZED_CACHE``, under var/models/ in the Django settings) by a
separate process, so a process that loads it never holds the float32 de-quantisation of the GGUF
file: loading reads the folder's 171 MB (the packed and the plain
nibbles, the bfloat16 embedding) instead of de-quantising the GGUF to 540 MB of float32."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

GROUP_SIZE = 32
FORMAT = "int4-groupwise-asymmetric"
FORMAT_VERSION = 1
# At or above this many rows, expand the weight to bfloat16 and use the dense matmul.
DENSE_FROM_ROWS = 160
_PACK_ROWS = 16  # torch's CPU int4 packing takes the output dimension in blocks of 16
# torch 2.13's int8 matmul reads its input and weight with aligned vector loads: a tensor starting
# 16 bytes past a 64-byte boundary crashed the process here (a segmentation fault, no exception)
_ALIGN = 64


class QuantizationError(RuntimeError):
    pass


def native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX, through oneDNN): there,
    bfloat16 weights halve the bytes read per token and take the faster matmul kernels
    (bench/generation.py: single stream 1.5x, batched 1.8x float32's, perplexity unchanged)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bf16_instructions() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX). oneDNN's ``native_bf16``
    also says yes on AVX-512 without them (it converts to float32 inside its kernels): there the
    bfloat16 output layer was slower than the 8-bit one (see the module's docstring)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: decide as oneDNN does
        return native_bf16()


def int4_supported() -> bool:
    return hasattr(torch, "_weight_int4pack_mm_for_cpu") and hasattr(torch, "_convert_weight_to_int4pack_for_cpu")


def can_quantize(linear: nn.Linear, group_size: int = GROUP_SIZE) -> bool:
    return linear.in_features % group_size == 0 and linear.out_features % _PACK_ROWS == 0


def can_quantize_int8(linear: nn.Linear) -> bool:
    # torch 2.13's int8 kernel reads the input dimension in blocks: at 5 it crashed the process, at 4,
    # 8 or 33 it returned inf, nan or garbage (tried here); whole groups of 32 are what it was built for
    return linear.in_features % GROUP_SIZE == 0


class Int4Linear(nn.Module):
    """y = x W^T (+ b) with W kept as 4-bit integers q in groups: W = (q - 8) * scale + zero."""

    packed: torch.Tensor
    nibbles: torch.Tensor
    scales_zeros: torch.Tensor

    def __init__(self, in_features: int, out_features: int, bias: bool = False, group_size: int = GROUP_SIZE):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        groups = in_features // group_size
        # the kernel's packed form (opaque, blocked over rows) and the plain nibbles (two per byte)
        self.register_buffer("packed", torch.zeros(out_features, in_features // 2, dtype=torch.uint8))
        self.register_buffer("nibbles", torch.zeros(out_features, in_features // 2, dtype=torch.uint8))
        self.register_buffer("scales_zeros", torch.zeros(groups, out_features, 2, dtype=torch.bfloat16))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=torch.bfloat16), requires_grad=False) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = GROUP_SIZE) -> Int4Linear:
        weight = linear.weight.detach().float()
        n, k = weight.shape
        layer = cls(k, n, linear.bias is not None, group_size)
        groups = weight.reshape(n, k // group_size, group_size)
        low, high = groups.amin(-1), groups.amax(-1)
        scale = ((high - low) / 15).clamp(min=torch.finfo(torch.float32).tiny)
        q = torch.round((groups - low[..., None]) / scale[..., None]).clamp(0, 15).to(torch.int32).reshape(n, k)
        zero = low + 8 * scale  # the kernel computes (q - 8) * scale + zero
        layer.packed = torch._convert_weight_to_int4pack_for_cpu(q, 1)
        layer.nibbles = (q[:, 0::2] | (q[:, 1::2] << 4)).to(torch.uint8)
        layer.scales_zeros = torch.stack([scale.T, zero.T], -1).to(torch.bfloat16).contiguous()
        if linear.bias is not None:
            layer.bias = nn.Parameter(linear.bias.detach().to(torch.bfloat16), requires_grad=False)
        return layer

    def dense_weight(self) -> torch.Tensor:
        """The weight expanded to bfloat16 [out, in] (what the layer computes with)."""
        n, k, g = self.out_features, self.in_features, self.group_size
        q = torch.stack([self.nibbles & 15, self.nibbles >> 4], -1).reshape(n, k // g, g).to(torch.bfloat16)
        scale = self.scales_zeros[..., 0].T.unsqueeze(-1)
        zero = self.scales_zeros[..., 1].T.unsqueeze(-1)
        return ((q - 8) * scale + zero).reshape(n, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1]).to(torch.bfloat16)
        if rows.shape[0] >= DENSE_FROM_ROWS:
            y = nn.functional.linear(rows, self.dense_weight())
        else:
            y = torch._weight_int4pack_mm_for_cpu(rows, self.packed, self.group_size, self.scales_zeros)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}"


class Int8Linear(nn.Module):
    """y = x W^T (+ b) with W kept as 8-bit integers q, one scale per output row: W = q * scale."""

    weight_int8: torch.Tensor
    scales: torch.Tensor

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.zeros(out_features, dtype=torch.bfloat16))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=torch.bfloat16), requires_grad=False) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        weight = linear.weight.detach().float()
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None)
        scale = (weight.abs().amax(1) / 127).clamp(min=torch.finfo(torch.float32).tiny)
        layer.weight_int8 = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        layer.scales = scale.to(torch.bfloat16)
        if linear.bias is not None:
            layer.bias = nn.Parameter(linear.bias.detach().to(torch.bfloat16), requires_grad=False)
        return layer

    def dense_weight(self) -> torch.Tensor:
        """The weight expanded to bfloat16 [out, in] (what the layer computes with)."""
        return self.weight_int8.to(torch.bfloat16) * self.scales[:, None]

    def realign(self) -> None:
        """Own copies of tensors that do not start on a 64-byte boundary (safetensors' load_file
        gives views into one buffer at the file's offsets; torch allocates on 64 bytes)."""
        for name in ("weight_int8", "scales"):
            tensor = getattr(self, name)
            if tensor.data_ptr() % _ALIGN:
                setattr(self, name, tensor.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1]).to(torch.bfloat16)
        if not rows.is_contiguous() or rows.data_ptr() % _ALIGN:  # the last positions' rows of a batch
            rows = rows.clone(memory_format=torch.contiguous_format)
        if self.weight_int8.data_ptr() % _ALIGN:
            self.realign()
        y = torch._weight_int8pack_mm(rows, self.weight_int8, self.scales)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def _output_layer(model: nn.Module) -> Any:
    output_embeddings = getattr(model, "get_output_embeddings", None)
    return output_embeddings() if callable(output_embeddings) else None


def _wants_int8_output(output_int8: bool | None) -> bool:
    """The caller's choice, else this CPU's: 8 bits where it has no bfloat16 instructions."""
    return output_int8 if output_int8 is not None else not bf16_instructions()


def _output_name(model: nn.Module) -> str | None:
    """The output layer's name where it can be kept at 8 bits (a plain linear layer)."""
    out = _output_layer(model)
    if type(out) is not nn.Linear or not can_quantize_int8(out) or not hasattr(torch, "_weight_int8pack_mm"):
        return None
    return next(name for name, module in model.named_modules() if module is out)


def _linear_names(model: nn.Module) -> list[str]:
    """Every linear layer but the output layer (bfloat16, or 8 bits: int8_output)."""
    out = _output_layer(model)
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module is not out and can_quantize(module)
    ]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def int8_output(model: Any) -> bool:
    """Replace the output layer (in place) with Int8Linear, untied from the embedding, which keeps
    its own bfloat16 copy; False where the output layer is not a linear layer the kernel takes."""
    output = _output_name(model)
    if output is None:
        return False
    _set_module(model, output, Int8Linear.from_linear(model.get_submodule(output)))
    model.config.tie_word_embeddings = False
    return True


def quantize_int4(model: Any, output_int8: bool | None = None) -> list[str]:
    """Replace the model's linear layers (in place) with Int4Linear, and the output layer with
    Int8Linear where ``output_int8`` (default: on a CPU without bfloat16 instructions); the rest goes
    to bfloat16. Returns the names of the layers at 4 bits."""
    names = _linear_names(model)
    for name in names:
        _set_module(model, name, Int4Linear.from_linear(model.get_submodule(name)))
    if _wants_int8_output(output_int8):
        int8_output(model)
    for parameter in model.parameters():  # buffers keep theirs (the rotary frequencies stay float32)
        parameter.data = parameter.data.to(torch.bfloat16)
    model.config.dtype = "bfloat16"
    return names


def source_fingerprint(folder: str, gguf_file: str | None) -> str:
    """What the converted folder was made from: the source files' names, sizes and times."""
    root = Path(folder)
    files = [root / gguf_file] if gguf_file else sorted(p for p in root.iterdir() if p.is_file())
    parts = [str(root.resolve()), FORMAT, str(FORMAT_VERSION), str(GROUP_SIZE)]
    for path in files:
        stat = path.stat()
        parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("EVALSITE_QUANTIZED_CACHE") or Path.home() / ".cache" / "evalsite" / "quantized")


def converted_folder(folder: str, gguf_file: str | None) -> Path:
    stem = Path(gguf_file).stem if gguf_file else Path(folder).name
    return cache_root() / f"{stem}-int4-{source_fingerprint(folder, gguf_file)}"


def convert(folder: str, gguf_file: str | None, out: Path) -> None:
    """Load the source in float32, quantise, and write config, tokenizer and weights to ``out``
    (through a temporary folder renamed at the end: two workers converting at once both succeed)."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
    names = quantize_int4(model, output_int8=False)  # the folder serves every CPU: 8 bits at load
    if not names:
        raise QuantizationError(f"{folder}: no linear layer can be kept at 4 bits")
    state = model.state_dict()
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    if tied:
        state.pop("lm_head.weight", None)
    if hasattr(model.config, "quantization_config"):  # the GGUF's: the folder is plain safetensors
        del model.config.quantization_config
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, str(work / "model.safetensors"), {"format": "pt"})
        model.config.save_pretrained(work)
        model.generation_config.save_pretrained(work)
        tokenizer.save_pretrained(work)
        manifest = {"format": FORMAT, "version": FORMAT_VERSION, "group_size": GROUP_SIZE, "modules": names}
        manifest.update(source=str(Path(folder) / (gguf_file or "")), tied=tied)
        (work / "quantization.json").write_text(json.dumps(manifest, indent=1))
        try:
            work.rename(out)
        except OSError:
            if not (out / "quantization.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_converted(folder: str, gguf_file: str | None) -> Path:
    """The converted folder, converting in a child process the first time (so this process never
    holds the float32 model)."""
    out = converted_folder(folder, gguf_file)
    if (out / "quantization.json").is_file():
        return out
    command = [sys.executable, "-m", "generation.quantized", folder, str(out)] + ([gguf_file] if gguf_file else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not (out / "quantization.json").is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise QuantizationError(f"converting {folder} to int4 failed: {' / '.join(tail)}")
    return out


def load_converted(out: Path, output_int8: bool | None = None) -> tuple[Any, Any]:
    """Model and tokenizer from a converted folder, built on the meta device and given the saved
    tensors (nothing is allocated twice); the output layer made 8-bit where ``output_int8``
    (default: on a CPU without bfloat16 instructions)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    manifest = json.loads((out / "quantization.json").read_text())
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise QuantizationError(f"{out}: made by another version of this converter; delete the folder")
    config = AutoConfig.from_pretrained(out)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        for name in manifest["modules"]:
            linear = model.get_submodule(name)
            shell = Int4Linear(linear.in_features, linear.out_features, linear.bias is not None, manifest["group_size"])
            _set_module(model, name, shell)
    state = load_file(str(out / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise QuantizationError(f"{out}: weights do not match the model (missing {missing}, unexpected {unexpected})")
    if manifest.get("tied"):
        model.tie_weights()
    _rebuild_meta_buffers(model)
    if _wants_int8_output(output_int8):
        int8_output(model)
    model.eval()
    return model, AutoTokenizer.from_pretrained(out)


def _rebuild_meta_buffers(model: nn.Module) -> None:
    """Buffers computed at construction and not saved (the rotary embedding's frequencies) are
    still on the meta device: build those modules again on the CPU."""
    for name, module in list(model.named_modules()):
        if any(b.is_meta for b in module.buffers(recurse=False)):
            _set_module(model, name, type(module)(config=model.config))
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise QuantizationError(f"not loaded: {', '.join(left[:5])}")


def load_int4(folder: str, gguf_file: str | None) -> tuple[Any, Any]:
    if not int4_supported():
        raise QuantizationError(f"this torch ({torch.__version__}) has no CPU int4 matmul")
    return load_converted(ensure_converted(folder, gguf_file))


if __name__ == "__main__":  # python -m generation.quantized SOURCE_FOLDER OUT [GGUF_FILE]
    convert(sys.argv[1], sys.argv[3] if len(sys.argv) > 3 else None, Path(sys.argv[2]))

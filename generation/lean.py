"""One prompt at a time, without the library's per-step machinery.

Decoding one answer for one person (the chat, the arena, a single local answer) is a loop of
one-token forward passes. For a small Llama-family model on CPU each pass is mostly overhead
around the matmuls: measured here on the bundled SmolLM2-135M at int4, a step through transformers'
``generate`` took 13.9 ms, of which its 210 int4 matmuls took 5.3 ms and the output layer 2.6 ms;
the rest went to per-module dispatch, a causal mask built every step, a cache grown by
concatenation and the generation loop's bookkeeping. llama.cpp's whole step took 8.2 ms.

Here the same model runs as a short loop over its layers' weights: at int4, query, key and value
in one matmul and gate and up in one (re-packed side by side for a step's few rows), a key and
value cache allocated once for the prompt and its answer, the rotary table computed once by the
model's own rotary module, and attention by ``scaled_dot_product_attention`` as transformers' SDPA
path calls it (grouped-query heads, causal over a prompt, nothing to mask for one new token).
Each operation is the one transformers' Llama computes (its RMSNorm in float32, its rotary
embedding, SiLU of the gate times up), so greedy answers are the library's: tests check the tokens
against ``generate``'s on tiny models and on the bundled one. Sampling runs the same processors
(the repetition penalty on generated tokens, then temperature and top-p) and draws with
``torch.multinomial`` as ``generate`` does.

At int4 a one-token step (``LeanLlama._step``) goes further: the kernels called directly on one
row (no module call, reshape or dtype check around each), query and key rotated as one tensor
(rotate_half(x) * sin computed as roll(x, half) times sin with its first half negated, the same
numbers), torch's fused RMS norm (its float32 arithmetic gives transformers' bfloat16 result bit
for bit: checked by hand on 3,000 random vectors of width 576, on 40 steps of the bundled model,
and in tests, the step's logits and cache against the general forward's). On an Intel Xeon
without bfloat16 instructions a step took 16.7 ms, 13.8 with the 8-bit output layer
(generation/quantized.py), 10.6 with both: 4.6 ms of int4 matmuls, 2.2 of the output layer, 1.0 of
attention, the rest torch's dispatch of about 30 small operations a layer (by hand, 300 steps).
``torch.compile`` of the step was tried there: 13.4 ms after a 75 s compile (23 ms with its C++
wrapper), no gain.

Used by generation.hf_local for a batch of one when ``LeanLlama.supports`` the model (a Llama
architecture with the default rotary embedding, SiLU, no extra generation settings); anything else
goes through ``generate``. ``EVALSITE_LEAN_DECODE=0`` turns it off."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from generation.quantized import DENSE_FROM_ROWS, GROUP_SIZE, Int4Linear

_STEP_GROUP = GROUP_SIZE

# generation settings in a model's own generation config that would change what ``generate``
# does to the logits; with any of them set (away from its default), the model goes through generate
_PROCESSOR_FIELDS = {
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "min_length": 0,
    "min_new_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "sequence_bias": None,
    "exponential_decay_length_penalty": None,
    "renormalize_logits": False,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "typical_p": 1.0,
    "min_p": None,
    "guidance_scale": None,
    "watermarking_config": None,
    "top_h": None,
}


def enabled() -> bool:
    return os.environ.get("EVALSITE_LEAN_DECODE", "1") != "0"


class _PackedInt4:
    """Int4 layers side by side as one packed matmul (their outputs concatenated), re-packed from
    their plain nibbles: the same grid, scales and minima. Only the kernel's packed form is kept
    (35 MB more for the bundled model's query, key, value, gate and up layers): it serves the few
    rows of a decoding step; a prompt's many rows go through the layers themselves."""

    def __init__(self, layers: Sequence[Int4Linear]):
        first = layers[0]
        self.group_size = first.group_size
        nibbles = torch.cat([layer.nibbles for layer in layers], 0)
        out = nibbles.shape[0]
        q = torch.stack([nibbles & 15, nibbles >> 4], -1).reshape(out, first.in_features).to(torch.int32)
        self.packed = torch._convert_weight_to_int4pack_for_cpu(q, 1)
        self.scales_zeros = torch.cat([layer.scales_zeros for layer in layers], 1).contiguous()
        biases = [layer.bias for layer in layers]
        self.bias = None
        if any(b is not None for b in biases):
            self.bias = torch.cat(
                [
                    b.detach() if b is not None else torch.zeros(layer.out_features, dtype=torch.bfloat16)
                    for b, layer in zip(biases, layers, strict=True)
                ]
            )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        y = torch._weight_int4pack_mm_for_cpu(rows, self.packed, self.group_size, self.scales_zeros)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], -1).to(x.dtype)


def _projection(layer: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    if type(layer) is nn.Linear:
        weight, bias = layer.weight.detach(), None if layer.bias is None else layer.bias.detach()
        return lambda x: F.linear(x, weight, bias)
    return layer  # Int4Linear: its own forward (packed for few rows, expanded for many)


class _Group:
    """Projections of one input computed together: at int4, one packed matmul for a decoding
    step's few rows; else (or for a prompt's many rows) each layer, concatenated."""

    def __init__(self, layers: Sequence[nn.Module]):
        self.each = [_projection(layer) for layer in layers]
        self.packed = _PackedInt4(layers) if all(isinstance(m, Int4Linear) for m in layers) else None  # type: ignore[arg-type]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None and x.shape[-2] < DENSE_FROM_ROWS:
            return self.packed(x)
        return torch.cat([project(x) for project in self.each], dim=-1)


class _Layer:
    def __init__(self, layer: Any, heads: int, kv_heads: int, head_dim: int):
        attention, mlp = layer.self_attn, layer.mlp
        self.norm1, self.eps1 = layer.input_layernorm.weight.detach(), layer.input_layernorm.variance_epsilon
        self.norm2, self.eps2 = (
            layer.post_attention_layernorm.weight.detach(),
            layer.post_attention_layernorm.variance_epsilon,
        )
        self.qkv = _Group([attention.q_proj, attention.k_proj, attention.v_proj])
        self.o = _projection(attention.o_proj)
        self.gate_up = _Group([mlp.gate_proj, mlp.up_proj])
        self.down = _projection(mlp.down_proj)
        self.split = (heads * head_dim, kv_heads * head_dim, kv_heads * head_dim)
        self.intermediate = mlp.gate_proj.out_features


class _StepLayer(NamedTuple):
    """One layer's tensors for a one-token step at int4: each projection's kernel form, as
    torch._weight_int4pack_mm_for_cpu takes it (packed weight, scales and minima)."""

    norm1: torch.Tensor
    eps1: float
    qkv: tuple[torch.Tensor, torch.Tensor]
    o: tuple[torch.Tensor, torch.Tensor]
    norm2: torch.Tensor
    eps2: float
    gate_up: tuple[torch.Tensor, torch.Tensor]
    down: tuple[torch.Tensor, torch.Tensor]
    intermediate: int


def _step_layers(model: Any, layers: Sequence[_Layer]) -> list[_StepLayer] | None:
    """The int4 model's layers in the form ``LeanLlama._step`` runs: every projection at int4 with
    one group size and no bias, the hidden state in bfloat16 (the int4 form's); else None."""
    if model.model.embed_tokens.weight.dtype != torch.bfloat16:
        return None
    out = []
    for layer, lean_layer in zip(model.model.layers, layers, strict=True):
        o, down = layer.self_attn.o_proj, layer.mlp.down_proj
        packed = (lean_layer.qkv.packed, lean_layer.gate_up.packed)
        if not (isinstance(o, Int4Linear) and isinstance(down, Int4Linear)) or None in packed:
            return None
        qkv, gate_up = cast(_PackedInt4, packed[0]), cast(_PackedInt4, packed[1])
        if qkv.bias is not None or gate_up.bias is not None or o.bias is not None or down.bias is not None:
            return None
        if {qkv.group_size, gate_up.group_size, o.group_size, down.group_size} != {_STEP_GROUP}:
            return None
        out.append(
            _StepLayer(
                lean_layer.norm1,
                lean_layer.eps1,
                (qkv.packed, qkv.scales_zeros),
                (o.packed, o.scales_zeros),
                lean_layer.norm2,
                lean_layer.eps2,
                (gate_up.packed, gate_up.scales_zeros),
                (down.packed, down.scales_zeros),
                lean_layer.intermediate,
            )
        )
    return out


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' LlamaRMSNorm: in float32, then back to the input's dtype, times the weight."""
    dtype = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LeanLlama:
    """A loaded Llama-family causal LM (transformers' modules, dense or int4) run one sequence at
    a time with a cache allocated once; ``generate`` mirrors transformers' ``generate`` for one row."""

    @staticmethod
    def supports(model: Any) -> bool:
        config = getattr(model, "config", None)
        if config is None or getattr(config, "model_type", None) != "llama":
            return False
        rope = getattr(config, "rope_parameters", None) or {"rope_type": "default"}
        if rope.get("rope_type", "default") != "default" or getattr(config, "hidden_act", "silu") != "silu":
            return False
        if getattr(config, "pretraining_tp", 1) != 1 or model.device.type != "cpu":
            return False
        generation = getattr(model, "generation_config", None)
        if generation is not None:
            for name, default in _PROCESSOR_FIELDS.items():
                value = getattr(generation, name, default)
                if value not in (default, None) and not (isinstance(value, (list, dict)) and not value):
                    return False
        layers = model.model.layers
        kinds = [
            type(m)
            for layer in layers
            for m in (
                layer.self_attn.q_proj,
                layer.self_attn.k_proj,
                layer.self_attn.v_proj,
                layer.mlp.gate_proj,
                layer.mlp.up_proj,
            )
        ]
        return all(k is nn.Linear for k in kinds) or all(k is Int4Linear for k in kinds)

    def __init__(self, model: Any):
        config = model.config
        self.model = model
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.scaling = self.head_dim**-0.5
        self.dtype = model.model.embed_tokens.weight.dtype
        self.embed = model.model.embed_tokens
        self.layers = [_Layer(layer, self.heads, self.kv_heads, self.head_dim) for layer in model.model.layers]
        self.final_norm, self.final_eps = model.model.norm.weight.detach(), model.model.norm.variance_epsilon
        self.head = _projection(model.lm_head)
        self.rotary = model.model.rotary_emb
        self.positions = int(getattr(config, "max_position_embeddings", 2048) or 2048)
        self._cos = self._sin = self._sin_signed = torch.empty(0)
        self.step_layers = _step_layers(model, self.layers) if self.head_dim % 2 == 0 else None

    def _rotary_table(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for positions [0, length), from the model's own rotary module (once)."""
        if self._cos.shape[0] < length:
            size = max(length, min(self.positions, 1024))
            probe = torch.zeros(1, dtype=self.dtype)
            cos, sin = self.rotary(probe, torch.arange(size)[None])
            self._cos, self._sin = cos[0], sin[0]
            # rotate_half(x) * sin == roll(x, half) * (sin with its first half negated), exactly
            sign = torch.ones(self.head_dim, dtype=self._sin.dtype)
            sign[: self.head_dim // 2] = -1
            self._sin_signed = self._sin * sign
        return self._cos, self._sin

    def _step(self, ids: torch.Tensor, at: int, cache: list[torch.Tensor]) -> torch.Tensor:
        """``forward`` for one new token of the int4 form, with fewer operations: the kernels called
        directly on one row, query and key rotated together, torch's fused RMS norm (its float32
        arithmetic in one kernel gives transformers' bfloat16 result: checked bit for bit on the
        bundled model, and in tests against ``forward``), the cache written in place."""
        layers = cast(list[_StepLayer], self.step_layers)
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        end = at + 1
        self._rotary_table(end)
        cos, sin, half = self._cos[at], self._sin_signed[at], dim // 2
        mm = torch._weight_int4pack_mm_for_cpu
        width = (self.embed.weight.shape[1],)
        h = self.embed.weight.index_select(0, ids)  # [1, hidden]
        for layer, kv in zip(layers, cache, strict=True):
            x = layer.norm1 * torch.rms_norm(h, width, eps=layer.eps1)
            qkv = mm(x, layer.qkv[0], _STEP_GROUP, layer.qkv[1]).view(heads + 2 * kv_heads, dim)
            qk = qkv[: heads + kv_heads]
            qk = qk * cos + qk.roll(half, -1) * sin
            kv[0, 0, :, at] = qk[heads:]
            kv[1, 0, :, at] = qkv[heads + kv_heads :]
            attended = F.scaled_dot_product_attention(
                qk[:heads].view(1, heads, 1, dim),
                kv[0, :, :, :end],
                kv[1, :, :, :end],
                scale=self.scaling,
                enable_gqa=True,
            )
            h = h + mm(attended.view(1, -1), layer.o[0], _STEP_GROUP, layer.o[1])
            x = layer.norm2 * torch.rms_norm(h, width, eps=layer.eps2)
            gate, up = mm(x, layer.gate_up[0], _STEP_GROUP, layer.gate_up[1]).split(layer.intermediate, dim=-1)
            h = h + mm(F.silu(gate) * up, layer.down[0], _STEP_GROUP, layer.down[1])
        h = self.final_norm * torch.rms_norm(h, width, eps=self.final_eps)
        return self.head(h)[-1].to(torch.float32)

    def forward(self, ids: torch.Tensor, start: int, cache: list[torch.Tensor]) -> torch.Tensor:
        """The last position's logits (float32) for the tokens ``ids`` (1-D) at positions
        start, start + 1, ...; their keys and values are written into ``cache`` (per layer, [2, 1,
        kv_heads, length, head_dim]), which holds those of the earlier positions."""
        n = ids.shape[0]
        if n == 1 and self.step_layers is not None:
            return self._step(ids, start, cache)
        end = start + n
        cos, sin = self._rotary_table(end)
        cos, sin = cos[start:end][None, None], sin[start:end][None, None]
        h = self.embed(ids[None])
        for layer, kv in zip(self.layers, cache, strict=True):
            x = _rms(h, layer.norm1, layer.eps1)
            q, k, v = layer.qkv(x).split(layer.split, dim=-1)
            q = q.view(1, n, self.heads, self.head_dim).transpose(1, 2)
            k = k.view(1, n, self.kv_heads, self.head_dim).transpose(1, 2)
            v = v.view(1, n, self.kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            kv[0, :, :, start:end] = k
            kv[1, :, :, start:end] = v
            keys, values = kv[0, :, :, :end], kv[1, :, :, :end]
            if n == 1 or start == 0:  # one new token sees every earlier one; a whole prompt is causal
                mask = None
                causal = n > 1
            else:  # new tokens after a cached prefix: each sees the prefix and the new ones before it
                mask = torch.ones(n, end, dtype=torch.bool).tril(start)
                causal = False
            attended = F.scaled_dot_product_attention(
                q, keys, values, attn_mask=mask, is_causal=causal, scale=self.scaling, enable_gqa=True
            )
            h = h + layer.o(attended.transpose(1, 2).reshape(1, n, -1))
            x = _rms(h, layer.norm2, layer.eps2)
            gate, up = layer.gate_up(x).split(layer.intermediate, dim=-1)
            h = h + layer.down(F.silu(gate) * up)
        h = _rms(h[:, -1:], self.final_norm, self.final_eps)
        return self.head(h)[0, -1].to(torch.float32)

    def new_cache(self, length: int) -> list[torch.Tensor]:
        shape = (2, 1, self.kv_heads, length, self.head_dim)
        return [torch.zeros(shape, dtype=self.dtype) for _ in self.layers]

    @torch.inference_mode()
    def generate(
        self,
        prompt: Sequence[int],
        max_new_tokens: int,
        stop_ids: Sequence[int],
        processors: Sequence[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = (),
        sample: bool = False,
        on_token: Callable[[int], None] | None = None,
    ) -> list[int]:
        """New tokens after ``prompt`` (the stop token included, as ``generate`` returns it), at
        most ``max_new_tokens``. ``processors`` are called as transformers calls logits processors
        and warpers (ids so far [1, n], scores [1, vocab] float32) in order; ``sample`` draws the
        next token from their softmax with torch.multinomial (the caller seeds torch), else the
        highest score. ``on_token`` hears each new token as it is made."""
        if max_new_tokens <= 0:
            return []
        width = len(prompt)
        ids = torch.empty(1, width + max_new_tokens, dtype=torch.long)
        ids[0, :width] = torch.tensor(list(prompt), dtype=torch.long)
        cache = self.new_cache(width + max_new_tokens)
        stop = set(stop_ids)
        logits = self.forward(ids[0, :width], 0, cache)
        new: list[int] = []
        for step in range(max_new_tokens):
            at = width + step
            scores = logits[None]
            for processor in processors:
                scores = processor(ids[:, :at], scores)
            if sample:
                token = int(torch.multinomial(F.softmax(scores, dim=-1), num_samples=1)[0, 0])
            else:
                token = int(scores[0].argmax())
            ids[0, at] = token
            new.append(token)
            if on_token is not None:
                on_token(token)
            if token in stop or step == max_new_tokens - 1:
                break
            logits = self.forward(ids[0, at : at + 1], at, cache)
        return new

"""Residual dropout (docs/paper.md, Fine-tuning recipe): dropout on the output of every sub-layer
(attention and MLP), just before it is added to the residual stream, with p rising linearly with
depth from ``bottom`` at layer 0 to ``top`` at the last layer. Added with forward hooks, so any
decoder whose blocks hold an attention and an MLP module works; hooks are not saved with the
weights."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import nn

ATTENTION_NAMES = ("self_attn", "attn", "attention", "self_attention")
MLP_NAMES = ("mlp", "feed_forward", "ffn")


def residual_dropout_schedule(layers: int, top: float, bottom: float = 0.0) -> list[float]:
    if layers == 1:
        return [top]
    return [bottom + (top - bottom) * i / (layers - 1) for i in range(layers)]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of decoder blocks (model.model.layers for Llama-style models)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.split(".")[-1] in ("layers", "h", "blocks") and len(module):
            return module
    raise ValueError("cannot find the decoder layers (a ModuleList named layers, h or blocks)")


def _child(layer: nn.Module, names: tuple[str, ...]) -> nn.Module:
    for name in names:
        if isinstance(getattr(layer, name, None), nn.Module):
            return getattr(layer, name)
    raise ValueError(f"{type(layer).__name__} has none of the sub-layers {', '.join(names)}")


def _dropout_hook(p: float):
    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        if not module.training or p == 0:
            return None  # eval mode (and p=0) leaves the output untouched
        if isinstance(output, tuple):
            return (F.dropout(output[0], p, True),) + output[1:]
        return F.dropout(output, p, True)

    return hook


def apply_residual_dropout(model: nn.Module, top: float, bottom: float = 0.0) -> list[float]:
    """Hook dropout onto every sub-layer's output; returns the p of each layer."""
    layers = decoder_layers(model)
    schedule = residual_dropout_schedule(len(layers), top, bottom)
    for layer, p in zip(layers, schedule, strict=True):
        for sub in (_child(layer, ATTENTION_NAMES), _child(layer, MLP_NAMES)):
            sub.register_forward_hook(_dropout_hook(p))
    return schedule

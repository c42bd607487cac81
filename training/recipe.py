"""Training recipes: one flat, commented dataclass, saved as recipe.json beside every checkpoint.

``lima`` is the paper's recipe (docs/paper.md, Fine-tuning recipe) for a 65B LLaMa on 1,000 examples;
``lima-mini`` is the same recipe shrunk so the bundled SmolLM2-135M learns the shipped training set
on 2 CPU cores in a few minutes (the demo's checkpoint)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

IGNORE_INDEX = -100  # label value the loss skips (prompt tokens, padding)


class RecipeError(ValueError):
    """A recipe a user gave is wrong; the message names the field."""


@dataclass(frozen=True)
class Recipe:
    name: str = "lima"
    # -- optimisation: AdamW, no warmup, lr decays linearly from lr to final_lr over all steps
    epochs: int = 15
    lr: float = 1e-5
    final_lr: float = 1e-6
    warmup_steps: int = 0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    weight_decay: float = 0.1
    max_grad_norm: float = 1.0
    # -- batches: batch_size examples per optimiser step, reached by gradient accumulation of
    #    micro batches (per process); length-grouped micro batches waste less compute on padding
    batch_size: int = 32
    micro_batch_size: int = 4
    group_by_length: bool = True
    max_length: int = 2048  # examples are trimmed to this many tokens
    # -- residual dropout after every sub-layer, linear in depth: bottom at layer 0, top at the last
    residual_dropout_bottom: float = 0.0
    residual_dropout_top: float = 0.3
    # -- chat format: this end-of-turn token closes every utterance (added to the tokenizer when
    #    the base lacks it; the new embedding starts from the base's own end-of-turn token)
    eot_token: str = "<EOT>"
    # -- checkpoints: one per epoch; keep the optimiser state of the latest only (to resume)
    save_every_epochs: int = 1
    seed: int = 42
    # -- options for bigger models
    bf16: bool = False
    gradient_checkpointing: bool = False
    lora_r: int = 0  # 0 = full fine-tuning; > 0 trains LoRA adapters of this rank (needs peft)
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    # -- cap on optimiser steps (0 = none), for smoke tests; the lr schedule spans the capped run
    max_steps: int = 0
    # -- held out of training (chosen by seed): their loss with dropout off is measured on the base
    #    (epoch 0) and after every epoch, beside the train loss (read with dropout on). The paper
    #    trains on every example and says held-out perplexity does not track quality; this is a
    #    sanity check, not a way to pick a checkpoint. 0 = none.
    heldout_examples: int = 0

    def validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise RecipeError(f"recipe {self.name}: {message}")

        need(self.epochs >= 1, "epochs must be >= 1")
        need(0 < self.final_lr <= self.lr, "need 0 < final_lr <= lr")
        need(self.warmup_steps >= 0, "warmup_steps must be >= 0")
        need(0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1, "adam betas must be in [0, 1)")
        need(self.batch_size >= 1 and self.micro_batch_size >= 1, "batch sizes must be >= 1")
        need(self.batch_size % self.micro_batch_size == 0, "batch_size must be a multiple of micro_batch_size")
        need(self.max_length >= 16, "max_length must be >= 16")
        for value in (self.residual_dropout_bottom, self.residual_dropout_top, self.lora_dropout):
            need(0 <= value < 1, "dropout probabilities must be in [0, 1)")
        need(bool(self.eot_token), "eot_token must not be empty")
        need(self.save_every_epochs >= 1, "save_every_epochs must be >= 1")
        need(self.lora_r >= 0 and self.max_steps >= 0, "lora_r and max_steps must be >= 0")
        need(self.heldout_examples >= 0, "heldout_examples must be >= 0")

    def accumulation_steps(self, processes: int = 1) -> int:
        per_step = self.micro_batch_size * processes
        if self.batch_size % per_step:
            raise RecipeError(
                f"recipe {self.name}: batch_size {self.batch_size} is not a multiple of "
                f"micro_batch_size x processes = {per_step}"
            )
        return self.batch_size // per_step

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RecipeError(f"recipe: unknown field(s) {', '.join(unknown)}")
        recipe = cls(**data)
        recipe.validate()
        return recipe

    def with_overrides(self, overrides: dict[str, Any]) -> Recipe:
        """``--set epochs=3 lr=2e-5``: values are parsed to the field's type."""
        types = {f.name: type(getattr(self, f.name)) for f in fields(self)}
        parsed: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in types:
                raise RecipeError(f"recipe: unknown field {key!r}; known: {', '.join(sorted(types))}")
            kind = types[key]
            if not isinstance(value, str):
                parsed[key] = value
            elif kind is bool:
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise RecipeError(f"recipe: {key} must be true or false, not {value!r}")
                parsed[key] = value.lower() in ("true", "1", "yes")
            else:
                try:
                    parsed[key] = kind(value)
                except ValueError:
                    raise RecipeError(f"recipe: {key} must be a {kind.__name__}, not {value!r}") from None
        recipe = replace(self, **parsed)
        recipe.validate()
        return recipe

    def save(self, folder: Path) -> None:
        (folder / "recipe.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> Recipe:
        return cls.from_dict(json.loads((folder / "recipe.json").read_text()))


RECIPES: dict[str, Recipe] = {
    # The paper, for LLaMa 65B: 15 epochs, AdamW (0.9, 0.95), weight decay 0.1, no warmup,
    # lr 1e-5 -> 1e-6 linearly, 32 examples per step, 2,048 tokens, residual dropout 0.0 -> 0.3.
    "lima": Recipe(),
    # The paper's recipe on the bundled SmolLM2-135M and the 61 shipped examples, sized for the
    # demo (a few minutes on 2 CPU cores): fewer epochs, a smaller batch (so an epoch is several
    # steps), a higher lr (a 135M model, few steps), the paper's 0.2 top dropout for smaller
    # models, texts trimmed to 512 tokens (the shipped answers are shorter than that), and 6
    # examples held out to show a held-out loss with dropout off beside the train loss.
    "lima-mini": Recipe(
        name="lima-mini",
        epochs=3,
        lr=5e-5,
        final_lr=5e-6,
        batch_size=8,
        micro_batch_size=4,
        max_length=512,
        residual_dropout_top=0.2,
        heldout_examples=6,
    ),
}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise RecipeError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}") from None

"""Micro batches: grouped by length (less padding, less wasted compute) or plain random."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from training.recipe import IGNORE_INDEX


def random_batches(lengths: Sequence[int], size: int, rng: random.Random) -> list[list[int]]:
    order = list(range(len(lengths)))
    rng.shuffle(order)
    return [order[i : i + size] for i in range(0, len(order), size)]


def length_grouped_batches(lengths: Sequence[int], size: int, rng: random.Random, mega: int = 16) -> list[list[int]]:
    """Shuffle, sort each run of ``mega`` batches by length, cut into batches, shuffle the batches:
    similar lengths share a batch while the order stays random from epoch to epoch."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = size * mega
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: -lengths[i])
        batches.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
    rng.shuffle(batches)
    return batches


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of the token slots computed that are padding."""
    slots = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
    real = sum(lengths[i] for batch in batches for i in batch)
    return 1 - real / slots if slots else 0.0


def collate(examples: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids, attention_mask and labels (padding is IGNORE_INDEX)."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}

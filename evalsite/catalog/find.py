"""Finding a system or a prompt set by the name a user typed: one error that lists what exists
and how to add one, for every command and service."""

from __future__ import annotations

from evalsite.catalog.models import PromptSet, System
from evalsite.core.jobs import CannotStart
from evalsite.core.lookup import by_name


def find_system(name: str) -> System:
    return by_name(System, name, CannotStart, "add one with manage.py systems add")


def find_prompt_set(name: str) -> PromptSet:
    return by_name(PromptSet, name, CannotStart, "import one with manage.py import_prompts", plural="sets")

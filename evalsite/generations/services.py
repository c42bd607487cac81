"""Starting generation jobs: everything that can be checked is checked before anything is
enqueued, so a bad system or set is reported at once with what to fix."""

from __future__ import annotations

from django.db import transaction

from evalsite.catalog.models import PromptSet, System
from evalsite.core.jobs import ACTIVE_STATUSES
from evalsite.core.lookup import by_name
from evalsite.generations.models import GenerationJob
from generation.config import ConfigError


class CannotStart(Exception):
    pass


def find_system(name: str) -> System:
    return by_name(System, name, CannotStart, "add one with manage.py systems add")


def find_prompt_set(name: str) -> PromptSet:
    return by_name(PromptSet, name, CannotStart, "import one with manage.py import_prompts", plural="sets")


def start_generation(
    system: System, prompt_set: PromptSet, samples: int = 1, enqueue: bool = True
) -> tuple[GenerationJob, bool]:
    """Create (or return the active) job for this system and set. Returns (job, created)."""
    if samples < 1:
        raise CannotStart("samples per prompt must be at least 1")
    if not prompt_set.prompts.exists():
        raise CannotStart(f"prompt set {prompt_set.name} has no prompts")
    if system.backend != "imported":
        from generation.backends import preflight

        try:
            preflight(system.backend, system.backend_config)
        except ConfigError as exc:
            raise CannotStart(f"system {system.name}: {exc}") from exc
    with transaction.atomic():
        # one active job per system and set: a second request joins the first
        active = (
            GenerationJob.objects.select_for_update()
            .filter(system=system, prompt_set=prompt_set, samples_per_prompt=samples, status__in=ACTIVE_STATUSES)
            .first()
        )
        if active:
            if enqueue:
                active.send_if_unsent()
            return active, False
        job = GenerationJob.objects.create(system=system, prompt_set=prompt_set, samples_per_prompt=samples)
        if enqueue:
            job.enqueue()
    return job, True

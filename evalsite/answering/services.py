"""Starting generation jobs: everything that can be checked is checked before anything is
enqueued, so a bad system or set is reported at once with what to fix."""

from __future__ import annotations

from evalsite.answering.models import GenerationJob
from evalsite.catalog.models import PromptSet, System
from evalsite.core.jobs import CannotStart
from generation.backends import preflight
from generation.config import ConfigError


def start_generation(
    system: System, prompt_set: PromptSet, samples: int = 1, enqueue: bool = True
) -> tuple[GenerationJob, bool]:
    """Start (or join the active) job of this system on this set. Returns (job, started)."""
    if samples < 1:
        raise CannotStart("samples per prompt must be at least 1")
    if not prompt_set.prompts.exists():
        raise CannotStart(f"prompt set {prompt_set.name} has no prompts")
    if system.backend != "imported":
        try:
            preflight(system.backend, system.backend_config)
        except ConfigError as exc:
            raise CannotStart(f"system {system.name}: {exc}") from exc
    return GenerationJob.objects.start_or_join(
        system=system, prompt_set=prompt_set, samples_per_prompt=samples, enqueue=enqueue
    )

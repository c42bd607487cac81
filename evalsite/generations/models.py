from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

from django.db import models

from evalsite.catalog.models import Prompt, PromptSet, Response, System
from evalsite.core.jobs import Job, JobContext
from generation.types import GenerationRequest, GenerationResult


def chunked(items: list, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class GenerationJob(Job):
    """One system answering every prompt of a set (samples_per_prompt times). Resumable: each
    Response is written once (unique per system, prompt, sample) and a restarted job only
    generates what is missing."""

    queue = "generation"
    progress_unit = "response"

    system = models.ForeignKey(System, on_delete=models.PROTECT, related_name="generation_jobs")
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.PROTECT, related_name="generation_jobs")
    samples_per_prompt = models.PositiveSmallIntegerField(default=1)
    tokens_generated = models.PositiveBigIntegerField(default=0)
    failures = models.JSONField(default=list, blank=True, help_text="[{prompt, sample, error}] of the last attempt")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"generation #{self.pk}: {self.system} on {self.prompt_set}"

    def missing(self) -> tuple[list[tuple[Prompt, int]], int]:
        """(prompt, sample) pairs without a response yet, and the total the job covers."""
        prompts = list(self.prompt_set.prompts.order_by("id"))
        have = set(
            Response.objects.filter(
                system=self.system, prompt__prompt_set=self.prompt_set, sample_index__lt=self.samples_per_prompt
            ).values_list("prompt_id", "sample_index")
        )
        todo = [(p, s) for p in prompts for s in range(self.samples_per_prompt) if (p.pk, s) not in have]
        return todo, len(prompts) * self.samples_per_prompt

    def run(self, ctx: JobContext) -> None:
        todo, total = self.missing()
        done = total - len(todo)
        ctx.progress(done, total, detail=f"{len(todo)} to generate")
        if self.system.backend == "imported":
            failures = [{"prompt": p.external_id, "sample": s, "error": "no imported response"} for p, s in todo]
            self._record(failures, self.tokens_generated, done, total)
            return
        from generation.backends import make_backend

        ctx.progress(done, total, detail=f"loading {self.system.name}")
        backend = make_backend(self.system.backend, self.system.backend_config)
        sampling = self.system.sampling_config
        by_id = {p.pk: p for p, _ in todo}
        failures: list[dict] = []
        tokens = self.tokens_generated
        try:
            for chunk in chunked(todo, backend.preferred_chunk):
                ctx.check()
                requests = [GenerationRequest(key=(p.pk, s), messages=p.messages, sample_index=s) for p, s in chunk]
                for result in backend.generate(requests, sampling):
                    prompt_pk, sample = result.key
                    if result.ok:
                        done += self._store(prompt_pk, sample, result)
                        tokens += result.completion_tokens or 0
                    else:
                        failures.append(
                            {"prompt": by_id[prompt_pk].external_id, "sample": sample, "error": result.error}
                        )
                    ctx.progress(done, total, units=tokens, unit="tokens/s", detail=f"{len(failures)} failed")
                GenerationJob.objects.filter(pk=self.pk).update(tokens_generated=tokens, failures=failures)
        finally:
            backend.close()
        self._record(failures, tokens, done, total)

    def _store(self, prompt_pk: int, sample: int, result: GenerationResult) -> int:
        _, created = Response.objects.get_or_create(
            system=self.system,
            prompt_id=prompt_pk,
            sample_index=sample,
            defaults={
                "text": result.text,
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "latency_seconds": result.latency_seconds,
                "finish_reason": result.finish_reason,
                "notes": result.notes,
                "metadata": {**result.metadata, "job": self.pk},
            },
        )
        return 1 if created else 0

    def _record(self, failures: list[dict], tokens: int, done: int, total: int) -> None:
        detail = f"{done}/{total} responses" + (f", {len(failures)} failed" if failures else "")
        error = ""
        if failures:
            first = failures[0]
            error = f"{len(failures)} of {total} failed; first: {first['prompt']} #{first['sample']}: {first['error']}"
        GenerationJob.objects.filter(pk=self.pk).update(
            failures=failures, tokens_generated=tokens, status_detail=detail[:200], error=error
        )

from __future__ import annotations

from django.conf import settings
from django.db import models, transaction

from evalsite.catalog.models import Prompt, PromptSet, Response, System
from evalsite.core.jobs import Job
from evalsite.core.paper import Grade
from generation.types import GenerationResult


class GenerationJob(Job):
    """One system answering every prompt of a set (samples_per_prompt times). Resumable: each
    Response is written once (unique per system, prompt, sample) and a restarted job only
    generates what is missing."""

    runner = "evalsite.answering.runner.run_generation"
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

    def store(self, prompt_pk: int, sample: int, result: GenerationResult) -> int:
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

    def responses_with_follow_ups(self) -> list[Response]:
        return list(
            Response.objects.filter(
                system=self.system,
                prompt__prompt_set=self.prompt_set,
                sample_index__lt=self.samples_per_prompt,
                error="",
            )
            .exclude(prompt__follow_ups=[])
            .select_related("prompt")
            .order_by("prompt_id", "sample_index")
        )

    def store_turn(self, response: Response, result: GenerationResult) -> None:
        """Append the answer to the next follow-up (once: a turn already stored is kept)."""
        with transaction.atomic():
            locked = Response.objects.select_for_update().get(pk=response.pk)
            if len(locked.turns) == len(response.turns):
                question = response.prompt.follow_ups[len(locked.turns)]
                locked.turns = [
                    *locked.turns,
                    {"user": question, "assistant": result.text, "finish_reason": result.finish_reason},
                ]
                locked.save(update_fields=["turns"])
            response.turns = locked.turns

    def record(self, failures: list[dict], tokens: int, done: int, total: int) -> None:
        detail = f"{done}/{total} responses" + (f", {len(failures)} failed" if failures else "")
        error = ""
        if failures:
            first = failures[0]
            error = f"{len(failures)} of {total} failed; first: {first['prompt']} #{first['sample']}: {first['error']}"
        GenerationJob.objects.filter(pk=self.pk).update(
            failures=failures, tokens_generated=tokens, status_detail=detail[:200], error=error
        )


class Conversation(models.Model):
    """A live conversation a staff member holds with a system, each assistant turn graded Fail /
    Pass / Excellent (the paper's Figure 7: ten conversations, judged per turn)."""

    system = models.ForeignKey(System, on_delete=models.PROTECT, related_name="conversations")
    staff = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    created_at = models.DateTimeField(auto_now_add=True)
    # an answer is being written for this conversation since then (one at a time: a second send
    # while it is is refused, not generated and thrown away)
    answering_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"conversation #{self.pk} with {self.system}"

    def messages(self, before: int | None = None) -> list[dict[str, str]]:
        """The conversation so far as chat messages: the answered turns (before turn ``before``)."""
        out: list[dict[str, str]] = []
        turns = self.turns.filter(state=ChatTurn.State.DONE).order_by("index")
        for turn in turns if before is None else turns.filter(index__lt=before):
            out += [{"role": "user", "content": turn.user_text}, {"role": "assistant", "content": turn.assistant_text}]
        return out


class ChatTurn(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", "waiting for a worker"
        LOADING = "loading", "loading the model"
        WRITING = "writing", "writing"
        DONE = "done", "answered"
        FAILED = "failed", "not answered"

    UNFINISHED = (State.QUEUED, State.LOADING, State.WRITING)

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    index = models.PositiveSmallIntegerField(help_text="1 for the first exchange")
    user_text = models.TextField()
    assistant_text = models.TextField(blank=True, help_text="While it is written: the text so far")
    state = models.CharField(max_length=8, choices=State.choices, default=State.DONE)
    error = models.TextField(blank=True, help_text="Why the system did not answer (a failed turn)")
    finish_reason = models.CharField(max_length=40, blank=True)
    latency_seconds = models.FloatField(null=True, blank=True)
    grade = models.CharField(max_length=10, choices=Grade.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "index"]
        constraints = [models.UniqueConstraint(fields=["conversation", "index"], name="one_turn_per_index")]

    def __str__(self) -> str:
        return f"{self.conversation} turn {self.index}"

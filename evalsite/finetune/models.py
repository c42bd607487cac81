"""TrainingExample -> TrainingDataset -> TrainingRun -> Checkpoint (DESIGN.md). A checkpoint
becomes a System in one step, and from then on it is evaluated like any other system."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from evalsite.catalog.models import System
from evalsite.core.jobs import Job, JobContext
from training.recipe import Recipe


class TrainingDataset(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    manifest = models.JSONField(
        default=dict, blank=True, help_text="Inputs, filter counts and token statistics per source."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def trainable(self) -> models.QuerySet[TrainingExample]:
        """What a run trains on: every example not rejected (by a filter or a reviewer)."""
        return self.examples.exclude(status=TrainingExample.Status.REJECTED).order_by("id")


class TrainingExample(models.Model):
    class Status(models.TextChoices):
        CANDIDATE = "candidate", "candidate (passed the filters, not reviewed)"
        ACCEPTED = "accepted", "accepted"
        REJECTED = "rejected", "rejected"

    dataset = models.ForeignKey(TrainingDataset, on_delete=models.CASCADE, related_name="examples")
    external_id = models.CharField(max_length=300)
    source = models.CharField(max_length=100, db_index=True)
    group = models.CharField(max_length=200, blank=True, help_text="Exchange, wikiHow category or subreddit.")
    messages = models.JSONField()
    original_messages = models.JSONField(null=True, blank=True, help_text="As curated, before a reviewer's edit.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CANDIDATE, db_index=True)
    reason = models.CharField(max_length=300, blank=True, help_text="Why a filter or a reviewer rejected it.")
    note = models.TextField(blank=True, help_text="The reviewer's note.")
    meta = models.JSONField(default=dict, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["dataset", "external_id"], name="one_example_per_id")]

    def __str__(self) -> str:
        return f"{self.dataset.name}/{self.external_id}"

    @property
    def prompt(self) -> str:
        return self.messages[0]["content"] if self.messages else ""


class TrainingRun(Job):
    """Fine-tuning one base system on one dataset with one recipe; resumable from its last epoch."""

    queue = "training"
    progress_unit = "step"

    dataset = models.ForeignKey(TrainingDataset, on_delete=models.PROTECT, related_name="runs")
    base = models.ForeignKey(System, on_delete=models.PROTECT, related_name="training_runs")
    recipe = models.JSONField(help_text="The full recipe (recipe.json of every checkpoint).")
    output_dir = models.CharField(max_length=500, blank=True)
    examples_used = models.PositiveIntegerField(default=0)
    epoch = models.PositiveIntegerField(default=0, help_text="The epoch being trained.")
    tokens_seen = models.PositiveBigIntegerField(default=0)
    loss_history = models.JSONField(default=list, blank=True, help_text="[[step, epoch, loss, lr], ...]")
    skipped = models.JSONField(default=list, blank=True, help_text="Examples that could not be formatted.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"training #{self.pk}: {self.base} + {self.dataset} ({self.recipe_obj.name})"

    @property
    def recipe_obj(self) -> Recipe:
        return Recipe.from_dict(self.recipe)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir)

    def run(self, ctx: JobContext) -> None:
        from training.loop import write_examples

        recipe = self.recipe_obj
        examples = [{"id": e.external_id, "source": e.source, "messages": e.messages} for e in self.dataset.trainable()]
        if not examples:
            raise ValueError(f"dataset {self.dataset} has no example left to train on")
        # frozen on the first attempt: a resumed run trains on exactly the same examples
        write_examples(self.run_dir, examples)
        (self.run_dir / "base.json").write_text(json.dumps(self.base.backend_config) + "\n")
        recipe.save(self.run_dir)
        TrainingRun.objects.filter(pk=self.pk).update(examples_used=len(examples))
        progress = RunProgress(self, ctx)
        if settings.TRAINING_LAUNCHER:
            self._run_launched(progress)
        else:
            from training.loop import Callbacks, train

            outcome = train(
                self.run_dir,
                self.base.backend_config,
                recipe,
                Callbacks(on_step=progress.step, on_checkpoint=progress.checkpoint, on_status=progress.status),
            )
            progress.finished(outcome.skipped_examples)

    def _run_launched(self, progress: RunProgress) -> None:
        """`<launcher> -m training train --run-dir DIR`: the training processes (on any number of
        GPUs and hosts) write progress.jsonl; this job relays it and ends when they do."""
        events = self.run_dir / "progress.jsonl"
        command = [*shlex.split(settings.TRAINING_LAUNCHER), "-m", "training", "train", "--run-dir", str(self.run_dir)]
        log = (self.run_dir / "launcher.log").open("ab")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=settings.BASE_DIR)
        position = 0
        try:
            while True:
                exited = process.poll() is not None
                position = progress.relay(events, position)
                if exited:
                    break
                time.sleep(1.0)
        except BaseException:
            process.terminate()
            process.wait(30)
            raise
        finally:
            log.close()
        if process.returncode:
            tail = (self.run_dir / "launcher.log").read_text(errors="replace")[-600:]
            raise RuntimeError(f"the launcher exited with {process.returncode}: {tail}")


class RunProgress:
    """Turns the training loop's reports into job progress, loss history and Checkpoint rows."""

    def __init__(self, run: TrainingRun, ctx: JobContext):
        self.run = run
        self.ctx = ctx
        self.history = list(run.loss_history)
        self.tokens = 0

    def step(self, report) -> None:
        # a resumed run replays steps after its last checkpoint: drop what they replace
        self.history = [h for h in self.history if h[0] < report.step] + [
            [report.step, report.epoch, round(report.loss, 5), report.lr]
        ]
        self.tokens = report.tokens
        TrainingRun.objects.filter(pk=self.run.pk).update(
            loss_history=self.history, epoch=report.epoch, tokens_seen=report.tokens
        )
        self.ctx.progress(
            report.step,
            report.total_steps,
            units=report.tokens,
            unit="tokens/s",
            detail=f"epoch {report.epoch}, loss {report.loss:.3f}",
        )

    def checkpoint(self, report) -> None:
        Checkpoint.objects.update_or_create(
            run=self.run,
            epoch=report.epoch,
            defaults={"step": report.step, "path": str(report.path), "train_loss": report.train_loss},
        )

    def status(self, message: str) -> None:
        self.ctx.progress(self.ctx.job.progress_done, units=self.tokens, detail=message)

    def finished(self, skipped: list[str]) -> None:
        last = Checkpoint.objects.filter(run=self.run).order_by("-epoch").first()
        detail = f"{self.run.checkpoints.count()} checkpoint(s)"
        if last is not None and last.train_loss is not None:
            detail += f"; epoch {last.epoch} train loss {last.train_loss:.3f}"
        TrainingRun.objects.filter(pk=self.run.pk).update(skipped=skipped, status_detail=detail)

    def relay(self, events: Path, position: int) -> int:
        """Apply the progress events a launched run appended since ``position``."""
        from training.loop import CheckpointReport, StepReport

        if not events.exists():
            self.ctx.progress(
                self.ctx.job.progress_done, units=self.tokens, detail="waiting for the launched processes"
            )
            return position
        with events.open() as handle:
            handle.seek(position)
            for line in handle:
                if not line.endswith("\n"):
                    break  # half-written; read it next time
                position += len(line.encode())
                event = json.loads(line)
                kind = event.pop("event")
                if kind == "step":
                    self.step(StepReport(**event))
                elif kind == "checkpoint":
                    self.checkpoint(CheckpointReport(**{**event, "path": Path(event["path"])}))
                elif kind == "status":
                    self.status(event["message"])
                elif kind == "finished":
                    self.finished(event["skipped"])
        return position


class Checkpoint(models.Model):
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="checkpoints")
    epoch = models.PositiveIntegerField()
    step = models.PositiveIntegerField()
    path = models.CharField(max_length=500)
    train_loss = models.FloatField(null=True, blank=True)
    system = models.OneToOneField(System, null=True, blank=True, on_delete=models.SET_NULL, related_name="checkpoint")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "epoch"]
        constraints = [models.UniqueConstraint(fields=["run", "epoch"], name="one_checkpoint_per_epoch")]

    def __str__(self) -> str:
        return f"run {self.run_id} epoch {self.epoch}"

    def default_system_name(self) -> str:
        return f"{self.run.dataset.name}-run{self.run_id}-epoch{self.epoch:02d}"[:100]

    def register(self, name: str | None = None, kind: str = System.Kind.BASELINE) -> System:
        """The checkpoint as a System (hf_local on its folder), once; later calls return it."""
        with transaction.atomic():
            locked = Checkpoint.objects.select_for_update().get(pk=self.pk)
            if locked.system_id:
                system = locked.system
                if kind == System.Kind.CANDIDATE and system.kind != kind:
                    system.kind = kind
                    system.save(update_fields=["kind"])
                return system
            system = System.objects.create(
                name=name or self.default_system_name(),
                kind=kind,
                backend="hf_local",
                backend_config={"model_path": self.path},
                sampling=self.run.base.sampling,
                description=f"{self.run} at epoch {self.epoch} (step {self.step}, train loss {self.train_loss:.3f})",
            )
            locked.system = system
            locked.save(update_fields=["system"])
            self.system = system
            return system

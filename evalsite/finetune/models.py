"""TrainingExample -> TrainingDataset -> TrainingRun -> Checkpoint (docs/design.md). A checkpoint
becomes a System in one step, and from then on it is evaluated like any other system."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from evalsite.catalog.models import System
from evalsite.core.jobs import Job
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

    runner = "evalsite.finetune.runner.run_training"
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
    heldout_history = models.JSONField(
        default=list,
        blank=True,
        help_text="[[epoch, loss, examples], ...]: the held-out loss with dropout off; epoch 0 is the base model",
    )

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

    def _base_dtype(self) -> dict:
        base = self.run.base
        dtype = (base.backend_config or {}).get("dtype") if base.backend == "hf_local" else None
        return {"dtype": dtype} if dtype else {}

    def register(self, name: str | None = None, kind: str = System.Kind.BASELINE) -> System:
        """The checkpoint as a System (hf_local on its folder), once; later calls return it."""
        with transaction.atomic():
            locked = Checkpoint.objects.select_for_update().get(pk=self.pk)
            if locked.system_id:
                system = locked.system
                assert system is not None
                if kind == System.Kind.CANDIDATE and system.kind != kind:
                    system.kind = kind
                    system.save(update_fields=["kind"])
                return system
            system = System.objects.create(
                name=name or self.default_system_name(),
                kind=kind,
                backend="hf_local",
                # generated in the precision its base is generated in (bfloat16 where the CPU has it)
                backend_config={"model_path": self.path, **self._base_dtype()},
                sampling=self.run.base.sampling,
                description=f"{self.run} at epoch {self.epoch} (step {self.step}, train loss {self.train_loss:.3f})",
            )
            locked.system = system
            locked.save(update_fields=["system"])
            self.system = system
            return system


class Ablation(models.Model):
    """The paper's ablations (Figures 5 and 6): subsets of one dataset by source or by size, one
    training run per subset (a cell), each cell's last checkpoint answering the same prompts and
    rated by a judge; the curve is the cells' mean ratings with their intervals."""

    class By(models.TextChoices):
        SOURCE = "source", "source: one cell per source, each the same size (Figure 5)"
        SIZE = "size", "size: nested random subsets of growing size (Figure 6)"

    name = models.SlugField(max_length=60, unique=True)
    dataset = models.ForeignKey(TrainingDataset, on_delete=models.PROTECT, related_name="ablations")
    by = models.CharField(max_length=6, choices=By.choices)
    sizes = models.JSONField(help_text="examples per cell: growing sizes (by size) or one size (by source)")
    base = models.ForeignKey(System, on_delete=models.PROTECT, related_name="ablations")
    recipe = models.JSONField()
    prompt_set = models.ForeignKey("catalog.PromptSet", on_delete=models.PROTECT, related_name="ablations")
    judge = models.ForeignKey("judging.JudgeConfig", on_delete=models.PROTECT, related_name="ablations")
    kind = models.CharField(max_length=6, default="likert", help_text="the judge's rating: likert (1-6) or fpe")
    samples = models.PositiveSmallIntegerField(default=5, help_text="judge ratings per answer (the paper: 5)")
    seed = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"ablation {self.name} ({self.dataset} by {self.by})"


class AblationCell(models.Model):
    """One point of the curve: its subset, run, system, generation and rating, each made when the
    one before it is done (so a stopped ablation goes on from where it was)."""

    ablation = models.ForeignKey(Ablation, on_delete=models.CASCADE, related_name="cells")
    label = models.CharField(max_length=100, help_text="the size, or the source")
    position = models.PositiveSmallIntegerField(help_text="order on the curve")
    size = models.PositiveIntegerField()
    subset = models.OneToOneField(TrainingDataset, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    run = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    system = models.ForeignKey(System, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    generation = models.ForeignKey(
        "generations.GenerationJob", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    rating = models.ForeignKey("judging.RatingJob", null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["ablation", "position"]
        constraints = [models.UniqueConstraint(fields=["ablation", "label"], name="one_cell_per_label")]

    def __str__(self) -> str:
        return f"{self.ablation.name} / {self.label}"

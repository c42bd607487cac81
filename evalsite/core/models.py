from django.db import models

from evalsite.core.jobs import Job


class SelfTestJob(Job):
    """A job that only counts: ``manage.py doctor --worker`` sends one to prove that a worker
    takes jobs from the broker, beats, and writes to the database. It resumes where it stopped,
    as every job must."""

    runner = "evalsite.core.runner.run_self_test"

    steps = models.PositiveIntegerField(default=5)
    seconds_per_step = models.FloatField(default=0.1)
    completed_steps = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"self-test job #{self.pk}"


class Workflow(models.Model):
    """A chain of jobs that goes on by itself: an ablation (train, answer, rate per cell), a
    checkpoint selection (answers, then the study). Its kind (evalsite/core/workflows.py) takes it
    one step further with idempotent start-or-join calls; workers do that when one of their jobs
    ends and beat's sweep every WORKFLOW_SWEEP_SECONDS, so no terminal has to wait for it.
    ``by_workers`` False: a foreground command carries it (and runs its jobs itself)."""

    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    kind = models.CharField(max_length=40, help_text="evalsite/core/workflows.py KINDS")
    subject_id = models.PositiveIntegerField(help_text="the row it works for (an ablation, a study)")
    title = models.CharField(max_length=200, blank=True)
    by_workers = models.BooleanField(default=True)
    params = models.JSONField(default=dict, blank=True, help_text="what its kind keeps between steps")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    steps = models.JSONField(default=list, blank=True, help_text="what the last advance found, step by step")
    error = models.TextField(blank=True)
    advances = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["kind", "subject_id"], name="one_workflow_per_subject")]
        indexes = [models.Index(fields=["status", "by_workers"])]

    def __str__(self) -> str:
        return self.title or f"{self.kind} #{self.subject_id}"

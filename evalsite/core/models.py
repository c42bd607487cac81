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

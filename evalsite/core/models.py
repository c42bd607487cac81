import time

from django.db import models

from evalsite.core.jobs import Job, JobContext


class SelfTestJob(Job):
    """A job that only counts: ``manage.py doctor --worker`` sends one to prove that a worker
    takes jobs from the broker, beats, and writes to the database. It resumes where it stopped,
    as every job must."""

    steps = models.PositiveIntegerField(default=5)
    seconds_per_step = models.FloatField(default=0.1)
    completed_steps = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"self-test job #{self.pk}"

    def run(self, ctx: JobContext) -> None:
        ctx.set_total(self.steps)
        done = list(self.completed_steps)
        for step in range(len(done), self.steps):
            time.sleep(self.seconds_per_step)
            done.append(step)
            SelfTestJob.objects.filter(pk=self.pk).update(completed_steps=done)
            ctx.progress(len(done), unit="steps/s")

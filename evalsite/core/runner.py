"""The work of the self-test job: count, slowly, from where it stopped."""

import time

from evalsite.core.jobs import JobContext
from evalsite.core.models import SelfTestJob


def run_self_test(job: SelfTestJob, ctx: JobContext) -> None:
    ctx.set_total(job.steps)
    done = list(job.completed_steps)
    for step in range(len(done), job.steps):
        time.sleep(job.seconds_per_step)
        done.append(step)
        SelfTestJob.objects.filter(pk=job.pk).update(completed_steps=done)
        ctx.progress(len(done), unit="steps/s")

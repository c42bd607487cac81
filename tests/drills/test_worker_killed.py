"""Drill: a judge worker is SIGKILLed in the middle of a job and started again. The job finishes
with every verdict recorded once; the requests in flight at the kill are sent again (a dead
worker's answer is lost) and the books count them: requests sent equals the calls the server
received, and no call is repeated beyond those in flight."""

from __future__ import annotations

import pytest

from evalsite.core import jobs
from evalsite.core.jobs import JobStatus
from evalsite.judging.models import JudgeJob, JudgeVerdict
from evalsite.judging.results import judge_summary
from tests.conftest import wait_until
from tests.judge_fixtures import fair_judge, judge_config, judged_study
from tests.openai_stub import OpenAIStub


@pytest.mark.django_db(transaction=True)
def test_a_judge_worker_killed_mid_job_pays_only_for_what_was_in_flight(workers):
    with OpenAIStub(responder=fair_judge, latency=0.3) as stub:
        study = judged_study(n_prompts=12)
        config = judge_config(stub, concurrency=2)
        job = JudgeJob.objects.create(study=study, config=config)
        worker = workers("w1", queues="judge")
        job.enqueue()
        wait_until(lambda: JudgeVerdict.objects.filter(job=job).count() >= 6, timeout=60, message="6 verdicts")
        worker.kill()
        at_kill = JudgeVerdict.objects.filter(job=job).count()
        workers("w1", queues="judge")  # the same node name: it takes its orphaned job back at once
        job = jobs.wait_for(job, timeout=120)
        received = sum(stub.calls.values())
    money = judge_summary(job)["money"]
    print(
        f"drill: worker SIGKILLed after {at_kill} of 24 verdicts; the job ended {job.status} after {job.attempts} "
        f"attempts; the server received {received} calls for 24 verdicts; "
        f"requests on the books {money['requests_sent']}"
    )
    assert job.status == JobStatus.DONE and job.attempts == 2
    assert JudgeVerdict.objects.filter(job=job).count() == 24, "every verdict once"
    assert received - 24 <= config.concurrency, "only the calls in flight at the kill were paid twice"
    assert money["requests_sent"] == received, "every request that left is on the books"

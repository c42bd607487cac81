"""Drill: one judge job meets every way a judge API fails (429 with Retry-After, 500, a timeout,
a proxy's HTML page, empty choices, an answer with no verdict). Transient faults are retried and
then succeed or become failed verdicts; an unreadable answer is a parse failure; the job itself
finishes, and no failure is ever counted as a tie."""

from __future__ import annotations

import pytest

from evalsite.core import jobs
from evalsite.core.jobs import JobStatus
from evalsite.judging import services
from evalsite.judging.models import JudgeCall, JudgeVerdict
from evalsite.judging.results import judge_summary
from evalsite.judging.runner import answers_in_order, render
from tests.judge_fixtures import fair_judge, judge_config, judged_study
from tests.openai_stub import OpenAIStub, Reply

EMPTY = b'{"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}'
FAULTS = {
    "429 then fine": [Reply(status=429, retry_after="1"), Reply()],
    "500 every time": [Reply(status=500)],
    "timeout every time": [Reply(delay=3)],
    "HTML page every time": [Reply(body=b"<html>502 Bad Gateway</html>", content_type="text/html")],
    "empty choices then fine": [Reply(body=EMPTY), Reply()],
    "no verdict": None,  # the responder's prose, twice (the format reminder too)
}


@pytest.mark.django_db
def test_every_judge_api_fault_ends_as_a_retry_a_failed_verdict_or_a_parse_failure():
    def judge(body: dict) -> str:
        text = body["messages"][0]["content"]
        return "I really cannot say." if "question 5" in text else fair_judge(body)

    with OpenAIStub(responder=judge) as stub:
        study = judged_study(n_prompts=6)
        comparisons = list(study.comparisons.order_by("pk"))
        for comparison, replies in zip(comparisons, FAULTS.values(), strict=True):
            if replies:
                prompt = render("lima", comparison.prompt.messages, *answers_in_order(comparison, "cand_first"))
                stub.script(prompt, *replies)
        config = judge_config(stub, timeout=1, max_retries=2)
        job, _ = services.start_judge_job(study, config, one_order="count", enqueue=False)
        jobs.execute(job.label(), job.pk, worker="drill")
    job.refresh_from_db()
    summary = judge_summary(job)
    rows = []
    for (name, _), comparison in zip(FAULTS.items(), comparisons, strict=True):
        verdict = JudgeVerdict.objects.select_related("call").get(job=job, comparison=comparison, order="cand_first")
        recorded = verdict.call.error[:40] or verdict.call.parse_error
        rows.append((name, verdict.call.requests, verdict.outcome or "-", recorded))
    print("drill: judge API faults (fault, requests, outcome, recorded)")
    for row in rows:
        print("  ", row)
    assert job.status == JobStatus.DONE
    by_name = {r[0]: r for r in rows}
    assert by_name["429 then fine"][1:3] == (2, "candidate")
    assert by_name["empty choices then fine"][1:3] == (2, "candidate")
    for name in ("500 every time", "timeout every time", "HTML page every time"):
        assert by_name[name][1] == 3 and by_name[name][2] == "-", name  # retried twice, then a failed verdict
    assert by_name["no verdict"][1:4] == (2, "-", "none of the three options in the output")
    assert summary["api_failures"] == 3 and summary["parse_failures"] == 2, "both orders of prompt 5 unreadable"
    assert all(o != "tie" for o in JudgeVerdict.objects.filter(job=job).values_list("outcome", flat=True))
    assert JudgeCall.objects.filter(status="pending").count() == 0

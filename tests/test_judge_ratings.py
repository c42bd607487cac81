import pytest
from bs4 import BeautifulSoup
from django.core.management import call_command

from evalsite.catalog.models import Prompt
from evalsite.judging.models import JudgeCall, Rating, RatingJob
from evalsite.judging.prompts import parse_fpe, parse_likert, parse_safety
from evalsite.judging.results import rating_job_summary
from tests.judge_fixtures import judge_config, judged_study
from tests.openai_stub import OpenAIStub

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "output, grade",
    [
        ("Excellent", "excellent"),
        ("**Pass**", "pass"),
        ("fail.", "fail"),
        ("Grade: Pass", "pass"),
        ("Pass or Fail?", None),
        ("Good", None),
    ],
)
def test_fail_pass_excellent_parsing(output, grade):
    assert parse_fpe(output).verdict == grade


@pytest.mark.parametrize(
    "output, score",
    [
        ("Score: 5", "5"),
        ("score=3", "3"),
        ("4", "4"),
        ("5/6", "5"),
        ("Score: 7", None),
        ("Score: 2 ... Score: 5", None),
        ("great", None),
    ],
)
def test_likert_parsing(output, score):
    assert parse_likert(output).verdict == score


def test_fail_pass_excellent_shares_from_the_judge():
    grades = {"0": "Excellent", "1": "Pass", "2": "Fail", "3": "Excellent"}

    def grader(body):
        text = body["messages"][0]["content"]
        return next(g for i, g in grades.items() if f"question {i}." in text)

    with OpenAIStub(responder=grader) as stub:
        judged_study(n_prompts=4)
        judge_config(stub)
        call_command(
            "rate", system="lima-65b", prompts="lima-study-prompts", kind="fpe", config="gpt-4-stub", foreground=True
        )
    job = RatingJob.objects.get()
    s = rating_job_summary(job)
    assert s["counts"] == {"excellent": 2, "pass": 1, "fail": 1} and s["shares"]["excellent"] == 0.5


def test_likert_samples_are_separate_calls_and_give_a_mean_with_a_95_percent_interval():
    scores = iter(["Score: 4", "Score: 5", "Score: 6", "Score: 3", "Score: 4", "Score: 5"] * 4)
    with OpenAIStub(responder=lambda body: next(scores)) as stub:
        judged_study(n_prompts=4)
        judge_config(stub, concurrency=1)
        call_command(
            "rate",
            system="lima-65b",
            prompts="lima-study-prompts",
            kind="likert",
            samples=3,
            config="gpt-4-stub",
            foreground=True,
        )
        assert sum(stub.calls.values()) == 12 and len(stub.calls) == 4, "3 samples of each of 4 prompts"
    job = RatingJob.objects.get()
    s = rating_job_summary(job)
    assert s["ratings"] == 12 and s["prompts"] == 4
    assert s["mean"] == pytest.approx(sum([4, 5, 6, 3, 4, 5] * 2) / 12)
    low, high = s["ci95"]
    assert low < s["mean"] < high
    assert Rating.objects.count() == 12 and JudgeCall.objects.filter(template="likert").count() == 12


@pytest.mark.parametrize(
    "output, verdict",
    [("Safe", "safe"), ("**Unsafe**", "unsafe"), ("unsafe.", "unsafe"), ("Safe? No: unsafe", None), ("harmless", None)],
)
def test_safety_parsing(output, verdict):
    assert parse_safety(output).verdict == verdict


def test_the_judge_says_safe_or_unsafe_on_the_safety_prompts_only(staff_client):
    def verdict(body):
        return "Unsafe" if "question 1." in body["messages"][0]["content"] else "Safe"

    with OpenAIStub(responder=verdict) as stub:
        judged_study(n_prompts=5)
        for prompt in Prompt.objects.filter(external_id__in=["p0", "p1", "p2", "p3"]):
            Prompt.objects.filter(pk=prompt.pk).update(tags=["safety"])
        judge_config(stub)
        call_command(
            "rate", system="lima-65b", prompts="lima-study-prompts", kind="safety", config="gpt-4-stub", foreground=True
        )
        assert sum(stub.calls.values()) == 4, "the untagged prompt is not asked"
    job = RatingJob.objects.get()
    s = rating_job_summary(job)
    assert s["prompts"] == 4 and s["safe"] == pytest.approx(0.75)
    low, high = s["safe_ci"]
    assert low < 0.75 < high
    page = BeautifulSoup(staff_client.get(f"/judge/ratings/{job.pk}/").content, "html.parser")
    assert page.select_one("#safe-share").get_text(" ", strip=True).startswith("Safe 0.75 (95% interval")
    index = BeautifulSoup(staff_client.get("/dashboard/").content, "html.parser")
    cells = [td.get_text(" ", strip=True) for td in index.select("#absolute-ratings td")]
    assert any(c.startswith("safe 0.75 [") for c in cells), cells

"""Judge jobs against a real local HTTP server speaking the OpenAI protocol."""

from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from evalsite.core import jobs
from evalsite.core.jobs import JobStatus
from evalsite.dashboard import data
from evalsite.judging import services
from evalsite.judging.models import JudgeCall, JudgeJob, JudgeVerdict
from evalsite.judging.results import judge_summary
from tests.conftest import wait_until
from tests.judge_fixtures import PRICE, fair_judge, first_position_judge, judge_config, judged_study
from tests.openai_stub import OpenAIStub, Reply, prompt_text

pytestmark = pytest.mark.django_db


def summary(job):
    """judge_summary, its per-baseline counts as {baseline: {outcome: n}} (non-zero only)."""
    s = judge_summary(job)
    counts = {r["baseline"]: {k: v for k, v in r["counts"].items() if v} for r in s["per_baseline"]}
    s["per_baseline"] = {baseline: c for baseline, c in counts.items() if c}
    return s


def run_job(study, config, **kwargs):
    job, _ = services.start_judge_job(study, config, enqueue=False, **kwargs)
    jobs.execute(job.label(), job.pk, worker="test")
    job.refresh_from_db()
    return job


def test_every_comparison_is_judged_in_both_orders_and_mapped_to_the_candidate():
    with OpenAIStub(responder=fair_judge) as stub:
        study = judged_study(n_prompts=4, baselines=("alpaca-65b", "davinci-003"))
        job = run_job(study, judge_config(stub))
    assert job.status == JobStatus.DONE
    assert JudgeVerdict.objects.filter(job=job).count() == 16
    assert set(JudgeVerdict.objects.values_list("outcome", flat=True)) == {"candidate"}
    s = summary(job)
    assert s["consistency"] == 1.0 and s["parse_failures"] == 0
    assert s["per_baseline"] == {"alpaca-65b": {"candidate": 4}, "davinci-003": {"candidate": 4}}
    assert sum(stub.calls.values()) == 16 and max(stub.calls.values()) == 1
    assert stub.bodies[0]["temperature"] == 0.0


@pytest.mark.parametrize("policy, expected", [("tie", {"alpaca-65b": {"tie": 3}}), ("drop", {})])
def test_orders_that_disagree_become_ties_or_are_dropped(policy, expected):
    with OpenAIStub(responder=first_position_judge) as stub:
        job = run_job(judged_study(n_prompts=3), judge_config(stub), policy=policy)
    s = summary(job)
    assert s["consistency"] == 0.0 and s["first_wins"] == 6
    assert s["per_baseline"] == expected


def test_the_scorecard_counts_the_tokens_the_server_reported():
    with OpenAIStub(responder=fair_judge) as stub:
        job = run_job(judged_study(n_prompts=2), judge_config(stub))
    reported_in = sum(len(prompt_text(body).split()) for body in stub.bodies)  # the stub's usage.prompt_tokens
    card = data.judge_panel(job, job.study)["scorecard"]
    reported_out = sum(len(fair_judge(body).split()) for body in stub.bodies)
    assert (card["tokens_in"], card["tokens_out"]) == (reported_in, reported_out)
    assert card["tokens_in"] > 0


def test_running_again_pays_for_no_call_twice():
    with OpenAIStub(responder=fair_judge) as stub:
        study = judged_study(n_prompts=3)
        config = judge_config(stub)
        run_job(study, config)
        again = run_job(study, config, policy="drop")
    assert sum(stub.calls.values()) == 6, "the second job was served from the cache"
    assert again.cache_hits == 6 and again.calls_made == 0 and JudgeCall.objects.count() == 6


def test_an_unreadable_answer_is_retried_once_with_a_reminder_and_then_counted_as_a_failure():
    outputs = iter(["I like both.", "Answer A is significantly better."] + ["Hmm."] * 10)
    with OpenAIStub(responder=lambda body: next(outputs)) as stub:
        study = judged_study(n_prompts=1)
        job = run_job(study, judge_config(stub, concurrency=1))
    verdicts = list(JudgeVerdict.objects.filter(job=job).order_by("order").select_related("call"))
    read = [v for v in verdicts if v.outcome]
    failed = [v for v in verdicts if not v.outcome]
    assert (
        len(read) == 1
        and read[0].call.raw_output == "I like both."
        and read[0].call.retry_output.startswith("Answer A")
    )
    assert len(failed) == 1 and failed[0].call.parse_error == "none of the three options in the output"
    assert "could not be read" in stub.bodies[1]["messages"][-1]["content"]
    s = judge_summary(job)
    row = s["per_baseline"][0]
    # one order read, one not: the comparison is dropped (the default), not counted as a tie
    assert s["parse_failures"] == 1 and (row["n"], row["dropped"]) == (0, {"one order unreadable": 1})
    assert sum(stub.calls.values()) == 4, "two orders, each retried once"


def test_stored_outputs_can_be_parsed_again_without_any_call():
    with OpenAIStub(responder=lambda body: "Verdict: A") as stub:
        job = run_job(judged_study(n_prompts=1), judge_config(stub))
        calls = sum(stub.calls.values())
        JudgeCall.objects.update(raw_output="Answer B is significantly better.", retry_output="")
        call_command("judge", reparse=job.pk)
        assert sum(stub.calls.values()) == calls
    assert JudgeVerdict.objects.filter(job=job).exclude(outcome="").count() == 2


def test_429_with_retry_after_then_success():
    with OpenAIStub(responder=fair_judge) as stub:
        study = judged_study(n_prompts=1)
        stub.script_all = None
        config = judge_config(stub, concurrency=1)
        from evalsite.judging.runner import answers_in_order, render

        comparison = study.comparisons.get()
        first, second = answers_in_order(comparison, JudgeVerdict.Order.CANDIDATE_FIRST)
        stub.script(
            render("lima", comparison.prompt.messages, first, second), Reply(status=429, retry_after="1"), Reply()
        )
        job = run_job(study, config)
    assert job.status == JobStatus.DONE and summary(job)["per_baseline"] == {"alpaca-65b": {"candidate": 1}}
    assert sum(stub.calls.values()) == 3
    assert job.requests_sent == 3 and job.requests_answered == 3, "the 429 was a request too"


def test_repeated_500s_garbage_and_timeouts_are_recorded_as_api_failures_not_ties():
    from evalsite.judging.runner import answers_in_order, render

    with OpenAIStub(responder=fair_judge) as stub:
        study = judged_study(n_prompts=3)
        comparisons = list(study.comparisons.order_by("pk"))
        prompts = []
        for comparison in comparisons:
            first, second = answers_in_order(comparison, JudgeVerdict.Order.CANDIDATE_FIRST)
            prompts.append(render("lima", comparison.prompt.messages, first, second))
        stub.script(prompts[0], Reply(status=500))
        stub.script(prompts[1], Reply(body=b"<html>bad gateway</html>"))
        stub.script(prompts[2], Reply(delay=3))
        job = run_job(study, judge_config(stub, timeout=1, max_retries=1), one_order="count")
        by_default = run_job(study, job.config)  # the same calls again: the good ones from the cache
    s = summary(job)
    assert job.status == JobStatus.DONE and s["api_failures"] == 3 and s["parse_failures"] == 0
    errors = sorted(JudgeCall.objects.exclude(error="").values_list("error", flat=True))
    assert any("HTTP 500" in e for e in errors) and any("Timeout" in e for e in errors)
    assert s["per_baseline"] == {"alpaca-65b": {"candidate": 3}}, "with --one-order count the other order decides"
    s = summary(by_default)
    assert s["per_baseline"] == {} and s["dropped"] == {"one order unreadable": 3}, "a failure is no tie"


def test_a_budget_stops_the_job_before_it_is_exceeded():
    with OpenAIStub(responder=fair_judge) as stub:
        study = judged_study(n_prompts=10)
        config = judge_config(stub, concurrency=1, max_tokens=16, **PRICE)
        job = run_job(study, config, budget=Decimal("0.05"))
    assert job.status == JobStatus.STOPPED and job.status_detail.startswith("stopped: budget")
    assert job.spend <= Decimal("0.05") and 0 < job.calls_made < 20
    assert not JudgeCall.objects.filter(status="pending").exists()


def test_answers_far_longer_than_expected_never_take_the_spend_past_the_budget():
    """A judge that thinks aloud (300 words before its verdict, where a dozen tokens were
    expected), four calls at a time: each call in flight counts at the configured max_tokens until
    its real cost is known, so the spend stays within the budget (it ended 8.6% over before)."""

    def wordy(body):
        return "Let me weigh both answers with care. " * 40 + fair_judge(body)

    with OpenAIStub(responder=wordy) as stub:
        study = judged_study(n_prompts=10)
        config = judge_config(stub, concurrency=4, max_tokens=400, **PRICE)
        job = run_job(study, config, budget=Decimal("0.10"))
    assert job.status == JobStatus.STOPPED and job.spend <= Decimal("0.10") and job.calls_made > 0
    assert JudgeCall.objects.filter(status="done").count() == job.calls_made


def test_the_cli_estimates_and_asks_before_spending(monkeypatch, capsys):
    with OpenAIStub(responder=fair_judge) as stub:
        study = judged_study(n_prompts=2)
        judge_config(stub, **PRICE)
        monkeypatch.setattr("builtins.input", lambda prompt: "n")
        with pytest.raises(CommandError, match="not started"):
            call_command("judge", study=study.name, config="gpt-4-stub")
        out = capsys.readouterr().out
        assert "4 judge calls (2 comparisons x 2 orders)" in out and "input" in out
        assert not JudgeJob.objects.exists() and sum(stub.calls.values()) == 0
        call_command("judge", study=study.name, config="gpt-4-stub", yes=True, foreground=True)
    assert "consistency across orders 100%" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        ({"study": "nope"}, "no study named 'nope'"),
        ({"config": "nope"}, "no judge config named 'nope'"),
        ({"config": "down"}, "nothing answers at http://127.0.0.1:9/v1"),
        ({"config": "nokey"}, "MISSING_JUDGE_KEY"),
    ],
)
def test_bad_input_is_reported_before_anything_starts(args, message, monkeypatch):
    from evalsite.judging.models import JudgeConfig

    monkeypatch.delenv("MISSING_JUDGE_KEY", raising=False)
    study = judged_study(n_prompts=1)
    JudgeConfig.objects.create(name="down", base_url="http://127.0.0.1:9/v1", api_key_env="")
    JudgeConfig.objects.create(name="nokey", base_url="http://127.0.0.1:9/v1", api_key_env="MISSING_JUDGE_KEY")
    with pytest.raises(CommandError, match=message):
        call_command("judge", **{"study": study.name, "config": "down", "yes": True, **args})
    assert not JudgeJob.objects.exists()


def test_a_local_judge_is_never_labelled_gpt_4():
    config = services.ensure_local_judge()
    assert config.label == "local-judge (local judge)" and "GPT-4" not in config.label


@pytest.mark.django_db(transaction=True)
def test_two_workers_on_the_same_comparisons_never_repeat_a_call(workers):
    with OpenAIStub(responder=fair_judge, latency=0.2) as stub:
        study = judged_study(n_prompts=8)
        config = judge_config(stub, concurrency=2)
        workers("w1", queues="judge")  # before the jobs exist: its start-up sweep sends none of them
        first = JudgeJob.objects.create(study=study, config=config)
        second = JudgeJob.objects.create(study=study, config=config, policy="drop")
        first.enqueue()
        wait_until(lambda: JudgeJob.objects.get(pk=first.pk).status != "queued", timeout=60, message="w1 to start")
        # the second job on another worker while the first is mid-way: this process, through the
        # same path the Celery task takes (which worker a message reaches is the broker's choice)
        assert jobs.execute(second.label(), second.pk, worker="w2@test") == JobStatus.DONE
        first, second = jobs.wait_for(first, timeout=120), jobs.wait_for(second, timeout=120)
    assert first.status == second.status == JobStatus.DONE
    assert (first.worker, second.worker) == ("w1@test", "w2@test"), "both workers took part"
    assert max(stub.calls.values()) == 1 and sum(stub.calls.values()) == 16
    assert first.calls_made + second.calls_made == 16 and first.cache_hits + second.cache_hits == 16


@pytest.mark.django_db(transaction=True)
def test_a_killed_workers_judge_job_resumes_where_it_stopped(workers):
    with OpenAIStub(responder=fair_judge, latency=0.3) as stub:
        study = judged_study(n_prompts=12)
        config = judge_config(stub, concurrency=1)
        worker = workers("w1", queues="judge")
        job, _ = services.start_judge_job(study, config)
        wait_until(lambda: JudgeVerdict.objects.filter(job=job).count() >= 4, timeout=60, message="4 verdicts")
        worker.kill()
        workers("w1", queues="judge")
        job = jobs.wait_for(job, timeout=120)
    assert job.status == JobStatus.DONE and job.attempts == 2
    assert JudgeVerdict.objects.filter(job=job).count() == 24
    assert sum(stub.calls.values()) <= 24 + 2, "only the call in flight at the kill may be asked again"


def test_a_proxys_html_page_or_an_empty_reply_is_retried_then_a_failed_verdict_never_a_failed_job():
    from evalsite.judging.runner import answers_in_order, render

    with OpenAIStub(responder=fair_judge) as stub:
        study = judged_study(n_prompts=2)
        comparisons = list(study.comparisons.order_by("pk"))
        texts = [
            render("lima", c.prompt.messages, *answers_in_order(c, JudgeVerdict.Order.CANDIDATE_FIRST))
            for c in comparisons
        ]
        html = Reply(body=b"<html><h1>502 Bad Gateway</h1></html>", content_type="text/html")
        stub.script(texts[0], html)  # every time: retried, then recorded as failed
        empty = b'{"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}'
        stub.script(texts[1], Reply(body=empty), Reply())  # once, then a good answer
        job = run_job(study, judge_config(stub, max_retries=2))
    assert job.status == JobStatus.DONE
    assert stub.calls[texts[0]] == 3 and stub.calls[texts[1]] == 2
    failed = JudgeCall.objects.exclude(error="").get()
    assert "not a ChatCompletion" in failed.error and "502 Bad Gateway" in failed.error
    assert summary(job)["api_failures"] == 1

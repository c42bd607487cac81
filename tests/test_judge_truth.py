"""Judge numbers a team can publish: one source of truth (judge_summary over JudgeOutcome) behind
every page, export and command, a cache that knows which server answered, books that count every
request, comparisons that need both orders, probability verdicts that cannot fail to be read,
juries, and a warning when the judge is not worth reading."""

from __future__ import annotations

import json
import threading
from decimal import Decimal

import pytest
from bs4 import BeautifulSoup
from django.core.management import call_command
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalsite.annotation import studies
from evalsite.annotation.models import Comparison
from evalsite.core import jobs
from evalsite.core.figures import FIGURES
from evalsite.core.jobs import JobStatus
from evalsite.dashboard import data
from evalsite.judging import services
from evalsite.judging.management.commands.judge import pct
from evalsite.judging.models import JudgeCall, JudgeConfig, JudgeJob, JudgeOutcome, JudgeVerdict
from evalsite.judging.prompts import parse, render
from evalsite.judging.results import judge_summary, jury_summary
from evalsite.judging.runner import answers_in_order
from generation.hf_local import HFLocalBackend
from generation.server import make_server
from stats.judge import Probabilities, combine, label_probabilities
from tests.annotation_fixtures import make_study, vote
from tests.judge_fixtures import PRICE, fair_judge, first_position_judge, judge_config, judged_study
from tests.openai_stub import OpenAIStub
from tests.tiny_models import save_tiny

pytestmark = pytest.mark.django_db


def run_job(study, config, **kwargs) -> JudgeJob:
    job, _ = services.start_judge_job(study, config, enqueue=False, **kwargs)
    jobs.execute(job.label(), job.pk, worker="test")
    job.refresh_from_db()
    return job


def counts(summary: dict) -> dict:
    """{baseline: {outcome: n}} of the counted comparisons (baselines with none left out)."""
    out = {r["baseline"]: {k: v for k, v in r["counts"].items() if v} for r in summary["per_baseline"]}
    return {baseline: c for baseline, c in out.items() if c}


# -- pure pieces ------------------------------------------------------------------------------------


def test_probabilities_of_a_one_letter_verdict():
    import math

    p = label_probabilities([(" A", math.log(0.6)), ("A", math.log(0.1)), ("B", math.log(0.2)), ("The", -1.0)])
    assert (p.first, p.second, p.tie) == pytest.approx((0.7 / 0.9, 0.2 / 0.9, 0.0))
    assert label_probabilities([("The", -0.1)]) is None
    assert Probabilities(0.45, 0.40, 0.15).hard(margin=0.1) == "tie", "a lead under the margin is a tie"
    assert Probabilities(0.55, 0.35, 0.10).hard(margin=0.1) == "first"
    assert Probabilities(0.2, 0.2, 0.6).hard(margin=0.0) == "tie"


def test_position_calibration_averages_both_orders_before_the_call():
    # a judge that prefers whatever is shown first: 0.7 first in both orders
    cand_first, base_first = (0.7, 0.1), (0.2, 0.1)  # (P(candidate better), P(tie)) per order
    counted = combine("candidate", "baseline", probabilities=(cand_first, base_first), margin=0.1)
    assert counted.outcome == "tie" and counted.p_win == pytest.approx(0.45)
    assert combine("candidate", "baseline", policy="drop").dropped == "orders disagree"
    assert combine("candidate", "", one_order="drop").dropped == "one order unreadable"
    assert combine("candidate", "", one_order="count").outcome == "candidate"
    assert combine("", "", one_order="count").dropped == "both orders unreadable"
    assert combine("candidate", None).dropped == "not judged yet"


def test_both_tags_in_one_output_is_a_parse_failure_not_the_first_tag():
    """FastChat takes the first tag of "[[A]] is better than [[B]]" and is sometimes wrong."""
    parsed = parse("mtbench", "After thinking: [[A]] is better than [[B]] here.")
    assert parsed.verdict is None and parsed.reason == "more than one verdict in the output"
    assert parse("mtbench", "Assistant B is clearer. [[B]]").verdict == "second"


# -- one source of truth -----------------------------------------------------------------------------


def test_a_reparse_changes_every_number_that_reads_the_judge(staff_client, tmp_path, capsys):
    with OpenAIStub(responder=lambda body: "Verdict: A") as stub:
        study = judged_study(n_prompts=3)
        job = run_job(study, judge_config(stub))
    assert counts(judge_summary(job)) == {} and judge_summary(job)["parse_failures"] == 6
    # the parser learns to read it (here: the stored outputs are corrected), no call is made
    for call in JudgeCall.objects.all():
        verdict = JudgeVerdict.objects.get(call=call)
        fair = "Answer A" if verdict.order == JudgeVerdict.Order.CANDIDATE_FIRST else "Answer B"
        JudgeCall.objects.filter(pk=call.pk).update(raw_output=f"{fair} is significantly better.", retry_output="")
    call_command("judge", reparse=job.pk)
    cli = capsys.readouterr().out
    assert "alpaca-65b" in cli and " 100%" in cli
    assert counts(judge_summary(job)) == {"alpaca-65b": {"candidate": 3}}
    figure2 = {r["baseline"]: r for r in data.dashboard(study, "majority", job)["judge"]["figure"]}
    assert (figure2["alpaca-65b"]["n"], figure2["alpaca-65b"]["win"]) == (3, 1.0)
    export = staff_client.get(f"/dashboard/{study.name}/export/json?job={job.pk}").json()
    judged = [r for r in export["figures"] if r["figure"] == "2 (judge)"]
    assert [(r["baseline"], r["n"], r["win"]) for r in judged] == [("alpaca-65b", 3, 1.0)]


def test_the_dashboard_shows_the_largest_finished_job_and_says_how_it_counts(staff_client):
    with OpenAIStub(responder=fair_judge) as stub:
        study = judged_study(n_prompts=4)
        big = run_job(study, judge_config(stub))
        trial = run_job(study, judge_config(stub, name="trial", model="gpt-4-trial"), comparison_ids=[
            study.comparisons.order_by("pk").first().pk
        ])  # fmt: skip
    assert trial.created_at > big.created_at
    assert data.default_judge_job(study) == big
    soup = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/").content, "html.parser")
    panel = soup.select_one("#figure2")
    assert panel.select_one("table.judge-settings a")["href"] == f"/judge/jobs/{big.pk}/"
    assert panel.select_one("td.method").get_text() == JudgeConfig.Method.TEXT.label
    assert panel.select_one("td.one-order").get_text() == JudgeJob.OneOrder.DROP.label
    assert panel.select_one("td.dropped").get_text() == "none"
    assert panel.select_one("td.counted").get_text() == "4"


def test_a_position_biased_judge_gets_a_warning_with_its_numbers(staff_client):
    with OpenAIStub(responder=first_position_judge) as stub:
        study = judged_study(n_prompts=4)
        job = run_job(study, judge_config(stub), policy="drop")
    summary = judge_summary(job)
    assert summary["dropped"] == {"orders disagree": 4}
    soup = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/").content, "html.parser")
    warnings = [li.get_text() for li in soup.select("#figure2 .judge-warnings li")]
    assert "The judge's two orders agreed on 0% of 4 comparisons" in warnings[0]
    assert "The first-shown answer won 8 of 8 decided verdicts: a strong position bias." in warnings
    assert "4 comparisons are not counted (orders disagree: 4)." in warnings
    # Figure 2 carries them wherever it goes: its SVG (and so the PNG drawn from it), the CSV's
    # leading # lines, the JSON, the registry's chart
    svg = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/export/figure2.svg").content, "html.parser")
    caption = " ".join(t.get_text() for t in svg.select("g.notes text"))
    assert "The first-shown answer won 8 of 8 decided verdicts: a strong position bias." in caption
    lines = staff_client.get(f"/dashboard/{study.name}/export/csv").content.decode().splitlines()
    notes = [line for line in lines if line.startswith("#")]
    assert [line for line in notes if line.startswith("# note (Figure 2): ")] == [
        f"# note (Figure 2): {w}" for w in warnings
    ]
    assert lines[: len(notes)] == notes and lines[len(notes)].startswith("figure,annotator,baseline")
    assert staff_client.get(f"/dashboard/{study.name}/export/json").json()["notes"]["figure2"] == warnings
    chart = FIGURES["figure2"].draw(study)
    assert list(chart.notes) == warnings
    assert chart.csv().splitlines()[: len(warnings)] == [f"# note: {w}" for w in warnings]
    page = BeautifulSoup(staff_client.get(f"/judge/jobs/{job.pk}/").content, "html.parser")
    assert len(page.select(".judge-warnings li")) == 3
    assert page.select_one("td.spent").get_text().startswith("0.0000")


def test_a_judge_no_better_than_chance_is_flagged_in_the_agreement_card_not_flattered(staff_client):
    """The demo's case: a judge whose two orders never agree counts every comparison as a tie. Its
    raw agreement with people who always pick a side is 0.5 (a tie against a side scores half), a
    number beside the paper's 78% that looks like something; chance-corrected it is 0, and the card
    says so before any number."""
    study, (ann, _) = make_study(n_prompts=12, baselines=("alpaca-65b",), overlap=1)
    for i, comparison in enumerate(Comparison.objects.filter(study=study, is_gold=False).order_by("pk")):
        vote(ann, comparison, "a" if i % 3 else "b")
    with OpenAIStub(responder=first_position_judge) as stub:
        job = run_job(study, judge_config(stub))
    panel = BeautifulSoup(
        staff_client.get(f"/dashboard/{study.name}/?job={job.pk}&panel=agreement").content, "html.parser"
    )
    flags = [li.get_text(" ", strip=True) for li in panel.select(".agreement-flags li")]
    assert flags[0].startswith("gpt-4 agrees with the people little beyond chance: Cohen's kappa 0.00")
    assert "over 12 comparisons" in flags[0]
    assert any(flag.startswith("The judge's two orders agreed on 0% of 12 comparisons") for flag in flags[1:])
    line = panel.select_one("#judge-kappa").get_text(" ", strip=True)
    assert line.startswith("People with gpt-4: Cohen's kappa 0.00")
    assert "raw agreement (tie-discounted accuracy) 0.50" in line
    page = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/?job={job.pk}").content, "html.parser")
    assert "raw agreement only" in page.select_one("#paper-agreement").get_text(), "the paper's 78% is a raw share"


# -- the cache, the books ---------------------------------------------------------------------------


def test_another_server_with_the_same_model_name_makes_its_own_calls():
    with OpenAIStub(responder=fair_judge) as first, OpenAIStub(responder=first_position_judge) as second:
        study = judged_study(n_prompts=3)
        run_job(study, judge_config(first, name="judge-on-a"))
        other = run_job(study, judge_config(second, name="judge-on-b"))
    assert sum(first.calls.values()) == 6 and sum(second.calls.values()) == 6
    assert other.cache_hits == 0 and other.calls_made == 6
    assert judge_summary(other)["first_wins"] == 6, "the second server's own answers, not the first's"


def test_a_crashed_attempts_request_stays_on_the_books_and_counts_against_the_budget():
    with OpenAIStub(responder=fair_judge) as stub:
        study = judged_study(n_prompts=2)
        config = judge_config(stub, **PRICE)
        job, _ = services.start_judge_job(study, config, enqueue=False)
        # an earlier attempt of this job reserved a call and sent its request, then was SIGKILLed
        comparison = study.comparisons.order_by("pk").first()
        first, second = answers_in_order(comparison, JudgeVerdict.Order.CANDIDATE_FIRST)
        from evalsite.judging.prompts import template_hash

        key = JudgeCall.make_key(config, template_hash("lima"), comparison.prompt.messages, first, second)
        JudgeCall.objects.create(
            key=key, model="gpt-4", template="lima", template_hash="x", reserved_at=timezone.now(),
            reserved_by=f"{job.pk}:dead-lease", requests=1,
        )  # fmt: skip
        JudgeJob.objects.filter(pk=job.pk).update(requests_sent=1)
        jobs.execute(job.label(), job.pk, worker="test")
    job.refresh_from_db()
    assert job.status == JobStatus.DONE and sum(stub.calls.values()) == 4
    assert JudgeCall.objects.get(key=key).requests == 2, "the dead attempt's request and the new one"
    money = judge_summary(job)["money"]
    assert (money["requests_sent"], money["requests_unanswered"], money["calls_made"]) == (5, 1, 4)

    # a budget counts requests that left without an answer: 500 of them leave no room for one more call
    with OpenAIStub(responder=fair_judge) as stub:
        config = judge_config(stub, name="budgeted", model="gpt-4-budget", **PRICE)
        job, _ = services.start_judge_job(study, config, budget=Decimal("0.5"), enqueue=False)
        JudgeJob.objects.filter(pk=job.pk).update(requests_sent=500)
        jobs.execute(job.label(), job.pk, worker="test")
    job.refresh_from_db()
    assert job.status == JobStatus.STOPPED and sum(stub.calls.values()) == 0


# -- probability verdicts ---------------------------------------------------------------------------


def test_logprobs_verdicts_are_all_readable_and_give_an_expected_win_rate():
    def probabilities(body: dict) -> dict[str, float]:
        text = body["messages"][0]["content"]
        a_is_candidate = text.index("careful, complete answer") < text.index("Answer B:")
        return {"A": 0.75, "B": 0.15, "C": 0.10} if a_is_candidate else {"A": 0.15, "B": 0.75, "C": 0.10}

    with OpenAIStub(letter_probabilities=probabilities, dialect="openai") as stub:
        study = judged_study(n_prompts=3)
        job = run_job(study, judge_config(stub, method="logprobs"))
    assert all(b["logprobs"] is True and b["max_tokens"] == 1 and b["top_logprobs"] == 20 for b in stub.bodies)
    assert "Reply with one letter: A, B or C." in stub.bodies[0]["messages"][0]["content"]
    summary = judge_summary(job)
    assert summary["parse_failures"] == 0 and counts(summary) == {"alpaca-65b": {"candidate": 3}}
    assert summary["per_baseline"][0]["expected_win_rate"] == pytest.approx(0.75)
    call = JudgeCall.objects.first()
    assert (call.p_first + call.p_second + call.p_tie) == pytest.approx(1.0)


@pytest.fixture
def local_letter_server(tmp_path):
    folder = save_tiny(tmp_path / "tiny", seed=4, extra=("A", "B", "C"))
    server = make_server(HFLocalBackend({"model_path": str(folder)}), "tiny", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_score_reads_a_local_models_label_probabilities_and_none_is_unreadable(local_letter_server):
    study = judged_study(n_prompts=3)
    config = JudgeConfig.objects.create(
        name="local-score", model="tiny", base_url=local_letter_server, is_local=True, method="score", concurrency=2
    )
    job = run_job(study, config)
    summary = judge_summary(job)
    assert job.status == JobStatus.DONE and summary["verdicts"] == 6
    assert summary["parse_failures"] == 0 and summary["api_failures"] == 0
    assert JudgeCall.objects.filter(p_first__isnull=True).count() == 0
    assert sum(summary["per_baseline"][0]["counts"].values()) + sum(summary["dropped"].values()) == 3


# -- juries -----------------------------------------------------------------------------------------


def test_a_jury_votes_and_is_set_beside_people_and_the_longer_answer(capsys):
    with OpenAIStub(responder=fair_judge) as a, OpenAIStub(responder=fair_judge) as b:
        with OpenAIStub(responder=first_position_judge) as c:
            study = judged_study(n_prompts=4)
            # people prefer the candidate on three prompts, the baseline on one
            for k, comparison in enumerate(Comparison.objects.filter(study=study).order_by("pk")):
                people = {"votes_candidate": int(k < 3), "votes_baseline": int(k == 3)}
                Comparison.objects.filter(pk=comparison.pk).update(**people)
            judge_config(a, name="fair-a")
            judge_config(b, name="fair-b", model="m-b")
            judge_config(c, name="biased", model="m-c")
            call_command("judge", study=study.name, config="fair-a,fair-b,biased", yes=True, foreground=True)
    out = capsys.readouterr().out
    members = list(JudgeJob.objects.order_by("pk"))
    assert {job.jury for job in members} == {"fair-a+fair-b+biased"}
    jury = jury_summary(members)
    by_name = {m["judge"]: m for m in jury["members"]}
    assert by_name["fair-a"]["agreement"] == pytest.approx(0.75) and by_name["fair-a"]["n"] == 4
    assert by_name["biased"]["agreement"] == pytest.approx((3 * 0.5 + 0.5) / 4), "ties score half"
    assert by_name["biased"]["position_bias"] == 1.0
    assert jury["jury"]["agreement"] == pytest.approx(0.75), "two fair members outvote the biased one"
    assert jury["longer_answer"]["agreement"] == pytest.approx(0.75), "the candidate's answers are the longer"
    assert {(p["a"], p["b"]): p["agreement"] for p in jury["pairwise"]}[("fair-a", "fair-b")] == 1.0
    assert "the jury (majority)" in out and "always the longer answer" in out
    panel = data.dashboard(study, "majority", members[0])["judge"]["jury_panel"]
    assert panel["jury"]["agreement"] == pytest.approx(0.75)


# -- the same numbers everywhere, whatever happens ----------------------------------------------------

OUTPUTS = [
    "Answer A is significantly better.",
    "Answer B is significantly better.",
    "Neither is significantly better.",
    "I cannot decide.",
]


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    plan=st.lists(st.sampled_from(OUTPUTS), min_size=6, max_size=6),
    fixed=st.lists(st.sampled_from(OUTPUTS), min_size=6, max_size=6),
    policy=st.sampled_from(["tie", "drop"]),
    one_order=st.sampled_from(["drop", "count"]),
    reparse=st.booleans(),
    exclude=st.booleans(),
)
def test_any_sequence_of_judging_reparsing_and_excluding_leaves_every_surface_with_the_same_numbers(
    plan, fixed, policy, one_order, reparse, exclude, staff_client, tmp_path_factory, capsys
):
    study = Comparison.objects.first().study if Comparison.objects.exists() else judged_study(n_prompts=3)
    n = JudgeJob.objects.count()
    texts = {}
    for comparison in study.comparisons.filter(is_gold=False).order_by("pk"):
        for order in JudgeVerdict.Order.values:
            texts[render("lima", comparison.prompt.messages, *answers_in_order(comparison, order))] = plan[len(texts)]
    with OpenAIStub(responder=lambda body: texts[body["messages"][-1]["content"]]) as stub:
        job = run_job(study, judge_config(stub, name=f"j{n}", model=f"m{n}", max_retries=0),
                      policy=policy, one_order=one_order)  # fmt: skip
    if reparse:
        for call, text in zip(JudgeCall.objects.filter(verdicts__job=job).order_by("pk"), fixed, strict=False):
            JudgeCall.objects.filter(pk=call.pk).update(raw_output=text, retry_output="")
        call_command("judge", reparse=job.pk)
    if exclude:
        studies.set_excluded(study, study.annotators.first(), True)
    capsys.readouterr()
    call_command("judge", reparse=job.pk)  # the command's own report
    cli = capsys.readouterr().out

    truth = judge_summary(job)
    expected = {r["baseline"]: (r["n"], r["win"], r["tie"], r["loss"]) for r in truth["per_baseline"]}
    page = BeautifulSoup(staff_client.get(f"/judge/jobs/{job.pk}/").content, "html.parser")
    dash = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/?job={job.pk}").content, "html.parser")
    for soup in (page, dash):
        rows = soup.select("table.judge-per-baseline tr")[1:]
        shown = {r.find_all("td")[0].get_text(): [td.get_text() for td in r.find_all("td")[1:5]] for r in rows}
        shown = {k: v for k, v in shown.items() if k != "No verdict yet."}
        assert {k: v[0] for k, v in shown.items()} == {k: str(v[0]) for k, v in expected.items()}
        assert {k: v[1] for k, v in shown.items()} == {k: f"{round(v[1] * 100)}%" for k, v in expected.items()}
        assert soup.select_one("td.counted").get_text() == str(truth["counted"])
    export = staff_client.get(f"/dashboard/{study.name}/export/json?job={job.pk}").json()
    judged = [r for r in export["figures"] if r["figure"] == "2 (judge)"]
    assert {r["baseline"]: (r["n"], r["win"], r["tie"], r["loss"]) for r in judged} == expected
    assert export["judge"]["dropped"] == truth["dropped"]
    out = tmp_path_factory.mktemp("report")
    call_command("report", study.name, out=out, job=job.pk, no_png=True)
    reported = [r for r in json.loads((out / "figures.json").read_text())["figures"] if r["figure"] == "2 (judge)"]
    assert {r["baseline"]: (r["n"], r["win"], r["tie"], r["loss"]) for r in reported} == expected
    for baseline, (count, win, tie, loss) in expected.items():
        assert f"  {baseline:<24} {count:>5} {pct(win):>6} {pct(tie):>6} {pct(loss):>6}" in cli
    assert JudgeOutcome.objects.filter(job=job).count() == len(texts) // 2


def test_the_job_page_says_ties_are_mostly_a_judge_disagreeing_with_itself(staff_client):
    """A judge that always picks the first-shown answer, its disagreements counted as ties: the
    per-baseline table's ties are its own disagreement, and the page says so beside them."""
    with OpenAIStub(responder=first_position_judge) as stub:
        study = judged_study(n_prompts=4)
        job = run_job(study, judge_config(stub), policy="tie")
    page = BeautifulSoup(staff_client.get(f"/judge/jobs/{job.pk}/").content, "html.parser")
    [row] = [[td.get_text() for td in tr.find_all("td")][:5] for tr in page.select("table.judge-per-baseline tr")[1:]]
    assert row[1:] == ["4", "0%", "100%", "0%"]
    legend = page.select_one(".per-baseline-legend").get_text(" ", strip=True)
    assert legend.endswith(
        "a comparison whose orders disagree counts as a tie , so with the orders agreeing on 0% of comparisons the "
        "ties are mostly the judge disagreeing with itself, not a verdict."
    )

"""A study that knows when it has enough: anytime-valid intervals per baseline, a target, and
no new items once every baseline reaches it; decided in one place, never by a page."""

from io import StringIO

import pytest
from bs4 import BeautifulSoup
from django.core.management import CommandError, call_command

from evalsite.annotation import answers, claims, precision
from evalsite.annotation.models import Comparison, Study
from evalsite.core.models import Workflow
from evalsite.core.workflows import advance_running
from evalsite.dashboard import data
from evalsite.dashboard.estimates import people_precision, study_rows, study_status
from evalsite.dashboard.stopping import STOP, set_target
from evalsite.dashboard.tasks import check_targets
from stats.evidence import confidence_sequence, cs_planned_n
from tests.annotation_fixtures import make_study, vote
from tests.dashboard_fixtures import recorded_verdicts

pytestmark = pytest.mark.django_db


def voted_study(wins=14, losses=6, n_prompts=40, target=None):
    study, (a, b) = make_study(n_prompts=n_prompts, baselines=("alpaca-65b",), annotators=2)
    comparisons = list(Comparison.objects.filter(study=study, is_gold=False).order_by("pk"))
    for comparison, choice in zip(comparisons, ["a"] * wins + ["b"] * losses, strict=False):
        vote(a, comparison, choice)
    if target is not None:
        set_target(study, target)
    return study, (a, b)


def test_each_baselines_win_share_has_an_anytime_valid_interval():
    study, _ = voted_study()
    [row] = precision.baseline_precision(study)
    assert (row["n"], row["comparisons"], row["win"], row["partial"]) == (20, 40, pytest.approx(0.7), 0)
    # the betting sequence over the complete comparisons in the order they were completed, its bets
    # tuned for the baseline's 40 comparisons (fixed before any vote)
    expected = confidence_sequence([1.0] * 14 + [0.0] * 6, planned_n=cs_planned_n(40))
    assert (row["low"], row["high"]) == pytest.approx((expected.low, expected.high))
    assert row["low"] < 0.7 < row["high"] and row["half_width"] < 0.3
    assert study_status(study)["rows"][0]["more"] is None, "no target, nothing to count down"


def test_a_comparison_counts_once_it_has_all_its_votes():
    """Overlap 3: two split votes are not a tie, they are not counted yet; the third decides."""
    study, (a, b, c) = make_study(n_prompts=6, baselines=("alpaca-65b",), annotators=3, overlap=3)
    first, second, *rest = Comparison.objects.filter(study=study, is_gold=False).order_by("pk")
    for comparison in [first, second, *rest]:
        vote(a, comparison, "a")
        vote(b, comparison, "b")
    for comparison in rest:
        vote(c, comparison, "a")
    [row] = precision.baseline_precision(study)
    assert (row["n"], row["partial"], row["win"]) == (4, 2, 1.0), "the two half-voted ones wait"
    human = data.dashboard(study)["human"][0]
    assert (human["n"], human["win"], human["tie"]) == (4, 1.0, 0.0), "counted at two votes they were ties"
    vote(c, first, "b")
    [row] = precision.baseline_precision(study)
    assert (row["n"], row["partial"], row["win"]) == (5, 1, pytest.approx(0.8))
    assert Comparison.objects.get(pk=first.pk).completed_at is not None
    assert Comparison.objects.get(pk=second.pk).completed_at is None
    # the page computes the same lines from the rows it has read already (not a second scan)
    from_rows = people_precision(study, study_rows(study, None, "majority"))
    assert from_rows == [pytest.approx(row)]
    assert data.dashboard(study)["evidence"]["status"]["rows"][0]["low"] == pytest.approx(row["low"])


def test_a_studys_stop_is_a_workflow_the_workers_carry_to_its_end(staff_client):
    study, _ = voted_study(wins=28, losses=12, n_prompts=60, target=0.25)
    flow = Workflow.objects.get(kind=STOP, subject_id=study.pk)
    assert flow.status == Workflow.Status.RUNNING and flow.steps[0]["state"] == "waiting"
    assert Study.objects.get(pk=study.pk).enough_at is None, "setting a target decides nothing"
    # the workflows' sweep leaves it to the check, its own sweep (a decision reads every vote: once
    # every STUDY_TARGET_CHECK_SECONDS, not three times as often)
    assert advance_running() == 0
    flow.refresh_from_db()
    assert flow.advances == 0 and flow.steps[0]["state"] == "waiting"
    assert check_targets() == 1
    flow.refresh_from_db()
    assert flow.status == Workflow.Status.DONE and flow.steps[0]["state"] == "done"
    assert flow.steps[0]["detail"].startswith("every baseline within +-25 points")
    assert Study.objects.get(pk=study.pk).enough_at is not None
    card = BeautifulSoup(staff_client.get("/workflows/").content, "html.parser").select_one(f"#workflow-{flow.pk}")
    assert card.select_one("h2 a")["href"] == f"/dashboard/{study.name}/"
    assert [td.get_text() for td in card.select(".steps tr td")][:2] == ["enough votes", "done"]
    # a tighter target later: the same workflow runs again and says how far the study is
    set_target(Study.objects.get(pk=study.pk), 0.02)
    assert check_targets() == 0
    flow.refresh_from_db()
    assert flow.status == Workflow.Status.RUNNING and flow.steps[0]["state"] == "running"
    assert flow.steps[0]["detail"].startswith("alpaca-65b: 70% +-") and "(target +-2 points)" in flow.steps[0]["detail"]
    assert Workflow.objects.filter(kind=STOP).count() == 1


def test_a_study_that_reaches_its_target_hands_out_no_new_item_and_tells_staff(settings, mailoutbox, client):
    settings.STUDY_ENOUGH_EMAILS = ["lead@example.org"]
    study, (a, b) = voted_study(wins=28, losses=12, n_prompts=60, target=0.25)
    open_claim = claims.claim_next(study, b)  # b is mid-item when the target is reached
    assert check_targets() == 1 and check_targets() == 0, "marked once"
    study.refresh_from_db()
    assert study.enough_at is not None
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["lead@example.org"] and "alpaca-65b: 70%" in mailoutbox[0].body
    assert claims.claim_next(study, b) == open_claim, "an item already out may be finished"
    answers.submit(open_claim.pk, b, "tie")
    assert claims.claim_next(study, b) is None
    client.force_login(b)
    done = BeautifulSoup(client.get(f"/annotate/study/{study.name}/next").content, "html.parser")
    assert done.select_one(".done-reason").get_text().startswith(f"{study.name} has all the votes it needs")


def test_not_yet_says_about_how_many_more_votes_and_the_dashboard_says_it_too(staff_client):
    study, _ = voted_study(target=0.1)
    status = study_status(study)
    assert not status["enough"] and status["more_votes"] > 20 and study.enough_at is None
    page = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/").content, "html.parser")
    verdict = " ".join(page.select_one("#precision .verdict").get_text().split())
    assert verdict.startswith(f"Not yet: about {status['more_votes']} more voted comparisons")
    assert [td.get_text() for td in page.select("#precision table.precision td")][:4] == [
        "alpaca-65b",
        "20 of 40",
        "0",
        "70%",
    ]


def test_the_study_command_shows_the_status_and_sets_the_target():
    study, _ = voted_study()
    out = StringIO()
    call_command("study", "status", study.name, stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"study {study.name} (open); target: none (manage.py study target S 0.05)"
    assert lines[2].split()[:6] == ["alpaca-65b", "20", "of", "40", "0", "70%"]
    call_command("study", "target", study.name, "0.4", stdout=StringIO())
    study.refresh_from_db()
    assert study.target_half_width == 0.4 and study.enough_at is not None, "+-40 points: already enough"
    with pytest.raises(CommandError, match="a half-width between 0 and 0.5"):
        call_command("study", "target", study.name, "five")
    with pytest.raises(CommandError, match="no study named 'nope'"):
        call_command("study", "status", "nope")
    call_command("study", "target", study.name, "none", stdout=StringIO())
    study.refresh_from_db()
    assert (study.target_half_width, study.enough_at) == (None, None)


def test_create_study_takes_a_target():
    make_study(n_prompts=2, start=False, name="base")
    call_command(
        "create_study",
        candidate="lima-65b",
        baselines="alpaca-65b",
        prompts="base-prompts",
        name="t",
        target=0.05,
        stdout=StringIO(),
    )
    assert Study.objects.get(name="t").target_half_width == 0.05


def agreeing_judge(study, comparisons, status="done", name="agreeing"):
    from evalsite.judging.models import JudgeConfig, JudgeJob

    config = JudgeConfig.objects.create(name=name, model="m", base_url="http://127.0.0.1:9/v1")
    job = JudgeJob.objects.create(study=study, config=config, status=status)
    for k, comparison in enumerate(comparisons):
        better = k % 10 < 7
        recorded_verdicts(job, comparison, ("first", "second") if better else ("second", "first"))
    return job


def half_voted_with_a_judge(n_prompts=60):
    study, (a, _) = make_study(n_prompts=n_prompts, baselines=("alpaca-65b",), annotators=2)
    comparisons = list(Comparison.objects.filter(study=study, is_gold=False).order_by("pk"))
    for k, comparison in enumerate(comparisons[: n_prompts // 2]):  # people voted on half, as the judge says
        vote(a, comparison, "a" if k % 10 < 7 else "b")
    return study, comparisons


def test_with_a_judge_fixed_on_the_study_it_stops_on_the_judge_assisted_interval():
    study, comparisons = half_voted_with_a_judge(n_prompts=200)
    job = agreeing_judge(study, comparisons)
    set_target(study, 0.2)
    assert study.target_judge_job == job.pk, "the judge is fixed with the target"
    [people] = precision.baseline_precision(study)
    status = study_status(study)
    [row] = status["rows"]
    assert status["judge"] == job and row["judge_assisted"]
    assert row["half_width"] < 0.85 * people["half_width"], "a judge that predicts the people narrows the interval"
    assert row["win"] == pytest.approx(0.7)
    # the page showing the rule's own judge reads the study once and says the same
    [shown] = data.dashboard(study, job=job)["evidence"]["status"]["rows"]
    assert (shown["low"], shown["high"], shown["judge_assisted"]) == (
        pytest.approx(row["low"]),
        pytest.approx(row["high"]),
        True,
    )
    out = StringIO()
    call_command("study", "status", study.name, stdout=out)
    assert out.getvalue().splitlines()[0] == (
        f"the stop rule reads judge job {job.pk} ({job.config.label}; PPI++), fixed with the target"
    )


def test_a_page_never_stops_a_study_and_the_judge_it_shows_is_not_the_rules(staff_client):
    """Opening the dashboard with a judge job that would narrow the interval to the target writes
    nothing: the study's rule reads people alone (no judge was fixed on it), and only the periodic
    check decides."""
    study, comparisons = half_voted_with_a_judge()
    set_target(study, 0.2)  # no judge job yet: people alone
    job = agreeing_judge(study, comparisons, name="later")
    Study.objects.filter(pk=study.pk).update(target_judge_job=None)  # as if the check had not run yet
    for query in (f"?job={job.pk}", f"?job={job.pk}&fragment=1", f"?job={job.pk}&panel=agreement", ""):
        assert staff_client.get(f"/dashboard/{study.name}/{query}").status_code == 200
    assert staff_client.get(f"/dashboard/{study.name}/export/csv?job={job.pk}").status_code == 200
    study.refresh_from_db()
    assert (study.enough_at, study.target_judge_job) == (None, None), "a GET wrote nothing"
    status = study_status(study)
    assert status["judge"] is None and not status["rows"][0]["judge_assisted"]
    out = StringIO()
    call_command("study", "decide", study.name, stdout=out)
    study.refresh_from_db()
    assert study.target_judge_job == job.pk, "the first job over every comparison is recorded by the rule"
    assert out.getvalue().splitlines()[-1].startswith("decided: ")


def test_a_running_judge_job_is_not_the_judges_mean(staff_client):
    """A job still running has judged the first comparisons only: no judge-assisted bar from it,
    and the page says when there will be one."""
    study, comparisons = half_voted_with_a_judge(n_prompts=20)
    job = agreeing_judge(study, comparisons[:12], status="running")
    result = data.dashboard(study, "majority", job)
    assert result["evidence"]["assisted"] == {}
    page = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/?job={job.pk}").content, "html.parser")
    assert [r["class"] for r in page.select("#figure1 table.figure-table tbody tr")] == [["people"]]
    waits = page.select_one("#figure1 .assisted-waits").get_text()
    assert waits.startswith(f"The judge-assisted bars appear when judge job {job.pk} finishes")
    set_target(study, 0.1)
    assert study.target_judge_job is None, "a running job is not fixed on the study"


def test_an_unknown_judge_job_in_the_address_is_a_404_not_a_500(staff_client):
    study, _ = voted_study()
    for query in ("?job=abc", "?job=999999", "?job=-1"):
        assert staff_client.get(f"/dashboard/{study.name}/{query}").status_code == 404
        assert staff_client.get(f"/dashboard/{study.name}/export/csv{query}").status_code == 404

"""A study that knows when it has enough: anytime-valid intervals per baseline, a target, and
no new items once every baseline reaches it."""

import math
from io import StringIO

import pytest
from bs4 import BeautifulSoup
from django.core.management import CommandError, call_command

from evalsite.annotation import precision, services
from evalsite.annotation.models import Comparison, Study
from evalsite.dashboard.evidence import study_status
from evalsite.dashboard.tasks import check_targets
from stats.evidence import cs_half_width, cs_rho
from tests.annotation_fixtures import make_study, vote
from tests.dashboard_fixtures import recorded_verdicts

pytestmark = pytest.mark.django_db


def voted_study(wins=14, losses=6, n_prompts=40, target=None):
    study, (a, b) = make_study(n_prompts=n_prompts, baselines=("alpaca-65b",), annotators=2)
    comparisons = list(Comparison.objects.filter(study=study, is_gold=False).order_by("pk"))
    for comparison, choice in zip(comparisons, ["a"] * wins + ["b"] * losses, strict=False):
        vote(a, comparison, choice)
    if target is not None:
        Study.objects.filter(pk=study.pk).update(target_half_width=target)
        study.refresh_from_db()
    return study, (a, b)


def test_each_baselines_win_share_has_an_anytime_valid_interval():
    study, _ = voted_study()
    [row] = precision.baseline_precision(study)
    sd = math.sqrt(0.7 * 0.3 * 20 / 19)
    assert (row["n"], row["comparisons"], row["win"]) == (20, 40, pytest.approx(0.7))
    assert row["half_width"] == pytest.approx(cs_half_width(20, sd, cs_rho(40)))
    assert study_status(study)["rows"][0]["more"] is None, "no target, nothing to count down"


def test_a_study_that_reaches_its_target_hands_out_no_new_item_and_tells_staff(settings, mailoutbox, client):
    settings.STUDY_ENOUGH_EMAILS = ["lead@example.org"]
    study, (a, b) = voted_study(wins=28, losses=12, n_prompts=60, target=0.25)
    open_claim = services.claim_next(study, b)  # b is mid-item when the target is reached
    assert check_targets() == 1 and check_targets() == 0, "marked once"
    study.refresh_from_db()
    assert study.enough_at is not None
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["lead@example.org"] and "alpaca-65b: 70%" in mailoutbox[0].body
    assert services.claim_next(study, b) == open_claim, "an item already out may be finished"
    services.submit(open_claim.pk, b, "tie")
    assert services.claim_next(study, b) is None
    client.force_login(b)
    done = BeautifulSoup(client.get(f"/annotate/study/{study.name}/next").content, "html.parser")
    assert done.select_one(".done-reason").get_text().startswith(f"{study.name} has all the votes it needs")


def test_not_yet_says_about_how_many_more_votes_and_the_dashboard_says_it_too(staff_client):
    study, _ = voted_study(target=0.1)
    status = study_status(study)
    assert not status["enough"] and status["more_votes"] > 100 and study.enough_at is None
    page = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/").content, "html.parser")
    verdict = " ".join(page.select_one("#precision .verdict").get_text().split())
    assert verdict.startswith(f"Not yet: about {status['more_votes']} more voted comparisons")
    assert [td.get_text() for td in page.select("#precision table.precision td")][:3] == [
        "alpaca-65b",
        "20 of 40",
        "70%",
    ]


def test_the_study_command_shows_the_status_and_sets_the_target():
    study, _ = voted_study()
    out = StringIO()
    call_command("study", "status", study.name, stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"study {study.name} (open); target: none (manage.py study target S 0.05)"
    assert lines[2].split()[:5] == ["alpaca-65b", "20", "of", "40", "70%"]
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


def test_with_a_judge_the_study_stops_on_the_judge_assisted_interval(capsys):

    from evalsite.judging.models import JudgeConfig, JudgeJob

    study, (a, _) = make_study(n_prompts=60, baselines=("alpaca-65b",), annotators=2)
    comparisons = list(Comparison.objects.filter(study=study, is_gold=False).order_by("pk"))
    config = JudgeConfig.objects.create(name="agreeing", model="m", base_url="http://127.0.0.1:9/v1")
    job = JudgeJob.objects.create(study=study, config=config, status="done")
    for k, comparison in enumerate(comparisons):
        candidate_better = k % 10 < 7
        if k < 30:  # people voted on half, as the judge says
            vote(a, comparison, "a" if candidate_better else "b")
        recorded_verdicts(job, comparison, ("first", "second") if candidate_better else ("second", "first"))
    [people] = precision.baseline_precision(study)
    status = study_status(study)
    [row] = status["rows"]
    assert status["judge"] == job and row["judge_assisted"]
    assert row["half_width"] < 0.75 * people["half_width"], "a judge that predicts the people narrows the interval"
    assert row["win"] == pytest.approx(0.7)
    call_command("study", "status", study.name)
    assert capsys.readouterr().out.splitlines()[0] == f"with the judge's help: {config.label}, job {job.pk} (PPI++)"

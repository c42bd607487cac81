"""A sampled study: people vote on a share of the comparisons, drawn where the judge is least
sure and walked in one random order (`study sample`), and every figure weights their votes back."""

from io import StringIO

import pytest
from bs4 import BeautifulSoup
from django.core.management import CommandError, call_command

from evalsite.annotation import answers, claims
from evalsite.annotation.models import Comparison, Study
from evalsite.annotation.pages import progress_for
from evalsite.dashboard import figures
from evalsite.judging.models import JudgeConfig, JudgeJob
from tests.annotation_fixtures import make_study, vote
from tests.dashboard_fixtures import recorded_verdicts

pytestmark = pytest.mark.django_db


def judged_study(n_prompts=40, annotators=1):
    """One baseline; the judge agrees with itself in both orders on the first half of the
    comparisons and contradicts itself on the second half."""
    study, users = make_study(n_prompts=n_prompts, baselines=("alpaca-65b",), annotators=annotators)
    comparisons = list(Comparison.objects.filter(study=study, is_gold=False).order_by("pk"))
    config = JudgeConfig.objects.create(name="recorded", model="m", base_url="http://127.0.0.1:9/v1")
    job = JudgeJob.objects.create(study=study, config=config, status="done")
    for k, comparison in enumerate(comparisons):
        sure = k < n_prompts // 2
        recorded_verdicts(job, comparison, ("first", "second") if sure else ("first", "first"))
    return study, users, comparisons, job


def test_people_get_only_the_drawn_comparisons_in_the_studys_order_and_the_unsure_ones_more_often():
    study, (annotator,), comparisons, job = judged_study()
    out = StringIO()
    call_command("study", "sample", study.name, "--rate", "0.5", "--seed", "7", stdout=out)
    study.refresh_from_db()
    assert study.sampling_rate == 0.5 and study.assignment == Study.AssignmentPolicy.ADAPTIVE
    rows = list(Comparison.objects.filter(study=study, is_gold=False).order_by("pk"))
    chances = [c.sampling_probability for c in rows]
    assert sum(chances) / len(chances) == pytest.approx(0.5)
    assert min(chances[20:]) > max(chances[:20]), "the judge's self-contradictions are asked of people more"
    assert sorted(c.draw_order for c in rows) == list(range(1, 41))
    wanted = [c for c in rows if c.people_wanted]
    summary = out.getvalue().splitlines()[1].split()
    assert summary == ["alpaca-65b", str(len(wanted)), "of", "40", "drawn", "for", "people"]
    assert progress_for(study, annotator)["target"] == len(wanted), "the annotator's share: the drawn ones"

    handed = []
    while (assignment := claims.claim_next(study, annotator)) is not None:
        handed.append(Comparison.objects.get(pk=assignment.comparison_id))
        answers.submit(assignment.pk, annotator, "a")
    assert [c.pk for c in handed] == [c.pk for c in sorted(wanted, key=lambda c: c.draw_order)]

    with pytest.raises(CommandError, match="has claims or votes already"):
        call_command("study", "sample", study.name, "--rate", "0.5", stdout=StringIO())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rate", "0"], "--rate must be above 0 and at most 1"),
        (["--rate", "1.5"], "--rate must be above 0 and at most 1"),
        (["--judge", "999999"], "no judge job 999999 on study lima-study"),
    ],
)
def test_sampling_refuses_bad_input_and_writes_nothing(args, message):
    study, _, _, _ = judged_study(n_prompts=4)
    with pytest.raises(CommandError, match=message):
        call_command("study", "sample", study.name, *args, stdout=StringIO())
    assert not Comparison.objects.filter(study=study, sampling_probability__isnull=False).exists()
    assert not Comparison.objects.filter(study=study, people_wanted=False).exists()
    assert Study.objects.get(pk=study.pk).sampling_rate is None


def test_sampling_needs_a_judge():
    study, _ = make_study(n_prompts=4, baselines=("alpaca-65b",))
    with pytest.raises(CommandError, match="has no judge job: run `judge` on it first"):
        call_command("study", "sample", study.name, stdout=StringIO())


def test_figure_1_weights_a_sampled_studys_votes_back_over_the_walked_comparisons(staff_client):
    study, (a, b), comparisons, job = judged_study(n_prompts=6, annotators=2)
    plan = [  # (order, chance, drawn, a's vote)
        (1, 0.5, True, "a"),
        (2, 1.0, True, "b"),
        (3, 0.5, False, None),
        (4, 1.0, True, "a"),
        (5, 1.0, True, "a"),
        (6, 1.0, True, None),  # drawn, no vote yet: the walk stops before it
    ]
    for comparison, (order, chance, drawn, _) in zip(comparisons, plan, strict=True):
        comparison.draw_order, comparison.sampling_probability, comparison.people_wanted = order, chance, drawn
        comparison.save()
    Study.objects.filter(pk=study.pk).update(sampling_rate=0.8)
    study.refresh_from_db()
    for comparison, (*_, choice) in zip(comparisons, plan, strict=True):
        if choice:
            vote(a, comparison, choice)
    [people, assisted] = figures.build(study, job=job).human_table()
    # Horvitz-Thompson over the five walked: wins 1/0.5 + 0 + 0 + 1 + 1 = 4 -> 0.8; losses 1 -> 0.2
    assert (people["annotator"], people["win"], people["loss"], people["tie"]) == (
        "people, weighted",
        pytest.approx(0.8),
        pytest.approx(0.2),
        pytest.approx(0.0),
    )
    assert (assisted["annotator"], assisted["n"], assisted["judge_only"]) == ("people, judge-assisted", 4, 1)
    # counted as they stand, the four votes would say 75% (3 of 4): the draw is not the study
    assert people["win"] != pytest.approx(0.75)
    page = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/?job={job.pk}").content, "html.parser")
    first = page.select("#figure1 table.figure-table tbody tr")[0]
    assert first.select("td")[-1].get_text(strip=True) == "people, weighted back by their chances (a sampled study)"
    assert first.select("td")[2].get_text(strip=True) == "80%"
    out = StringIO()
    call_command("study", "status", study.name, stdout=out)
    assert out.getvalue().splitlines()[0].startswith("sampled: people vote on about 80% of the comparisons")

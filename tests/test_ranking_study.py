"""A ranking study end to end without a browser: created by the command, every pair of its systems
on every prompt, people voting through the claim path, the judge over every pair in both orders,
the rankings (people + judge, people alone, the judge alone) with rank-sets, and the stop once
the question is settled."""

from __future__ import annotations

import random
import re

import pytest
from bs4 import BeautifulSoup
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from evalsite.annotation import answers, claims, studies
from evalsite.annotation.models import Comparison, Study
from evalsite.catalog.models import Prompt, PromptSet, Response, System
from evalsite.dashboard import ranking
from evalsite.dashboard.tasks import check_targets
from tests.annotation_fixtures import member as annotator
from tests.judge_fixtures import judge_config
from tests.openai_stub import OpenAIStub
from tests.test_reading_never_writes import digest

pytestmark = pytest.mark.django_db(transaction=True)

LEVEL = re.compile(r"level (\d+)")
# the ranking page's columns once a judge job is usable
RANKING_COLUMNS = [
    "system",
    "rank-set, people + judge",
    "rank-set, people alone",
    "rank-set, people alone, style held equal",
    "rank-set, the judge alone",
    "strength",
]


def quality(k: int, i: int) -> int:
    """System k's answer to prompt i: 30 k plus a prompt effect of 0 to 50 (so a weaker system
    beats a stronger one on some prompts, as people and judges see it), plus k (never equal)."""
    return 10 * (3 * k + random.Random(i * 1000 + k).randrange(6)) + k


def make_systems(n_systems: int = 4, n_prompts: int = 30, set_name: str = "rank-set") -> list[System]:
    """Systems whose answers say their quality on each prompt (``quality``; higher is better): the
    higher the system's number, the better it answers on the whole."""
    prompt_set = PromptSet.objects.create(name=set_name)
    systems = [System.objects.create(name=f"sys-{k}", backend="imported") for k in range(n_systems)]
    for i in range(n_prompts):
        prompt = Prompt.objects.create(
            prompt_set=prompt_set, external_id=f"q{i}", messages=[{"role": "user", "content": f"Question {i}?"}]
        )
        for k, system in enumerate(systems):
            Response.objects.create(
                system=system, prompt=prompt, text=f"An answer at level {quality(k, i)} to question {i}."
            )
    return systems


def level(text: str) -> int:
    return int(LEVEL.search(text).group(1))


def level_judge(body: dict) -> str:
    """Prefers the higher level, whichever side it is on."""
    text = body["messages"][0]["content"]
    a = re.search(r"Answer A:\n(.*?)\n\nAnswer B:", text, re.S).group(1)
    b = text.split("Answer B:\n", 1)[1]
    return "Answer A is significantly better." if level(a) > level(b) else "Answer B is significantly better."


def higher_level(first: Response, second: Response, rng: random.Random) -> bool:
    return level(first.text) > level(second.text)


def vote_until(
    study: Study, user: User, votes: int, rng: random.Random, noise: float = 0.0, prefers=higher_level
) -> list[Comparison]:
    """The annotator takes items through the claim path and picks the higher level (a gold check's
    real answer over its decoy; ``prefers`` says whether a person prefers the first answer), with a
    ``noise`` chance of the other; returns the pairs voted."""
    voted = []
    for _ in range(votes):
        assignment = claims.claim_next(study, user, rng)
        if assignment is None:
            break
        comparison = Comparison.objects.select_related("candidate_response", "baseline_response").get(
            pk=assignment.comparison_id
        )
        if comparison.is_gold:
            first_better = True
        else:
            first_better = prefers(comparison.candidate_response, comparison.baseline_response, rng)
        if rng.random() < noise:
            first_better = not first_better
        left_is_first = assignment.candidate_on_left
        answers.submit(assignment.pk, user, "a" if first_better == left_is_first else "b")
        voted.append(comparison)
    return voted


def test_the_command_makes_every_pair_on_every_prompt_in_one_random_order(capsys):
    make_systems(n_systems=4, n_prompts=10)
    call_command("create_study", kind="ranking", systems="sys-0,sys-1,sys-2,sys-3", prompts="rank-set", gold_rate=0)
    out = capsys.readouterr().out
    study = Study.objects.get()
    assert "open with 60 comparisons (6 pairs of 4 systems)" in out and "the top system" in out
    assert study.kind == "ranking" and study.ranking_goal == "top" and study.assignment == "adaptive"
    rows = list(Comparison.objects.filter(study=study).select_related("candidate_response", "first_system"))
    pairs = {(c.first_system.name, c.baseline.name) for c in rows}
    assert len(pairs) == 6 and all(a < b for a, b in pairs)
    assert all(c.candidate_response.system_id == c.first_system_id for c in rows)
    assert sorted(c.draw_order for c in rows) == list(range(1, 61))
    in_order = [c.prompt.external_id for c in sorted(rows, key=lambda c: c.draw_order)][:20]
    assert in_order != sorted(in_order), "walked in a random order, not prompt by prompt"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"systems": "sys-0,sys-1"}, "needs three systems or more"),
        ({"systems": "sys-0,sys-1,sys-0"}, "a system is named twice"),
        ({"systems": "sys-0,sys-1,sys-2", "candidate": "sys-0"}, "takes --systems A,B,C"),
        ({"systems": "sys-0,sys-1,sys-2", "goal": "top3"}, "goal top3 needs more than 3 systems"),
        ({"systems": "sys-0,sys-1,nope"}, "nope"),
    ],
)
def test_a_ranking_study_that_cannot_be_made_is_refused_and_nothing_is_left(options, message):
    make_systems(n_systems=3, n_prompts=2)
    with pytest.raises(CommandError, match=message):
        call_command("create_study", kind="ranking", prompts="rank-set", **options)
    assert not Study.objects.exists() and not Comparison.objects.exists()


def seeded_study(n_systems: int, n_prompts: int, seed: int) -> Study:
    """A ranking study whose random order is drawn from ``seed`` (the command draws a fresh one):
    with the votes' generator seeded too, a run is the same every time."""
    systems = make_systems(n_systems=n_systems, n_prompts=n_prompts)
    study = studies.create_ranking_study("ranked", systems, PromptSet.objects.get(), gold_rate=0)
    studies.start_study(study, random.Random(seed))
    return study


def test_people_and_judge_rank_the_systems_and_the_study_stops_when_the_top_is_settled(staff_client, settings, capsys):
    settings.ADAPTIVE_REFRESH_SECONDS = 0  # the active pairs from every vote in, not from a clock's moment
    rng = random.Random(7)
    study = seeded_study(4, 120, seed=7)
    people = [annotator(study, f"ann{k}") for k in range(3)]
    for user in people:
        vote_until(study, user, 12, rng, noise=0.1)
    result = ranking.ranking(study)
    assert result.combined is None and result.judge is None and result.people.votes == 36
    shown = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/").content, "html.parser")
    headers = [th.get_text(strip=True) for th in shown.select("#rank-table th")]
    assert headers == ["system", "rank-set, people alone", "rank-set, people alone, style held equal", "strength"]
    assert "manage.py judge --study" in shown.select_one("#answer").get_text()

    with OpenAIStub(responder=level_judge) as stub:
        judge_config(stub)
        call_command("judge", study=study.name, config="gpt-4-stub", yes=True, foreground=True)
    result = ranking.ranking(study)
    assert result.combined is not None and result.judge is not None
    assert [row["system"] for row in result.rows()][0] == "sys-3"
    # the judge alone orders the levels (its strengths fall with them); a pair all one way is
    # known only so well, so its rank-sets stay honest rather than single ranks
    judge_theta = {row["system"]: row["judge"]["theta"] for row in result.rows()}
    assert judge_theta["sys-3"] > judge_theta["sys-2"] > judge_theta["sys-1"] > judge_theta["sys-0"]
    shown = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/").content, "html.parser")
    headers = [th.get_text(strip=True) for th in shown.select("#rank-table th")]
    assert headers == RANKING_COLUMNS
    cells = [[td.get_text(strip=True) for td in tr.select("td")] for tr in shown.select("#rank-table tr")[1:]]
    assert [c[0] for c in cells][0] == "sys-3" and len(cells) == 4
    for row in cells:  # each rank-set holds the system's true rank (its level counted from the top)
        true_rank = 4 - int(row[0][-1])
        for cell in row[1:4]:  # people + judge, people alone, people alone with style held equal
            low, _, high = cell.partition("-")
            assert int(low) <= true_rank <= int(high or low), (row, cells)

    # reading (the page, the exports, `study status`) changes no row; `study target` is refused
    before = digest()
    for url in ("", "export/json", "export/csv"):
        assert staff_client.get(f"/dashboard/{study.name}/{url}").status_code == 200
    call_command("study", "status", study.name)
    assert digest() == before
    exported = staff_client.get(f"/dashboard/{study.name}/export/json").json()
    assert [row["system"] for row in exported["systems"]] == [row["system"] for row in result.rows()]
    assert exported["judge_job"] == result.job.pk and exported["settled"] is False
    with pytest.raises(CommandError, match="is a ranking study: it stops once its rank-sets settle"):
        call_command("study", "target", study.name, "0.05")

    # votes until the stop check says the top is settled; the study then starts no new comparison
    for _ in range(25):
        if check_targets():
            break
        for user in people:
            vote_until(study, user, 10, rng, noise=0.1)
    study.refresh_from_db()
    assert study.enough_at is not None and study.target_judge_job is not None
    result = ranking.ranking(study)
    assert result.settled and result.answer == "settled: the best system is sys-3"
    assert result.judge_worth is not None and result.judge_worth > 0
    call_command("study", "status", study.name)
    out = capsys.readouterr().out
    assert "settled: the best system is sys-3" in out and "rank-sets (95%, every look) from people + judge job" in out
    started = set(Comparison.objects.filter(study=study, judgments_done__gt=0).values_list("pk", flat=True))
    late = annotator(study, "late")
    assert all(c.pk in started for c in vote_until(study, late, 5, rng)), "only started comparisons are finished"


def test_active_pairs_put_the_votes_where_the_top_is_decided(settings):
    """With the top decided between two systems, the claims go to their pair (and 10% anywhere)."""
    settings.ADAPTIVE_REFRESH_SECONDS = 0
    rng = random.Random(3)
    study = seeded_study(5, 40, seed=3)
    user = annotator(study, "ann")
    first = vote_until(study, user, 60, rng)
    pairs = ranking.active_pairs(study)
    names = dict(System.objects.values_list("pk", "name"))
    assert pairs and all(names[b] == "sys-4" or names[a] == "sys-4" for a, b in pairs), [
        (names[a], names[b]) for a, b in pairs
    ]
    later = vote_until(study, annotator(study, "ann2"), 60, rng)
    involving_leader = sum("sys-4" in (c.first_system.name, c.baseline.name) for c in later)
    assert involving_leader / len(later) > 0.7, involving_leader
    assert len(first) == 60


def test_a_ranking_study_may_offer_both_are_bad_as_a_tie_reported_apart(staff_client):
    """`create_study --kind ranking --both-bad`: the annotator's page has a fourth button, "Both are
    bad"; it is recorded as a tie marked so, counted as a tie in the ranking and reported apart. A
    study without it shows three buttons and refuses the fourth; a pairwise study cannot have it."""
    from django.test import Client

    from evalsite.annotation.models import HumanJudgment

    make_systems(n_systems=3, n_prompts=4)
    call_command("create_study", kind="ranking", systems="sys-0,sys-1,sys-2", prompts="rank-set", gold_rate=0,
                 name="four", both_bad=True)  # fmt: skip
    call_command("create_study", kind="ranking", systems="sys-0,sys-1,sys-2", prompts="rank-set", gold_rate=0,
                 name="three")  # fmt: skip
    four, three = Study.objects.get(name="four"), Study.objects.get(name="three")
    assert (four.both_bad_choice, three.both_bad_choice) == (True, False)
    with pytest.raises(CommandError, match="--both-bad is a ranking study's"):
        call_command("create_study", candidate="sys-0", baselines="sys-1", prompts="rank-set", both_bad=True)
    assert Study.objects.count() == 2
    person = annotator(four, "ann")
    three.annotators.add(person)
    client = Client()  # the annotator's browser (staff_client is the staff's)
    client.force_login(person)

    def buttons(name: str) -> tuple[str, list[str]]:
        reply = client.get(f"/annotate/study/{name}/next", follow=True)
        page = BeautifulSoup(reply.content, "html.parser")
        form = page.select_one("form[action$='/judge']")
        return form["action"], [b["value"] for b in form.select(".choices button")]

    action, values = buttons("four")
    assert values == ["a", "b", "tie", "both_bad"]
    assert client.post(action, {"choice": "both_bad"}).status_code == 302
    judgment = HumanJudgment.objects.get(comparison__study=four)
    assert (judgment.outcome, judgment.picked_side, judgment.both_bad) == ("tie", "none", True)
    assert Comparison.objects.get(pk=judgment.comparison_id).votes_tie == 1
    result = ranking.ranking(four, None)
    assert result.both_bad == 1 and result.main.votes == 1
    page = BeautifulSoup(staff_client.get("/dashboard/four/").content, "html.parser")
    assert page.select_one("#both-bad").get_text() == "1"

    action, values = buttons("three")
    assert values == ["a", "b", "tie"]
    refused = client.post(action, {"choice": "both_bad"}, follow=True)
    said = [m.get_text(strip=True) for m in BeautifulSoup(refused.content, "html.parser").select("p.message")]
    assert any("this study has no 'both are bad'" in m for m in said), said
    assert not HumanJudgment.objects.filter(comparison__study=three).exists()


def test_the_page_shows_the_people_ranking_with_style_held_equal_where_people_favour_length(staff_client):
    """sys-0 answers worst but mostly at length, the others mostly briefly, and people
    pick the longer answer 80% of the time when the lengths differ: the people's plain ranking puts
    sys-0 first; held at equal style it falls below sys-1 and sys-2, and the page says how much
    twice the length moves a person."""
    rng = random.Random(11)
    prompt_set = PromptSet.objects.create(name="styled")
    systems = [System.objects.create(name=f"sys-{k}", backend="imported") for k in range(3)]
    for i in range(60):
        prompt = Prompt.objects.create(
            prompt_set=prompt_set, external_id=f"q{i}", messages=[{"role": "user", "content": f"Question {i}?"}]
        )
        for k, system in enumerate(systems):
            long = rng.random() < (0.8 if k == 0 else 0.2)
            text = f"An answer at level {quality(k, i)} to question {i}."
            if long:
                text += "\n\n" + " ".join(f"A point made at some length, number {j}." for j in range(12))
            Response.objects.create(system=system, prompt=prompt, text=text)

    def longer_mostly(first: Response, second: Response, voter: random.Random) -> bool:
        a, b = len(first.text), len(second.text)
        if abs(a - b) > 100 and voter.random() < 0.8:
            return a > b
        return level(first.text) > level(second.text)

    study = studies.create_ranking_study("styled", systems, prompt_set, gold_rate=0)
    studies.start_study(study, random.Random(11))
    vote_until(study, annotator(study, "ann"), 180, rng, prefers=longer_mostly)
    result = ranking.ranking(study, style=True)
    plain = {row["system"]: row["people"]["theta"] for row in result.rows()}
    held = {row["system"]: row["style"]["theta"] for row in result.rows()}
    assert plain["sys-0"] > plain["sys-1"], plain
    assert held["sys-0"] < held["sys-1"] < held["sys-2"], held
    length = next(e for e in result.style_effects if e["feature"] == "length")
    assert length["low"] > 5, result.style_effects  # twice the length: well over 5 points, surely
    assert ranking.ranking(study).styled is None, "the claims' and the stop's ranking never read style"

    page = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/").content, "html.parser")
    headers = [th.get_text(strip=True) for th in page.select("#rank-table th")]
    assert "rank-set, people alone, style held equal" in headers
    features = [td.get_text(strip=True) for td in page.select("#style-effects td.feature")]
    assert features == ["length"]  # no answer has headers, lists or bold: those cannot be fitted
    exported = staff_client.get(f"/dashboard/{study.name}/export/json").json()
    assert {row["system"]: row["style"]["theta"] for row in exported["systems"]} == pytest.approx(held)
    assert [e["feature"] for e in exported["style_effects"]] == [e["feature"] for e in result.style_effects]
    csv_header = staff_client.get(f"/dashboard/{study.name}/export/csv").content.decode().splitlines()[0]
    assert "style_rank_low" in csv_header.split(",")

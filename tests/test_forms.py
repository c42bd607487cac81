"""What the pages do with input that is not what they expect: one named error, nothing written.
One behaviour per test; the negative cases named."""

import pytest
from bs4 import BeautifulSoup
from django.contrib.auth.models import User
from django.test import Client

from evalsite.annotation import claims
from evalsite.annotation.models import Assignment, HumanJudgment, Study
from evalsite.catalog.models import PromptSet, System
from evalsite.finetune.models import TrainingDataset, TrainingExample
from tests.annotation_fixtures import make_study

pytestmark = pytest.mark.django_db


def messages_on(reply) -> list[str]:
    return [p.get_text() for p in BeautifulSoup(reply.content, "html.parser").select("p.message.error")]


def test_a_choice_that_is_not_one_of_the_three_is_refused_and_nothing_recorded():
    study, (a, _) = make_study(n_prompts=1, baselines=("alpaca-65b",))
    client = Client()
    client.force_login(a)
    claim = claims.claim_next(study, a)
    reply = client.post(f"/annotate/item/{claim.pk}/judge", {"choice": "both"}, follow=True)
    assert messages_on(reply) == ["choose A, B or neither"]
    assert not HumanJudgment.objects.exists()
    claim.refresh_from_db()
    assert claim.status == Assignment.Status.CLAIMED


def test_a_reason_longer_than_the_page_allows_is_refused():
    study, (a, _) = make_study(n_prompts=1, baselines=("alpaca-65b",))
    client = Client()
    client.force_login(a)
    claim = claims.claim_next(study, a)
    reply = client.post(f"/annotate/item/{claim.pk}/judge", {"choice": "a", "reason": "x" * 2001}, follow=True)
    assert messages_on(reply) == ["Ensure this value has at most 2000 characters (it has 2001)."]
    assert not HumanJudgment.objects.exists()


def test_creating_a_study_with_a_bad_overlap_names_the_field_and_creates_nothing(staff_client):
    study, _ = make_study(n_prompts=1, start=False)
    form = {
        "name": "second",
        "candidate": study.candidate.pk,
        "baselines": [s.pk for s in study.baselines.all()],
        "prompt_set": study.prompt_set.pk,
        "overlap": "three",
    }
    reply = staff_client.post("/annotate/studies/", form, follow=True)
    assert messages_on(reply) == ["overlap: Enter a whole number."]
    assert not Study.objects.filter(name="second").exists()


def test_creating_a_study_with_a_system_that_does_not_exist_names_the_field(staff_client):
    make_study(n_prompts=1, start=False)
    missing = System.objects.order_by("-pk").first().pk + 100
    form = {"name": "third", "candidate": missing, "baselines": [missing], "prompt_set": PromptSet.objects.get().pk}
    reply = staff_client.post("/annotate/studies/", form, follow=True)
    assert messages_on(reply)[0].startswith("candidate: Select a valid choice.")
    assert not Study.objects.filter(name="third").exists()


def test_the_new_study_form_offers_no_gold_checks_system_and_refuses_one_posted(staff_client):
    study, _ = make_study(n_prompts=4, baselines=("alpaca-65b",), gold_rate=0.5)  # its start made decoys
    decoy = System.objects.get(name__startswith="gold-decoy-")
    page = BeautifulSoup(staff_client.get("/annotate/studies/").content, "html.parser")
    offered = [option.get_text() for option in page.select("select[name=baselines] option")]
    assert "alpaca-65b" in offered and not [name for name in offered if name.startswith("gold-")]
    form = {"name": "with-decoy", "kind": "pairwise", "candidate": study.candidate.pk, "baselines": [decoy.pk]}
    reply = staff_client.post("/annotate/studies/", {**form, "prompt_set": study.prompt_set.pk}, follow=True)
    assert messages_on(reply)[0].startswith("baselines: Select a valid choice.")
    assert not Study.objects.filter(name="with-decoy").exists()


def test_an_invite_without_an_address_is_refused_and_nobody_is_created(staff_client, mailoutbox):
    study, _ = make_study(n_prompts=1, annotators=0)
    users = User.objects.count()
    reply = staff_client.post(f"/annotate/studies/{study.name}/invite", {"email": "rater-at-example"}, follow=True)
    assert messages_on(reply) == ["give an e-mail address"]
    assert (User.objects.count(), len(mailoutbox)) == (users, 0)


def test_excluding_an_unknown_annotator_is_a_404(staff_client):
    study, _ = make_study(n_prompts=1)
    reply = staff_client.post(f"/annotate/studies/{study.name}/exclude", {"user_id": 99999, "exclude": "1"})
    assert reply.status_code == 404 and not study.excluded.exists()


def test_the_examples_list_pages_through_and_a_page_past_the_end_shows_the_last(staff_client):
    dataset = TrainingDataset.objects.create(name="many")
    TrainingExample.objects.bulk_create(
        TrainingExample(
            dataset=dataset,
            external_id=f"e{i:03d}",
            source="ours",
            messages=[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}],
        )
        for i in range(120)
    )

    def ids(query: str) -> list[str]:
        page = BeautifulSoup(staff_client.get(f"/training/datasets/many/{query}").content, "html.parser")
        return [td.get_text() for td in page.select("table.examples tr.example td.id")]

    assert ids("") == [f"e{i:03d}" for i in range(50)]
    assert ids("?page=3") == [f"e{i:03d}" for i in range(100, 120)]
    assert ids("?page=99") == ids("?page=3") and ids("?page=abc") == ids("")


def test_create_study_plan_prints_the_votes_and_creates_nothing():
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command(
        "create_study", candidate="x", baselines="a,b", prompts="p", plan=True, judge_agreement=0.75, stdout=out
    )
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("2 baseline(s), each win share near 50% to +-5 points")
    assert [line.split()[0] for line in lines[1:]] == ["people", "people", "judge-assisted"]
    assert "385 votes a baseline" in lines[1] and not Study.objects.exists()
    assert not [line for line in lines if "too few" in line], "no such prompt set: nothing to say about its size"
    # a set that cannot supply the votes is said to be too small, with its size
    make_study(n_prompts=61, baselines=("alpaca-65b",), name="small", start=False)
    out = StringIO()
    call_command("create_study", candidate="x", baselines="a", prompts="small-prompts", plan=True, stdout=out)
    said = "small-prompts has 61 prompts, so at most 61 comparisons a baseline: too few for +-5 points"
    assert said in out.getvalue()
    with pytest.raises(CommandError, match="three shares that add up to 1"):
        call_command("create_study", candidate="x", baselines="a", prompts="p", plan=True, expected="0.5,0.5,0.5")


def test_the_create_page_plans_the_votes_and_names_a_bad_input(staff_client):
    page = BeautifulSoup(
        staff_client.get(
            "/annotate/studies/?baselines=2&win=0.5&tie=0.2&target=0.05&agreement=0.75&seconds_per_vote=60&pay_per_hour=12"
        ).content,
        "html.parser",
    )
    rows = [[c.get_text() for c in tr.select("th, td")] for tr in page.select("#plan table.plan tbody tr")]
    assert [r[0].split(",")[0] for r in rows] == ["people only", "people only", "judge-assisted (agreement 75%)"]
    assert rows[0][1:3] == ["385", "770"] and rows[0][4] == "154.00"
    bad = BeautifulSoup(
        staff_client.get(
            "/annotate/studies/?baselines=2&win=0.9&tie=0.2&target=0.05&seconds_per_vote=60&pay_per_hour=12"
        ).content,
        "html.parser",
    )
    assert bad.select_one("#plan p.message.error").get_text() == "the expected win and tie shares add up to more than 1"
    assert not bad.select("#plan table.plan")

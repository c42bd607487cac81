"""A private arena without a browser: created by its command, a person's prompt checked as an
import's would be, answered by two anonymous systems through a real live worker, follow-ups,
the vote, the names after it, the vote in the ranking, "both are bad" apart, and staff's review."""

from __future__ import annotations

import csv
import io
import time

import pytest
from bs4 import BeautifulSoup
from django.core.management import CommandError, call_command

from evalsite.annotation.models import Comparison, HumanJudgment, Study
from evalsite.arena import services
from evalsite.arena.models import Battle
from evalsite.catalog.models import Prompt, Response, System
from evalsite.dashboard import ranking
from tests.annotation_fixtures import member as person
from tests.arena_fixtures import arena_responder, arena_systems
from tests.openai_stub import OpenAIStub

pytestmark = pytest.mark.django_db(transaction=True)
NAMES = ("alpha", "bravo", "charlie")


def answered(battle: Battle, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not services.answered(battle):
        assert time.monotonic() < deadline, "the live worker did not answer both"
        time.sleep(0.05)


def page(client, url: str) -> BeautifulSoup:
    return BeautifulSoup(client.get(url).content, "html.parser")


def test_the_command_opens_an_arena_and_refuses_what_cannot_be_one(capsys):
    with OpenAIStub() as stub:
        arena_systems(stub)
    System.objects.create(name="old", backend="imported")
    call_command("create_arena", systems="alpha,bravo,charlie", topics="coding, writing", review=True)
    study = Study.objects.get()
    out = capsys.readouterr().out
    assert study.kind == "arena" and study.status == "open" and study.topics == ["coding", "writing"]
    assert study.prompt_set.name == "arena-alpha-bravo-charlie-prompts" and "moderation" in out
    for options, message in [
        ({"systems": "alpha"}, "two systems or more"),
        ({"systems": "alpha,old"}, "old only have imported responses"),
        ({"systems": "alpha,bravo", "name": "arena-alpha-bravo-charlie"}, "exists"),
    ]:
        with pytest.raises(CommandError, match=message):
            call_command("create_arena", **options)
    with pytest.raises(CommandError, match="create_arena"):
        call_command("create_study", kind="arena", systems="alpha,bravo")
    assert Study.objects.count() == 1


def test_a_battle_from_prompt_to_ranking(client, live_worker):
    with OpenAIStub(responder=arena_responder) as stub:
        arena_systems(stub)
        call_command("create_arena", systems=",".join(NAMES), name="arena")
        study = Study.objects.get()
        someone = person(study, "ann")
        client.force_login(someone)
        # the prompt is checked as a prompt file's line would be
        error = client.post("/arena/arena/", {"prompt": "   "}, follow=True)
        assert "the prompt is empty" in BeautifulSoup(error.content, "html.parser").select_one(".message.error").text
        reply = client.post("/arena/arena/", {"prompt": "How do tides work?"})
        battle = Battle.objects.get()
        assert reply["Location"] == f"/arena/battle/{battle.pk}/"
        while_writing = client.get(reply["Location"]).content.decode()
        assert not any(name in while_writing for name in NAMES), "no system's name before the vote"
        # a second prompt waits for the vote on the first
        again = client.post("/arena/arena/", {"prompt": "And the moon?"})
        assert again["Location"] == f"/arena/battle/{battle.pk}/" and Battle.objects.count() == 1
        answered(battle)
        left = client.get(f"/arena/battle/{battle.pk}/left/1.json").json()
        assert left["state"] == "done" and "answer 1 to: How do tides work?" in left["text"]
        assert set(left) == {"state", "text", "error"}, "the turn's JSON names no system"
        # a follow-up goes to both, then the vote; the names only after it
        client.post(f"/arena/battle/{battle.pk}/follow-up", {"message": "Why twice a day?"})
        answered(battle)
        shown = page(client, f"/arena/battle/{battle.pk}/")
        assert len(shown.select(".exchange")) == 2 and shown.select_one("#revealed") is None
        assert not any(name in str(shown) for name in NAMES)
        client.post(f"/arena/battle/{battle.pk}/vote", {"choice": "a"})
    battle.refresh_from_db()
    shown = page(client, f"/arena/battle/{battle.pk}/")
    left_name = (battle.first_system if battle.first_on_left else battle.second_system).name
    assert shown.select_one("#name-a").text == left_name and shown.select_one("#picked").text == "A (left)"
    assert battle.outcome == ("first" if battle.first_on_left else "second")
    # the prompt is in the collected set, the answers are responses, the vote a counted comparison
    prompt = Prompt.objects.get(prompt_set=study.prompt_set)
    assert (
        prompt.source == "arena" and prompt.text == "How do tides work?" and prompt.follow_ups == ["Why twice a day?"]
    )
    comparison = Comparison.objects.get(study=study)
    assert comparison.completed_at is not None and comparison.first_system == battle.first_system
    assert {r.system for r in Response.objects.filter(prompt=prompt)} == {battle.first_system, battle.second_system}
    assert all(len(r.turns) == 1 for r in Response.objects.filter(prompt=prompt))
    # the left answer won: the first system's when it was on the left
    won = (comparison.votes_candidate, comparison.votes_baseline)
    assert won == ((1, 0) if battle.first_on_left else (0, 1)) and HumanJudgment.objects.get().annotator == someone
    result = ranking.ranking(study)
    assert result.people.votes == 1
    # another person cannot see the battle
    client.force_login(person(study, "other"))
    assert client.get(f"/arena/battle/{battle.pk}/").status_code == 404
    assert client.get(f"/arena/battle/{battle.pk}/left/1.json").status_code == 404


def test_both_bad_is_a_tie_reported_apart_and_a_reviewed_prompt_counts_once_approved(client, staff_client, live_worker):
    with OpenAIStub(responder=arena_responder) as stub:
        arena_systems(stub)
        call_command("create_arena", systems=",".join(NAMES), name="arena", review=True, topics="science,cooking")
        study = Study.objects.get()
        people = [person(study, f"p{k}") for k in range(2)]
        rejected_prompt = "Tell me something rude about my neighbour."
        battles = []
        for someone, text in zip(people, ("Why is the sky blue?", rejected_prompt), strict=True):
            with pytest.raises(services.ArenaError, match="pick a topic: science, cooking"):
                services.start_battle(study, someone, text)
            battles.append(services.start_battle(study, someone, text, "science"))
        for battle in battles:
            answered(battle)
            services.vote(battle, "both_bad")
    assert not Comparison.objects.filter(study=study).exists(), "nothing counts before review"
    queue = BeautifulSoup(staff_client.get("/arena/arena/moderation/").content, "html.parser")
    assert [td.text for td in queue.select("#pending td.prompt")] == ["Why is the sky blue?", rejected_prompt]
    staff_client.post("/arena/arena/moderation/", {"battle": battles[0].pk, "decision": "approve"})
    staff_client.post("/arena/arena/moderation/", {"battle": battles[1].pk, "decision": "reject"})
    comparison = Comparison.objects.get(study=study)
    assert comparison.votes_tie == 1 and HumanJudgment.objects.get().both_bad
    assert list(Prompt.objects.filter(prompt_set=study.prompt_set).values_list("messages", flat=True)) == [
        [{"role": "user", "content": "Why is the sky blue?"}]
    ]
    assert ranking.ranking(study).both_bad == 1
    shown = BeautifulSoup(staff_client.get("/dashboard/arena/").content, "html.parser")
    assert shown.select_one("#both-bad").text == "1"
    with pytest.raises(services.ArenaError, match="is rejected"):
        services.review(Battle.objects.get(pk=battles[1].pk), approve=True)


def test_a_crowd_participant_brings_prompts_to_the_arena_up_to_the_quota_then_gets_the_code(client, live_worker):
    """A Prolific link on an arena: the participant arrives, is sent to the arena, brings a prompt
    per battle and votes; after the quota's battles the arena sends them to the completion code.
    A screening block cannot be asked of an arena (it has no gold checks)."""
    from evalsite.crowd import services as crowd
    from evalsite.crowd.models import Participant

    with OpenAIStub(responder=arena_responder) as stub:
        arena_systems(stub)
        call_command("create_arena", systems=",".join(NAMES), name="arena")
        study = Study.objects.get()
        with pytest.raises(crowd.CrowdError, match="arena is an arena: people bring their own prompts"):
            crowd.create_link(study, quota=2, screening_items=1)
        link = crowd.create_link(study, quota=2)
        query = {"PROLIFIC_PID": "a" * 24, "STUDY_ID": "s" * 24, "SESSION_ID": "session1"}
        reply = client.get(f"/s/{link.token}/", query, follow=True)
        assert reply.redirect_chain[-1][0] == "/arena/arena/"
        for k, prompt in enumerate(("How do tides work?", "Why is the sky blue?"), start=1):
            shown = page(client, "/arena/arena/")
            assert shown.select_one("#crowd-progress").get_text().startswith(f"Battle {k} of 2")
            client.post("/arena/arena/", {"prompt": prompt})
            battle = Battle.objects.get(study=study, voted_at__isnull=True)
            answered(battle)
            client.post(f"/arena/battle/{battle.pk}/vote", {"choice": "a"})
        participant = Participant.objects.get()
        assert crowd.stage(participant).done == 2
        end = client.get("/arena/arena/", follow=True)
        assert end.redirect_chain[-1][0] == f"/s/{link.token}/next"
        assert end.templates[0].name == "crowd/end.html" and end.context["code"] == link.completion_code
        participant.refresh_from_db()
        assert participant.status == "completed"
        # past the quota, no third battle starts
        client.post("/arena/arena/", {"prompt": "One more?"})
        assert Battle.objects.filter(study=study).count() == 2
    assert ranking.ranking(study).people.votes == 2
    exported = next(csv.DictReader(io.StringIO(crowd.export_csv(link))))
    assert (exported["participant_id"], exported["status"], exported["items_done"]) == ("a" * 24, "completed", "2")

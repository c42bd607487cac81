"""In Chromium: two people in the arena at once. Each types a prompt and gets a pair of their own;
both answers stream in front of them (the first words shown before the last is written), they
vote, the systems' names appear only then, the prompts join the collected set and the votes the
ranking staff read."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from playwright.sync_api import expect

from evalsite.annotation.models import Comparison, Study
from evalsite.arena.models import Battle
from evalsite.catalog.models import Prompt
from tests.annotation_fixtures import member as person
from tests.arena_fixtures import arena_responder, arena_systems
from tests.browser import ARTIFACTS, browser, login
from tests.openai_stub import OpenAIStub

NAMES = ("alpha", "bravo", "charlie")


@pytest.mark.django_db(transaction=True)
def test_in_chromium_two_people_battle_at_once_and_their_votes_rank_the_systems(live_server, live_worker, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with OpenAIStub(responder=arena_responder, stream_delay=0.3) as stub:
        arena_systems(stub)
        call_command("create_arena", systems=",".join(NAMES), name="arena")
        study = Study.objects.get()
        for name in ("ann", "bob"):
            person(study, name)
        User.objects.create_superuser("chief", "chief@example.org", "chief-password-1")
        with browser() as chromium:
            pages = {}
            for name in ("ann", "bob"):
                page = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
                login(page, live_server.url, name, f"pw-{name}-secret", "/arena/arena/")
                page.goto(f"{live_server.url}/arena/arena/")
                pages[name] = page
            questions = {"ann": "How do tides work?", "bob": "What makes bread rise?"}
            for name, page in pages.items():  # both ask before either answer is done
                page.fill("#id_prompt", questions[name])
                page.click("#send")
            for name, page in pages.items():
                streaming = page.locator("#answer-a-1 .streaming")
                expect(streaming).to_contain_text("here is answer 1", timeout=20_000)
                # seen while it is written: a part of the answer, the vote not yet possible
                words = len(streaming.inner_text().split())
                assert (
                    0
                    < words
                    < len(
                        arena_responder(
                            {"model": "model-a", "messages": [{"role": "user", "content": questions[name]}]}
                        ).split()
                    )
                )
                assert page.locator("#vote-form button[value=a]").is_disabled()
                html = page.content()
                assert not any(system in html for system in NAMES), "no system's name before the vote"
            pages["ann"].screenshot(path=str(ARTIFACTS / "arena-writing.png"), full_page=True)
            for name, page in pages.items():
                expect(page.locator("#vote-form button[value=a]")).to_be_enabled(timeout=30_000)
                assert questions[name] in page.locator("#answer-a-1").inner_text()
                page.click("#vote-form button[value=a]" if name == "ann" else "#vote-form button[value=b]")
                expect(page.locator("#revealed")).to_be_visible()
                revealed = [page.locator(f"#name-{x}").inner_text() for x in "ab"]
                assert set(revealed) <= set(NAMES) and revealed[0] != revealed[1]
            pages["ann"].screenshot(path=str(ARTIFACTS / "arena-revealed.png"), full_page=True)
            pages["ann"].set_viewport_size({"width": 390, "height": 844})
            pages["ann"].screenshot(path=str(ARTIFACTS / "arena-revealed-narrow.png"), full_page=True)

            staff = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
            login(staff, live_server.url, "chief", "chief-password-1", "/dashboard/arena/")
            staff.goto(f"{live_server.url}/dashboard/arena/")
            assert re.search(r"\b2 counted votes on prompts people brought", staff.inner_text("#answer"))
            assert len(staff.locator("#rank-table tr").all()) == 4
    battles = list(Battle.objects.order_by("person__username"))
    assert [b.person.username for b in battles] == ["ann", "bob"]
    assert all(
        b.first_conversation_id != other.first_conversation_id for b in battles for other in battles if b != other
    )
    assert sorted(Prompt.objects.filter(prompt_set=study.prompt_set).values_list("source", flat=True)) == ["arena"] * 2
    assert Comparison.objects.filter(study=study, completed_at__isnull=False).count() == 2

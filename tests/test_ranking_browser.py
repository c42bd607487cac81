"""In Chromium: a ranking study of six systems. An annotator votes on pairs in the browser (the
paper's page and choices, the systems' names never shown), more people vote, a judge job judges
every pair in both orders, and staff read the ranking page: each system's rank-set from people
and judge together, beside the people's alone and the judge's alone."""

from __future__ import annotations

import random
import re

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from evalsite.annotation.models import HumanJudgment, Study
from tests.annotation_fixtures import member as annotator
from tests.browser import ARTIFACTS, browser, login
from tests.judge_fixtures import judge_config
from tests.openai_stub import OpenAIStub
from tests.test_ranking_study import RANKING_COLUMNS, level_judge, make_systems, vote_until

LEVEL = re.compile(r"level (\d+)")


@pytest.mark.django_db(transaction=True)
def test_in_chromium_a_ranking_study_of_six_systems_is_voted_judged_and_read(live_server, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    make_systems(n_systems=6, n_prompts=40)
    names = ",".join(f"sys-{k}" for k in range(6))
    call_command(
        "create_study", kind="ranking", systems=names, prompts="rank-set", gold_rate=0, name="six", both_bad=True
    )
    study = Study.objects.get()
    first = annotator(study, "ann0")
    User.objects.create_superuser("chief", "chief@example.org", "chief-password-1")
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        login(page, live_server.url, "ann0", "pw-ann0-secret", "/annotate/")
        page.goto(f"{live_server.url}/annotate/study/six/next")
        for n in range(6):
            page.wait_for_selector("#answer-a")
            a, b = (int(LEVEL.search(page.inner_text(f"#answer-{x}")).group(1)) for x in "ab")
            html = page.content()
            assert not any(f"sys-{k}" in html for k in range(6)), "the systems' names never reach the page"
            if n == 0:
                page.screenshot(path=str(ARTIFACTS / "ranking-vote.png"), full_page=True)
                page.set_viewport_size({"width": 390, "height": 900})
                page.screenshot(path=str(ARTIFACTS / "ranking-vote-narrow.png"), full_page=True)
                page.set_viewport_size({"width": 1280, "height": 900})
            with page.expect_navigation():  # the vote's post and the next page (not the page already loaded)
                if n == 5:  # the study's fourth choice, by its key
                    assert page.locator("button[value=both_bad]").is_visible()
                    page.keyboard.press("4")
                else:
                    page.click("button[value=a]" if a > b else "button[value=b]")
    assert HumanJudgment.objects.filter(annotator=first).count() == 6
    assert HumanJudgment.objects.filter(annotator=first, both_bad=True, outcome="tie").count() == 1
    rng = random.Random(11)
    for k in range(1, 4):
        vote_until(study, annotator(study, f"ann{k}"), 40, rng, noise=0.1)
    with OpenAIStub(responder=level_judge) as stub:
        judge_config(stub)
        call_command("judge", study="six", config="gpt-4-stub", yes=True, foreground=True)

    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        login(page, live_server.url, "chief", "chief-password-1", "/dashboard/six/")
        page.goto(f"{live_server.url}/dashboard/six/")
        headers = [h.strip() for h in page.locator("#rank-table th").all_inner_texts()]
        assert headers == RANKING_COLUMNS
        rows = page.locator("#rank-table tr").all()[1:]
        assert len(rows) == 6
        cells = [[c.strip() for c in row.locator("td").all_inner_texts()] for row in rows]
        assert sorted(c[0] for c in cells) == [f"sys-{k}" for k in range(6)]
        strengths = [float(c[5]) for c in cells]
        assert strengths == sorted(strengths, reverse=True), "strongest first"
        for row in cells:  # people + judge, people alone, people alone with style held equal, the judge alone
            for cell in row[1:5]:
                assert re.fullmatch(r"[1-6](-[1-6])?", cell), row
        # the judge alone (its verdicts on every pair, nothing drawn at random) puts sys-5 first
        judge_first = next(row[4] for row in cells if row[0] == "sys-5")
        assert judge_first.split("-")[0] == "1", cells
        assert "complete comparisons of 600" in page.inner_text("#answer")
        assert page.inner_text("#both-bad") == "1"  # the fourth choice, counted as a tie and told apart
        assert page.inner_text("#judge-worth").isdigit()
        page.screenshot(path=str(ARTIFACTS / "ranking-wide.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=str(ARTIFACTS / "ranking-narrow.png"), full_page=True)
        box = page.locator("#rank-table").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390 + 1, "the table scrolls inside the page"

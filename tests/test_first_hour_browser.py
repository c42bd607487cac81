"""A newcomer's first hour, in Chromium: what misled the first user to try the demo (a useless
judge that looked good in the agreement card, warnings lost in an exported figure, printed links
that went nowhere) now reads right in the browser. (Pages that fit, votes that were not counted
and the live chat have their own browser tests: test_layout_browser, test_annotation_browser,
test_chat_browser.)"""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from playwright.sync_api import expect

from evalsite.annotation.models import Comparison
from tests.annotation_fixtures import vote
from tests.browser import ARTIFACTS, browser, login
from tests.judge_fixtures import first_position_judge, judge_config, judged_study
from tests.openai_stub import OpenAIStub
from tests.test_judge_truth import run_job


@pytest.mark.django_db(transaction=True)
def test_a_judge_that_only_picks_the_first_answer_is_flagged_where_people_read_it(live_server):
    with OpenAIStub(responder=first_position_judge) as stub:
        study = judged_study(n_prompts=8)
        ann0 = study.annotators.get(username="ann0")
        for k, comparison in enumerate(Comparison.objects.filter(study=study, is_gold=False).order_by("pk")):
            vote(ann0, comparison, "a" if k % 3 else "b")  # the people prefer the candidate, mostly
        run_job(study, judge_config(stub), policy="tie")
    User.objects.create_superuser("chief", "chief@example.org", "chief-password-1")
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        login(page, live_server.url, "chief", "chief-password-1", f"/dashboard/{study.name}/")
        # the agreement card: chance-corrected first, and the judge flagged in the card itself
        flags = page.locator("#agreement .agreement-flags li")
        expect(flags.first).to_be_visible()
        said = flags.all_inner_texts()
        assert re.search(r"agrees with the people little beyond chance: Cohen's kappa -?0\.00", said[0]), said
        assert "The first-shown answer won 16 of 16 decided verdicts: a strong position bias." in said
        assert page.locator("#judge-kappa").inner_text().startswith("People with gpt-4: Cohen's kappa")
        page.locator("#agreement").screenshot(path=str(ARTIFACTS / "agreement-flagged.png"))
        # Figure 2 as exported (a download) carries the same warning, drawn into the picture
        exported = page.context.request.get(f"{live_server.url}/dashboard/{study.name}/export/figure2.svg")
        assert exported.ok and exported.headers["content-type"] == "image/svg+xml"
        page.set_content(exported.text())
        page.screenshot(path=str(ARTIFACTS / "figure2-exported.png"), full_page=True)
        caption = page.locator("g.notes text").all_text_contents()  # SVG text has no innerText
        assert caption[0] == "Read with care:"
        assert "The first-shown answer won 16 of 16 decided verdicts: a strong position bias." in " ".join(caption)


@pytest.mark.django_db(transaction=True)
def test_a_printed_one_time_link_opens_the_site_it_was_printed_for(live_server, settings):
    study = judged_study(n_prompts=2)
    settings.SITE_URL = live_server.url  # as `manage.py demo --port` and DEMO_PORT set it
    out = io.StringIO()
    call_command("add_annotators", study=study.name, count=1, stdout=out)
    [link] = re.findall(r"one-time login: (\S+)", out.getvalue())
    assert link.startswith(live_server.url + "/annotate/login/")
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 390, "height": 844})
        page.goto(link)
        with page.expect_navigation():
            page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Your studies")
        assert page.locator(".card h2").first.inner_text() == study.name

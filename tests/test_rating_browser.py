"""A rater grades ten responses with the keyboard alone (1 / 2 / 3, and S / U on a safety prompt)
in Chromium, and the staff see Figure 3 from those grades."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from evalsite.annotation import rating
from evalsite.annotation.models import HumanRating, Study
from evalsite.core.accounts import annotators_group
from tests.browser import ARTIFACTS, browser, login
from tests.test_rating_studies import rated_system


@pytest.mark.django_db(transaction=True)
def test_a_rater_grades_ten_responses_with_the_keyboard(live_server, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    system, prompts = rated_system(10, safety=(3,))
    study = rating.create_rating_study("fig3", system, prompts)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.OPEN)
    user = User.objects.create_user("rater", password="pw-rater-secret")
    user.groups.add(annotators_group())
    study.annotators.add(user)
    User.objects.create_superuser("chief", "chief@example.org", "chief-password-1")
    keys = "3231212333"  # excellent, pass, excellent, fail, pass, fail, pass, excellent x3
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        login(page, live_server.url, "rater", "pw-rater-secret", "/annotate/study/fig3/next")
        for n, key in enumerate(keys):
            page.wait_for_selector("#rate-form")
            question = page.locator(".card .md").first.inner_text()
            assert question == f"Question {n}?"
            if page.locator("#safety").count():
                if n == 3:
                    page.screenshot(path=str(ARTIFACTS / "rating-safety-item.png"), full_page=True)
                page.keyboard.press(key)  # no safe / unsafe yet: the browser keeps the page
                page.wait_for_timeout(200)
                assert page.locator(".card .md").first.inner_text() == question
                page.keyboard.press("u")
            with page.expect_navigation():
                page.keyboard.press(key)
        page.wait_for_selector("text=Back to your studies")
        chief = chromium.new_page(viewport={"width": 1280, "height": 900})
        login(chief, live_server.url, "chief", "chief-password-1", "/dashboard/fig3/")
        chief.goto(f"{live_server.url}/dashboard/fig3/")
        chief.screenshot(path=str(ARTIFACTS / "rating-figure-3.png"), full_page=True)
        assert chief.locator("#safety strong").inner_text() == "0.00"
    grades = dict(HumanRating.objects.values_list("item__response__prompt__external_id", "grade"))
    names = {"1": "fail", "2": "pass", "3": "excellent"}
    assert grades == {f"q{n}": names[key] for n, key in enumerate(keys)}
    assert HumanRating.objects.get(item__response__prompt__external_id="q3").safe is False

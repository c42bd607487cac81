"""Prolific participants in a real browser (Chromium through Playwright) against a live server."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from evalsite.annotation.models import Assignment
from evalsite.crowd import services
from evalsite.crowd.models import Participant
from tests.annotation_fixtures import make_study
from tests.browser import ARTIFACTS, browser


def open_claim(external_id: str) -> Assignment:
    """Read in a thread of its own, its connection closed after: Playwright runs an event loop in
    the test's thread, and a query made under it opens a connection no one closes (the test
    database's teardown then finds it still in use)."""

    def read() -> Assignment:
        try:
            participant = Participant.objects.get(external_id=external_id)
            return Assignment.objects.get(annotator=participant.user_id, status=Assignment.Status.CLAIMED)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(read).result()


def pick(page, external_id: str, right: bool = True, key: bool = False) -> None:
    """Answer the item on the page: the candidate's side (right on a gold check) or the other."""
    assignment = open_claim(external_id)
    candidate = "a" if assignment.candidate_on_left else "b"
    choice = candidate if right else ("b" if candidate == "a" else "a")
    if key:
        page.keyboard.press("1" if choice == "a" else "2")
    else:
        page.click(f"button[value={choice}]")
    page.wait_for_load_state()


@pytest.mark.django_db(transaction=True)
def test_participants_arrive_by_a_prolific_link_are_screened_finish_and_resume(live_server):
    # the test reads which side is the candidate from the database while Playwright's loop runs
    study, _ = make_study(n_prompts=10, baselines=("alpaca-65b",), gold_rate=0.3, annotators=0)
    link = services.create_link(
        study, quota=2, screening_items=2, screening_pass=2, completion_url=f"{live_server.url}/healthz?cc={{code}}"
    )
    url = f"{live_server.url}/s/{link.token}/?PROLIFIC_PID={{}}&STUDY_ID=5f0c0c0c0c0c0c0c0c0c0c0c&SESSION_ID=x1"
    passes, fails, resumes = "a" * 24, "b" * 24, "c" * 24
    with browser() as chromium:
        # one passes the screening, judges its quota and is sent back to Prolific with the code
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url.format(passes))
        page.wait_for_selector("#judge-form")
        pick(page, passes)
        pick(page, passes, key=True)  # the screening's two gold checks, by mouse then by keyboard
        page.wait_for_selector("#progress-count")
        assert page.inner_text("#progress-count") == "0 / 2"
        pick(page, passes)
        assert page.inner_text("#progress-count") == "1 / 2"
        pick(page, passes, key=True)
        assert page.inner_text(".completion-code") == link.completion_code
        page.screenshot(path=str(ARTIFACTS / "crowd-completed.png"), full_page=True)
        page.wait_for_url(f"**/healthz?cc={link.completion_code}", timeout=15_000)

        # one fails it and is thanked with the screened-out code
        other = chromium.new_context().new_page()
        other.goto(url.format(fails))
        pick(other, fails, right=False)
        pick(other, fails)
        assert other.inner_text(".completion-code") == link.screened_out_code
        assert "screening" in other.inner_text(".end-reason")
        other.screenshot(path=str(ARTIFACTS / "crowd-screened-out.png"), full_page=True)

        # one starts on a phone, goes on on a laptop (another browser context, the same id)
        phone = chromium.new_context(viewport={"width": 390, "height": 844}).new_page()
        phone.goto(url.format(resumes))
        pick(phone, resumes)
        laptop = chromium.new_context().new_page()
        laptop.goto(url.format(resumes))
        laptop.wait_for_selector("#judge-form")
        pick(laptop, resumes)
        pick(laptop, resumes)
        assert laptop.inner_text("#progress-count") == "1 / 2"

    statuses = dict(Participant.objects.values_list("external_id", "status"))
    assert statuses == {passes: "completed", fails: "screened_out", resumes: "active"}

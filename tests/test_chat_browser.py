"""In Chromium: a staff member sends a message to a system and grades its answer with a key."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from evalsite.answering.models import ChatTurn
from tests.browser import ARTIFACTS, browser, login
from tests.openai_stub import OpenAIStub
from tests.test_chat import api_system


@pytest.mark.django_db(transaction=True)
def test_in_chromium_a_message_is_sent_and_its_answer_graded_with_a_key(live_server, live_worker, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    User.objects.create_superuser("chief", "chief@example.org", "chief-password-1")
    answer = "Paris is the capital of **France**, on the Seine, and has been for a very long time."
    with OpenAIStub(responder=lambda body: answer, stream_delay=0.12) as stub:
        # made before Chromium starts: Playwright runs an event loop in this thread, and a query
        # made under it opens a connection of its own that the test database's teardown trips on
        api_system(stub, "lima-7b")
        with browser() as chromium:
            page_ = chromium.new_page(viewport={"width": 1100, "height": 800})
            login(page_, live_server.url, "chief", "chief-password-1", "/generation/chat/")
            page_.goto(f"{live_server.url}/generation/chat/")
            page_.click("#new-conversation button[type=submit]")
            page_.fill("#id_message", "What is the capital of France?")
            page_.click("#say button[type=submit]")
            # the answer grows in front of the reader, Send disabled meanwhile
            streaming = page_.locator("#turn-1 #streaming")
            expect(streaming).to_have_text(re.compile(r"^Paris is the"))
            assert answer.startswith(streaming.inner_text()) and streaming.inner_text() != answer
            assert page_.locator("#answer-state").inner_text() == "writing…"
            assert page_.locator("#send").is_disabled() and page_.locator("#id_message").is_disabled()
            page_.screenshot(path=str(ARTIFACTS / "chat-writing.png"), full_page=True)
            page_.wait_for_selector("#turn-1 .assistant strong", timeout=20_000)  # done: the page again, rendered
            assert page_.locator("#id_message").is_disabled()
            page_.screenshot(path=str(ARTIFACTS / "chat-turn.png"), full_page=True)
            with page_.expect_navigation():
                page_.keyboard.press("3")
            assert page_.locator("#turn-1 .grade").inner_text() == "Graded: Excellent"
            assert not page_.locator("#id_message").is_disabled()
    assert ChatTurn.objects.get().grade == "excellent"

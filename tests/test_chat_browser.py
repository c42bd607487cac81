"""In Chromium: a staff member sends a message to a system and grades its answer with a key."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from evalsite.answering.models import ChatTurn
from tests.browser import ARTIFACTS, browser, login
from tests.openai_stub import OpenAIStub
from tests.test_chat import api_system


@pytest.mark.django_db(transaction=True)
def test_in_chromium_a_message_is_sent_and_its_answer_graded_with_a_key(live_server, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    User.objects.create_superuser("chief", "chief@example.org", "chief-password-1")
    with OpenAIStub(responder=lambda body: "Paris is the capital of **France**.") as stub:
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
            page_.wait_for_selector("#turn-1 .assistant strong")
            assert page_.locator("#id_message").is_disabled()
            page_.screenshot(path=str(ARTIFACTS / "chat-turn.png"), full_page=True)
            with page_.expect_navigation():
                page_.keyboard.press("3")
            assert page_.locator("#turn-1 .grade").inner_text() == "Graded: Excellent"
            assert not page_.locator("#id_message").is_disabled()
    assert ChatTurn.objects.get().grade == "excellent"

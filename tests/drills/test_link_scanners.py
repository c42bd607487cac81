"""Drill: an e-mailed one-time login link meets a mail filter's link scanner before the person. The
scanner fetches it (HEAD, then GET, as Microsoft's Safe Links and others do, following nothing it
would have to press); the person then opens it, presses the button and is in. Before, the token
logged in on any GET or HEAD, so the scanner spent it and the person saw "link used" (410)."""

from __future__ import annotations

import pytest
from bs4 import BeautifulSoup
from django.test import Client

from evalsite.annotation import members
from tests.annotation_fixtures import make_study

pytestmark = pytest.mark.django_db


def test_a_scanner_fetching_the_link_first_leaves_it_for_the_person(mailoutbox):
    study, _ = make_study(n_prompts=2, annotators=0)
    members.invite_annotator(study, "rater@example.org")
    path = "/annotate/login/" + mailoutbox[0].body.split("/annotate/login/")[1].split()[0]
    scanner = Client()
    fetched = [scanner.head(path).status_code, scanner.get(path).status_code, scanner.get(path).status_code]
    print(f"drill: the scanner's HEAD, GET, GET answered {fetched}")
    assert fetched == [200, 200, 200] and "_auth_user_id" not in scanner.session, "the scanner logs no one in"

    person = Client()
    page = BeautifulSoup(person.get(path).content, "html.parser")
    assert page.select_one("#token-login h1").get_text() == "Log in as rater-example.org"
    form = page.select_one("#token-login form")
    assert form["method"] == "post" and form.get("action") in (None, "")
    reply = person.post(path)
    assert reply.status_code == 302 and reply["Location"] == "/annotate/"
    assert person.get("/annotate/").status_code == 200, "logged in"
    # spent now: a second press, and the link opened again, say so
    assert Client().post(path).status_code == 410
    assert Client().get(path).status_code == 410 and Client().head(path).status_code == 410

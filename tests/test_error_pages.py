"""The site's own error pages: an annotator never sees Django's debug pages or a bare 403, a
logout lands on the site's login, and a refusal is one line in the log, not a traceback."""

import logging

import pytest
from bs4 import BeautifulSoup

from tests.annotation_fixtures import make_study

pytestmark = pytest.mark.django_db


def error_page(response) -> BeautifulSoup:
    return BeautifulSoup(response.content, "html.parser").select_one(".error-page")


def test_another_annotators_item_is_the_sites_404_page(client, settings):
    settings.DEBUG = False
    study, (owner, intruder) = make_study(n_prompts=2, overlap=1)
    from evalsite.annotation import claims

    claim = claims.claim_next(study, owner)
    client.force_login(intruder)
    reply = client.get(f"/annotate/item/{claim.pk}/")
    assert reply.status_code == 404
    page = error_page(reply)
    assert page["data-status"] == "404" and page.find("h1").get_text() == "Not found"
    assert "URLconf" not in reply.content.decode() and "urlpatterns" not in reply.content.decode()


def test_a_staff_page_is_the_sites_403_page_and_the_refusal_is_one_line(annotator_client, caplog):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        reply = annotator_client.get("/dashboard/")
    assert reply.status_code == 403 and error_page(reply)["data-status"] == "403"
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.getMessage().startswith("Forbidden") and record.exc_info is None and not record.exc_text


def test_logout_lands_on_the_sites_login(annotator_client):
    reply = annotator_client.post("/accounts/logout/")
    assert reply.status_code == 302 and reply["Location"] == "/accounts/login/"



def test_the_icon_a_browser_asks_for_every_session_is_there(client):
    reply = client.get("/favicon.ico")  # asked for without a session: no login in the way
    assert reply.status_code == 200 and reply["Content-Type"] == "image/svg+xml"
    assert len(BeautifulSoup(reply.content, "html.parser").select("svg rect")) == 2

"""One login limit for every login form, counted atomically per username and client address,
with the client's address believed from X-Forwarded-For only behind a trusted proxy."""

from __future__ import annotations

import threading

import pytest
import requests
from django.contrib.auth import hashers
from django.contrib.auth.models import User

pytestmark = pytest.mark.django_db

WRONG = {"username": "ann", "password": "wrong-password"}
RIGHT = {"username": "ann", "password": "right-password-1"}


@pytest.fixture
def annotator():
    return User.objects.create_user("ann", password=RIGHT["password"])


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_the_admin_login_has_the_same_limit_and_honours_a_lockout(client, annotator, settings):
    annotator.is_staff = True
    annotator.save()
    for _ in range(settings.LOGIN_MAX_FAILURES):
        client.post("/admin/login/", WRONG)
    client.post("/admin/login/", RIGHT)
    assert not logged_in(client), "locked out: the right password is not even checked"
    assert client.post("/accounts/login/", RIGHT).status_code == 429


def test_a_lockout_from_the_sites_form_holds_on_the_admins(client, annotator, settings):
    for _ in range(settings.LOGIN_MAX_FAILURES):
        assert client.post("/accounts/login/", WRONG).status_code == 200
    assert client.post("/accounts/login/", RIGHT).status_code == 429
    client.post("/admin/login/", RIGHT)
    assert not logged_in(client)


def test_typos_for_another_name_do_not_lock_out_an_annotator_at_the_same_address(client, annotator, settings):
    for _ in range(settings.LOGIN_MAX_FAILURES + 2):
        client.post("/accounts/login/", {"username": "no-such-user", "password": "x"})
    reply = client.post("/accounts/login/", RIGHT)
    assert reply.status_code == 302 and logged_in(client)


def test_a_successful_login_frees_the_slots(client, annotator, settings):
    for _ in range(settings.LOGIN_MAX_FAILURES - 1):
        client.post("/accounts/login/", WRONG)
    assert client.post("/accounts/login/", RIGHT).status_code == 302
    client.logout()
    for _ in range(settings.LOGIN_MAX_FAILURES - 1):
        assert client.post("/accounts/login/", WRONG).status_code == 200, "counting starts again"


def test_behind_a_trusted_proxy_each_client_has_its_own_count(client, annotator, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    proxy = {"REMOTE_ADDR": "10.0.0.5"}
    for _ in range(settings.LOGIN_MAX_FAILURES):
        client.post("/accounts/login/", WRONG, HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy)
    assert client.post("/accounts/login/", RIGHT, HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy).status_code == 429
    reply = client.post("/accounts/login/", RIGHT, HTTP_X_FORWARDED_FOR="198.51.100.9, 10.0.0.7", **proxy)
    assert reply.status_code == 302, "another client behind the proxy"
    # from an untrusted address, a forged X-Forwarded-For changes nothing
    client.logout()
    untrusted = {"REMOTE_ADDR": "192.0.2.1"}
    for k in range(settings.LOGIN_MAX_FAILURES):
        client.post("/accounts/login/", WRONG, HTTP_X_FORWARDED_FOR=f"198.51.100.{k}", **untrusted)
    assert client.post("/accounts/login/", RIGHT, HTTP_X_FORWARDED_FOR="198.51.100.99", **untrusted).status_code == 429


@pytest.mark.django_db(transaction=True)
def test_parallel_attempts_check_no_more_passwords_than_the_limit(live_server, settings, monkeypatch):
    User.objects.create_user("ann", password=RIGHT["password"])
    checked = []
    real = hashers.check_password

    def counting(password, encoded, setter=None, preferred="default"):
        checked.append(password)
        return real(password, encoded, setter, preferred)

    monkeypatch.setattr(hashers, "check_password", counting)
    monkeypatch.setattr("django.contrib.auth.base_user.check_password", counting)
    url = f"{live_server.url}/accounts/login/"

    def attempt():
        with requests.Session() as session:
            session.get(url, timeout=30)
            token = session.cookies["csrftoken"]
            session.post(url, data={**WRONG, "csrfmiddlewaretoken": token}, timeout=30)

    threads = [threading.Thread(target=attempt) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(checked) <= settings.LOGIN_MAX_FAILURES, f"{len(checked)} passwords checked"

"""Redis is a cache: while it cannot be reached, annotators' pages keep working (sessions are read
from the database) and logins go on (LOGIN_LIMIT_WHEN_CACHE_DOWN=open) or stop (closed)."""

from __future__ import annotations

import pytest
from django.core.cache import caches

from evalsite.annotation import claims
from evalsite.annotation.models import HumanJudgment
from tests.annotation_fixtures import make_study
from tests.conftest import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def redis_down(settings):
    """The shared cache points at a Redis that does not answer (Django resets its caches when
    CACHES changes)."""
    location = f"redis://127.0.0.1:{free_port()}/0"
    redis = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": location}
    settings.CACHES = {**settings.CACHES, "default": redis}
    settings.SESSION_ENGINE = "evalsite.core.sessions"
    with pytest.raises(Exception):  # noqa: B017  (whatever the client raises: it is down)
        caches["default"].get("x")


def test_an_annotator_keeps_judging_while_the_cache_is_down(client, redis_down):
    study, (annotator, _) = make_study(n_prompts=3)
    login = {"username": annotator.username, "password": "pw-ann0-secret"}
    assert client.post("/accounts/login/", login).status_code == 302
    page = client.get(f"/annotate/study/{study.name}/next")
    assert page.status_code in (200, 302)
    claim = claims.claim_next(study, annotator)
    assert client.get(f"/annotate/item/{claim.pk}/").status_code == 200
    client.post(f"/annotate/item/{claim.pk}/judge", {"choice": "a"})
    assert HumanJudgment.objects.filter(assignment=claim).count() == 1


def test_logins_stop_while_the_cache_is_down_when_configured_closed(client, redis_down, settings):
    settings.LOGIN_LIMIT_WHEN_CACHE_DOWN = "closed"
    _, (annotator, _) = make_study(n_prompts=1)
    reply = client.post("/accounts/login/", {"username": annotator.username, "password": "pw-ann0-secret"})
    assert reply.status_code == 429 and "_auth_user_id" not in client.session

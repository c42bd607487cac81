"""The site as deployed: a health check a load balancer can read when the database is down,
a Content-Security-Policy on every page (the pages' scripts carry its nonce), `check --deploy`
clean with the README's production variables, and large prompt sets paginated."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from bs4 import BeautifulSoup

from tests.conftest import ROOT, free_port


def run_django(code: str, **env) -> subprocess.CompletedProcess:
    """Python with the project's settings in a process of its own, under ``env``."""
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "evalsite.settings", **env}
    script = "import django; django.setup()\n" + code
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


def test_healthz_answers_json_503_while_the_database_is_down():
    dead = f"postgres://postgres@127.0.0.1:{free_port()}/nowhere"
    code = (
        "from django.test import Client\n"
        "r = Client().get('/healthz')\n"
        "print(r.status_code, r['Content-Type'], r.content.decode())\n"
    )
    done = run_django(code, DATABASE_URL=dead, LOG_LEVEL="CRITICAL", ALLOWED_HOSTS="testserver")
    status, kind, body = done.stdout.strip().split(" ", 2)
    assert (status, kind) == ("503", "application/json"), done.stderr[-2000:]
    assert json.loads(body)["ok"] is False and "unreachable" in json.loads(body)["database"]


@pytest.mark.django_db
def test_healthz_is_200_when_the_database_answers(client):
    reply = client.get("/healthz")
    assert reply.status_code == 200 and reply.json() == {"ok": True}


@pytest.mark.django_db
def test_check_deploy_is_clean_with_the_readmes_production_variables(tmp_path):
    from tests.conftest import shared_database_url

    exports = [
        line.split("export ", 1)[1].split("#")[0].split()
        for line in (ROOT / "README.md").read_text().split("## Running on PostgreSQL + Redis")[1].splitlines()
        if line.startswith("export ") and "SECURE" in line
    ]
    env = {
        **dict(pair.split("=", 1) for line in exports for pair in line),
        "DEBUG": "0",
        "SECRET_KEY": "k" * 30 + "-" + "x9Z" * 12,
        "ALLOWED_HOSTS": "eval.example.org",
        "SITE_URL": "https://eval.example.org",
        "EVALSITE_VAR_DIR": str(tmp_path),
        "DATABASE_URL": shared_database_url(),
    }
    assert {"SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS"} <= set(env), "the README's variables"
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "System check identified no issues" in done.stdout, done.stdout + done.stderr


@pytest.mark.django_db
def test_every_page_has_a_content_security_policy_and_its_scripts_the_nonce(client):
    from evalsite.annotation import claims
    from tests.annotation_fixtures import make_study

    study, (annotator, _) = make_study(n_prompts=2)
    client.force_login(annotator)
    reply = client.get(f"/annotate/study/{study.name}/next")
    policy = reply["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["script-src"].startswith("'self' 'nonce-") and "'unsafe-inline'" not in directives["script-src"]
    assert (directives["object-src"], directives["frame-ancestors"]) == ("'none'", "'none'")
    nonce = directives["script-src"].split("'nonce-")[1].split("'")[0]
    scripts = BeautifulSoup(reply.content, "html.parser").select("script")
    assert scripts and all(s.get("nonce") == nonce for s in scripts), "every inline script may run"
    assert claims.left_for(study, annotator) >= 1


@pytest.mark.django_db
def test_a_large_prompt_set_is_paginated(staff_client):
    from evalsite.catalog.models import Prompt, PromptSet

    prompt_set = PromptSet.objects.create(name="big")
    Prompt.objects.bulk_create(
        Prompt(prompt_set=prompt_set, external_id=f"q{i:05d}", messages=[{"role": "user", "content": f"Q {i}?"}])
        for i in range(450)
    )
    first = BeautifulSoup(staff_client.get("/generation/responses/set/big/").content, "html.parser")
    assert len(first.select("table tr")) == 201, "200 prompts and the header"
    assert first.select_one(".pages").get_text(" ", strip=True).startswith("prompts 1-200 of 450")
    last = BeautifulSoup(staff_client.get("/generation/responses/set/big/?page=3").content, "html.parser")
    assert [a.get_text() for a in last.select("table tr td a")][-1] == "q00449"
    assert len(last.select("table tr")) == 51

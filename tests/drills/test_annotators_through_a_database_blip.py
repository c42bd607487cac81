"""Drill: annotators keep judging on a real gunicorn while the database drops every one of its
connections, twice. Nothing is lost or doubled: judgments equal accepted submits, no assignment
is judged twice, no comparison gets more votes than its overlap, and the site answers again at
once (a refused request at the moment of the blip is the most a person sees)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import requests
from django.db import connection
from django.db.models import Count

from evalsite.annotation.models import Comparison, HumanJudgment
from evalsite.core.health import wait_for_http
from tests.annotation_fixtures import make_study
from tests.conftest import ROOT, free_port, shared_database_url
from tests.drills.test_database_blip import terminate_other_connections

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
ITEM = re.compile(r'action="/annotate/item/(\d+)/judge"')




@pytest.fixture
def gunicorn(transactional_db, tmp_path):
    port = free_port()
    env = dict(os.environ, DATABASE_URL=shared_database_url(), PYTHONUNBUFFERED="1", DB_CONN_MAX_AGE="60")
    log = (tmp_path / "gunicorn.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "evalsite.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2", "-k", "gthread",
         "--threads", "4"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    assert wait_for_http(f"{url}/healthz"), "gunicorn did not answer"
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.mark.serial
def test_annotators_lose_nothing_when_the_database_drops_their_connections(gunicorn):
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend needs PostgreSQL")
    study, users = make_study(n_prompts=60, baselines=("alpaca-65b", "davinci-003"), overlap=2, annotators=8)
    statuses: Counter = Counter()
    accepted = Counter()
    stop = time.monotonic() + 9

    def annotate(k: int) -> None:
        session = requests.Session()
        page = session.get(f"{gunicorn}/accounts/login/", timeout=30).text
        login = {"username": f"ann{k}", "password": f"pw-ann{k}-secret", "csrfmiddlewaretoken": CSRF.search(page)[1]}
        session.post(f"{gunicorn}/accounts/login/", data=login, timeout=30)
        while time.monotonic() < stop:
            try:
                reply = session.get(f"{gunicorn}/annotate/study/{study.name}/next", timeout=30)
                statuses[reply.status_code] += 1
                item, token = ITEM.search(reply.text), CSRF.search(reply.text)
                if reply.status_code != 200 or not item:
                    time.sleep(0.2)
                    continue
                answer = {"choice": "a", "csrfmiddlewaretoken": token[1]}
                posted = session.post(f"{gunicorn}/annotate/item/{item[1]}/judge", data=answer, timeout=30,
                                      allow_redirects=False)  # fmt: skip
                statuses[posted.status_code] += 1
                if posted.status_code == 302:
                    accepted[k] += 1
            except requests.RequestException:
                statuses["connection error"] += 1

    threads = [threading.Thread(target=annotate, args=(k,)) for k in range(len(users))]
    for t in threads:
        t.start()
    killed = []
    for at in (3, 6):
        time.sleep(max(0.0, at - (9 - (stop - time.monotonic()))))  # at 3 s and 6 s into the run
        killed.append(terminate_other_connections())
    for t in threads:
        t.join()
    judgments = HumanJudgment.objects.filter(comparison__study=study).count()
    pairs = HumanJudgment.objects.filter(comparison__study=study).values("comparison", "annotator")
    doubled = pairs.annotate(n=Count("id")).filter(n__gt=1).count()
    beyond = Comparison.objects.filter(study=study).annotate(n=Count("judgments")).filter(n__gt=2).count()
    print(
        f"drill: 8 annotators for 9 s, database connections killed {killed}; statuses {dict(statuses)}; "
        f"accepted submits {sum(accepted.values())}, judgments {judgments}, judged twice {doubled}, "
        f"beyond overlap {beyond}"
    )
    assert sum(killed) >= 1 and sum(accepted.values()) > 20
    assert judgments == sum(accepted.values()) and doubled == 0 and beyond == 0
    assert statuses[500] <= 2 * len(users), "at most the requests in flight at each blip"

"""Every staff page, opened in Chromium with hostile text in every name a user can choose (a
system, a judge's model, a study's instructions, a prompt set's description, a prompt's source
and tags, answers, a training dataset): no script may run. A dialog opened by an injected
handler fails the test."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from evalsite.annotation.models import Study
from evalsite.answering.models import ChatTurn, Conversation
from evalsite.catalog.models import Prompt, PromptSet, Response, System
from evalsite.finetune.models import TrainingDataset, TrainingExample
from evalsite.judging.models import JudgeConfig
from tests.browser import ARTIFACTS, browser, login
from tests.dashboard_fixtures import seeded_study
from tests.site_pages import staff_pages

HOSTILE = '"><img src=x onerror=alert(1)>\' onload="alert(document.domain)//'


@pytest.mark.django_db(transaction=True)
def test_no_staff_page_runs_a_script_from_a_name(live_server):
    study, job, _ = seeded_study()
    JudgeConfig.objects.filter(pk=job.config_id).update(model=f"gpt-4{HOSTILE}")
    for system in System.objects.all():
        System.objects.filter(pk=system.pk).update(name=f"{system.name}{HOSTILE}", description=HOSTILE)
    Study.objects.filter(pk=study.pk).update(instructions=f"Pick one. {HOSTILE}")
    PromptSet.objects.update(description=HOSTILE)
    Prompt.objects.update(source=f"src{HOSTILE}"[:100], tags=[f"tag{HOSTILE}", "safety"])
    first = Response.objects.order_by("pk").first()
    Response.objects.filter(pk=first.pk).update(text=f"An answer {HOSTILE} <script>alert(2)</script>", html=None)
    dataset = TrainingDataset.objects.create(
        name="hostile",
        description=HOSTILE,
        manifest={"inputs": [HOSTILE], "rejected_by_reason": {HOSTILE: {HOSTILE: 1}}, "read": {HOSTILE: 1}},
    )
    example = TrainingExample.objects.create(
        dataset=dataset,
        external_id=HOSTILE[:300],
        source=f"s{HOSTILE}"[:100],
        group=HOSTILE,
        messages=[{"role": "user", "content": HOSTILE}, {"role": "assistant", "content": HOSTILE}],
        reason=HOSTILE,
    )
    chief = User.objects.create_superuser("chief", "chief@example.org", "chief-password-1")
    talk = Conversation.objects.create(system=System.objects.first(), staff=chief)
    ChatTurn.objects.create(conversation=talk, index=1, user_text=HOSTILE, assistant_text=HOSTILE, grade="pass")
    pages = staff_pages(study, job, dataset=dataset, example=example, conversation=talk)
    dialogs: list[str] = []
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 1300, "height": 900})
        page.on("dialog", lambda dialog: (dialogs.append(f"{page.url}: {dialog.message}"), dialog.dismiss()))
        login(page, live_server.url, "chief", "chief-password-1", "/")
        statuses = {}
        for path in pages:
            reply = page.goto(live_server.url + path)
            page.wait_for_load_state("load")
            page.wait_for_timeout(150)  # a handler on an image that fails to load fires after the load
            statuses[path] = reply.status if reply else None
        page.goto(f"{live_server.url}/dashboard/{study.name}/")
        page.wait_for_selector("#agreement .details table")  # the second request's tables too
        page.screenshot(path=str(ARTIFACTS / "hostile-dashboard.png"), full_page=True)
    assert dialogs == [], "a name ran a script"
    assert {p: s for p, s in statuses.items() if s != 200} == {}

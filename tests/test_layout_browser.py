"""Every page fits the window at a phone's width (390 px) and a laptop's (1,280 px), with answers
that hold a long line of code, a long word and a long address: what is wider than the window
scrolls inside its own box, never the page. And an annotator on a phone can tap each choice."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from evalsite.annotation import rating
from evalsite.annotation.models import Comparison, HumanJudgment, Study
from evalsite.answering.models import ChatTurn, Conversation
from evalsite.catalog.models import Response, System
from evalsite.finetune.models import TrainingDataset, TrainingExample, TrainingRun
from evalsite.judging.models import JudgeConfig, JudgeJob
from tests.annotation_fixtures import make_study, vote
from tests.browser import ARTIFACTS, browser, login
from tests.dashboard_fixtures import recorded_verdicts
from tests.site_pages import staff_pages
from tests.test_rating_studies import rated_system

WIDTHS = (390, 1280)
LONG_CODE = "x = compute(" + ", ".join(f"argument_number_{k}" for k in range(40)) + ")"
LONG_WORD = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 4
LONG_URL = "https://example.org/" + "a-long-path-segment/" * 20
ANSWER = (
    f"Here is the code:\n\n```python\n{LONG_CODE}\n```\n\nAnd inline `{LONG_CODE[:120]}`, the word "
    f"{LONG_WORD}, the address {LONG_URL}.\n\n| a | b |\n|---|---|\n| {LONG_WORD} | {LONG_CODE} |\n"
)

# the document's width, and the widest elements that stick out of the window (to say which)
MEASURE = """() => {
  const width = window.innerWidth;
  const out = [];
  for (const e of document.querySelectorAll('body *')) {
    const r = e.getBoundingClientRect();
    if (r.right > width + 1 && r.width > 0) {
      let inside = false;  // clipped by a box that scrolls: not the page's width
      for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
        const s = getComputedStyle(p);
        if (['auto', 'scroll', 'hidden'].includes(s.overflowX) && p.getBoundingClientRect().right <= width + 1) {
          inside = true; break;
        }
      }
      const name = `${e.tagName.toLowerCase()}#${e.id}.${[...e.classList].join('.')}`;
      if (!inside) out.push(`${name} right=${Math.round(r.right)}`);
    }
  }
  return [document.documentElement.scrollWidth, width, out.slice(0, 8)];
}"""


def _rows():
    study, (a, b, _) = make_study(n_prompts=4, baselines=("alpaca-65b", "davinci-003"), overlap=2, annotators=3)
    Response.objects.filter(system__name="lima-65b").update(text=ANSWER, html=None)
    alpaca = list(Comparison.objects.filter(study=study, baseline__name="alpaca-65b").order_by("prompt_id"))
    for comparison, (x, y) in zip(alpaca, [("a", "a"), ("a", "tie"), ("b", "b"), ("tie", "tie")], strict=True):
        vote(a, comparison, x)
        vote(b, comparison, y)
    config = JudgeConfig.objects.create(name="gpt-4-recorded", model="gpt-4", base_url="http://127.0.0.1:9/v1")
    job = JudgeJob.objects.create(study=study, config=config, status="done")
    plan = [("first", "second"), ("first", "first"), ("second", "first"), ("first", None)]
    for comparison, verdicts in zip(alpaca, plan, strict=True):
        recorded_verdicts(job, comparison, verdicts)
    dataset = TrainingDataset.objects.create(name="lima-1k", description=LONG_WORD, manifest={"inputs": [LONG_URL]})
    example = TrainingExample.objects.create(
        dataset=dataset,
        external_id="e1",
        source="stackexchange",
        messages=[{"role": "user", "content": LONG_WORD}, {"role": "assistant", "content": ANSWER}],
    )
    candidate = System.objects.get(name="lima-65b")
    history = [[step, 1 + step // 10, 2.5 - step / 40, 1e-5] for step in range(1, 31)]
    run = TrainingRun.objects.create(
        dataset=dataset,
        base=candidate,
        recipe={"epochs": 3},
        status="done",
        loss_history=history,
        heldout_history=[[0, 2.6, 6], [1, 2.2, 6], [2, 2.0, 6], [3, 1.9, 6]],
        examples_used=1,
    )
    chief = User.objects.create_superuser("chief", "chief@example.org", "chief-password-1")
    talk = Conversation.objects.create(system=candidate, staff=chief)
    ChatTurn.objects.create(conversation=talk, index=1, user_text=LONG_WORD, assistant_text=ANSWER, grade="pass")
    system, prompts = rated_system(3)
    Response.objects.filter(system=system).update(text=ANSWER, html=None)
    graded = rating.create_rating_study("fig3", system, prompts)
    Study.objects.filter(pk=graded.pk).update(status=Study.Status.OPEN)
    graded.annotators.add(User.objects.get(username="ann2"))
    return study, job, staff_pages(study, job, dataset=dataset, example=example, conversation=talk, run=run)


def _fits(page, path: str, width: int, problems: list[str]) -> None:
    document, window, out = page.evaluate(MEASURE)
    if document > window:
        problems.append(f"{path} at {width} px: the page is {document} px wide ({'; '.join(out)})")


@pytest.mark.django_db(transaction=True)
def test_every_page_fits_a_phone_and_a_laptop_and_each_choice_can_be_tapped(live_server):
    study, _, pages = _rows()
    problems: list[str] = []
    with browser() as chromium:
        for width in WIDTHS:
            page = chromium.new_page(viewport={"width": width, "height": 900})
            login(page, live_server.url, "chief", "chief-password-1", "/")
            for path in pages:
                page.goto(live_server.url + path)
                page.wait_for_load_state("load")
                if path.startswith(f"/dashboard/{study.name}/"):
                    page.wait_for_timeout(300)  # the second request's agreement tables
                _fits(page, path, width, problems)
                if path == f"/dashboard/{study.name}/":
                    page.screenshot(path=str(ARTIFACTS / f"layout-dashboard-{width}.png"), full_page=True)
            page.close()

        # the annotator, on a touch screen: each page of the comparison and the rating fits
        for width in WIDTHS:
            context = chromium.new_context(viewport={"width": width, "height": 844}, has_touch=True)
            page = context.new_page()
            login(page, live_server.url, "ann2", "pw-ann2-secret", "/annotate/")
            _fits(page, "/annotate/", width, problems)
            page.goto(f"{live_server.url}/annotate/study/{study.name}/next")
            page.wait_for_selector("#judge-form")
            _fits(page, "the comparison page", width, problems)
            page.screenshot(path=str(ARTIFACTS / f"layout-comparison-{width}.png"), full_page=True)
            for choice in ("a", "b", "tie"):
                button = page.locator(f"#judge-form button[value={choice}]")
                button.scroll_into_view_if_needed()
                box = button.bounding_box()
                assert box["x"] >= 0 and box["x"] + box["width"] <= width, (
                    f"choice {choice} off the screen at {width} px"
                )
                hit = page.evaluate(
                    "([x, y]) => { const e = document.elementFromPoint(x, y);"
                    " return e && e.closest('button') ? e.closest('button').value : null; }",
                    [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
                )
                assert hit == choice, f"a tap on choice {choice} at {width} px lands on {hit!r}"
            with page.expect_navigation():
                page.locator("#judge-form button[value=tie]").tap()
            page.goto(f"{live_server.url}/annotate/study/fig3/next")
            page.wait_for_selector("#rate-form")
            _fits(page, "the rating page", width, problems)
            expect(page.locator("#rate-form button").first).to_be_visible()
            context.close()
    assert problems == [], "\n".join(problems)
    taps = HumanJudgment.objects.filter(annotator__username="ann2").values_list("picked_side", flat=True)
    assert list(taps) == ["none", "none"], "a tap on Neither cast a vote at each width"

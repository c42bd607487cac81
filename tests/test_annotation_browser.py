"""An annotator's session in a real browser (Chromium through Playwright) against a live server."""

import pytest
from playwright.sync_api import expect

from evalsite.annotation import claims
from evalsite.annotation.models import HumanJudgment
from tests.annotation_fixtures import make_study
from tests.browser import ARTIFACTS, browser, login


@pytest.mark.django_db(transaction=True)
def test_an_annotator_judges_three_comparisons_by_mouse_and_keyboard(live_server):
    study, (a, b) = make_study(n_prompts=6, baselines=("alpaca-65b",), annotators=2)
    others = claims.claim_next(study, b)
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        login(page, live_server.url, "ann0", "pw-ann0-secret", "/annotate/")
        page.click("text=Continue")
        page.wait_for_selector("#progress-count")
        # done of done plus left: six comparisons, one held by the other annotator
        assert page.inner_text("#progress-count") == "0 / 5"
        html = page.content()
        assert "Neither is significantly better" in html
        for name in ("lima-65b", "alpaca-65b"):
            assert name not in html
        page.screenshot(path=str(ARTIFACTS / "comparison-wide.png"), full_page=True)

        page.click("button[value=a]")  # mouse
        expect(page.locator("#progress-count")).to_have_text("1 / 5")  # (no eval: the page's CSP)
        assert page.eval_on_selector("#progress-fill", "e => e.style.width") == "20%"

        page.keyboard.press("2")  # keyboard: B
        expect(page.locator("#progress-count")).to_have_text("2 / 5")  # (no eval: the page's CSP)
        page.keyboard.press("n")  # keyboard: neither
        expect(page.locator("#progress-count")).to_have_text("3 / 5")  # (no eval: the page's CSP)

        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=str(ARTIFACTS / "comparison-narrow.png"), full_page=True)
        boxes = [page.locator(f"#answer-{x}").bounding_box() for x in "ab"]
        assert boxes[1]["y"] > boxes[0]["y"] + boxes[0]["height"] - 1, "stacked on a narrow screen"

        reply = page.goto(f"{live_server.url}/annotate/item/{others.pk}/")
        assert reply.status == 404, "another annotator's assignment"

    sides = list(HumanJudgment.objects.filter(annotator=a).order_by("pk").values_list("picked_side", flat=True))
    assert sides == ["left", "right", "none"]


@pytest.mark.django_db(transaction=True)
def test_an_answer_from_a_stale_tab_says_it_was_not_counted(live_server):
    study, (a, _) = make_study(n_prompts=3, baselines=("alpaca-65b",), annotators=2)
    with browser() as chromium:
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        first = context.new_page()
        login(first, live_server.url, "ann0", "pw-ann0-secret", "/annotate/")
        first.goto(f"{live_server.url}/annotate/study/{study.name}/next")
        second = context.new_page()  # the same comparison in a second tab (one open claim each)
        second.goto(f"{live_server.url}/annotate/study/{study.name}/next")
        question = first.locator(".card .md").first.inner_text()
        assert second.locator(".card .md").first.inner_text() == question
        with first.expect_navigation():
            first.click("button[value=a]")
        expect(first.locator(".message")).to_have_count(0)
        with second.expect_navigation():
            second.click("button[value=b]")
        warning = second.locator(".message.warning")
        expect(warning).to_have_text(
            "Not counted: you had already answered that comparison (Answer A is significantly better, in another "
            "tab or an earlier visit); your first answer stands."
        )
        assert warning.is_visible()
        expect(second.locator("#progress-count")).to_have_text("1 / 3")
        second.screenshot(path=str(ARTIFACTS / "comparison-not-counted.png"), full_page=True)
    assert list(HumanJudgment.objects.filter(annotator=a).values_list("picked_side", flat=True)) == ["left"]

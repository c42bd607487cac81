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

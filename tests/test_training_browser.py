"""The training pages as a reviewer sees them in Chromium: the example review form laid out in
one column (each label above its field, the fields as wide as the form), and an edit saved."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from evalsite.finetune.models import TrainingDataset, TrainingExample
from tests.browser import ARTIFACTS, browser, login


@pytest.mark.django_db(transaction=True)
def test_a_reviewer_reads_the_review_form_top_to_bottom_and_saves_an_edit(live_server, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    dataset = TrainingDataset.objects.create(name="review-me")
    answer = "\n\n".join(f"Paragraph {n}: " + "a fairly long sentence about the topic. " * 6 for n in range(4))
    example = TrainingExample.objects.create(
        dataset=dataset,
        external_id="ex-1",
        source="authors",
        messages=[{"role": "user", "content": "Explain tides."}, {"role": "assistant", "content": answer}],
    )
    User.objects.create_superuser("chief", "chief@example.org", "chief-password-1")
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        login(page, live_server.url, "chief", "chief-password-1", "/")
        page.goto(f"{live_server.url}/training/examples/{example.pk}/")
        form = page.locator("form#review").bounding_box()
        boxes = {}
        for name in ("prompt", "answer", "note"):
            boxes[name] = (
                page.locator(f"label[for=id_{name}]").bounding_box(),
                page.locator(f"#id_{name}").bounding_box(),
            )
        page.screenshot(path=str(ARTIFACTS / "training-example-review.png"), full_page=True)
        order = []
        for name, (label, field) in boxes.items():
            assert label["y"] + label["height"] <= field["y"] + 1, f"the {name} label sits above its field"
            assert abs(label["x"] - field["x"]) < 2, f"the {name} label starts where its field does"
            assert field["width"] > 0.9 * (form["width"] - 40), f"the {name} field spans the form"
            order.append(field["y"])
        assert order == sorted(order), "prompt, answer and note one under another"
        buttons = page.locator("form#review .actions button").first.bounding_box()
        assert buttons["y"] > boxes["note"][1]["y"] + boxes["note"][1]["height"]
        page.fill("#id_answer", "A shorter answer, edited.")
        page.click("form#review button[value=edit]")
        page.wait_for_url(f"{live_server.url}/training/datasets/review-me/")
    example.refresh_from_db()
    assert example.messages[-1]["content"] == "A shorter answer, edited." and example.status == "accepted"
    assert example.original_messages[-1]["content"] == answer

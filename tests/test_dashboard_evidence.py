"""The evidence engine in a study: people's shares with the judge's help where people have not
voted, the judge's calibration against this study's people, win rates controlled for length."""

import numpy as np
import pytest
from bs4 import BeautifulSoup

from evalsite.annotation.models import Comparison
from evalsite.dashboard import data, figures
from evalsite.judging.models import JudgeConfig, JudgeJob
from stats.evidence import ppi_mean
from tests.annotation_fixtures import make_study, vote
from tests.dashboard_fixtures import recorded_verdicts

pytestmark = pytest.mark.django_db

# per comparison (in prompt order): the people's vote (None: not voted yet) and the judge's outcome
PLAN = [
    ("a", "candidate"),
    ("a", "candidate"),
    ("b", "baseline"),
    ("tie", "tie"),
    ("a", "baseline"),  # the judge disagrees here
    ("a", "candidate"),
    (None, "candidate"),
    (None, "candidate"),
    (None, "baseline"),
    (None, "tie"),
    (None, "candidate"),
    (None, "candidate"),
]
VERDICTS = {"candidate": ("first", "second"), "baseline": ("second", "first"), "tie": ("tie", "tie")}


def half_voted_study():
    study, (a, _) = make_study(n_prompts=len(PLAN), baselines=("alpaca-65b",))
    comparisons = list(Comparison.objects.filter(study=study).order_by("prompt__id"))
    config = JudgeConfig.objects.create(name="gpt-4-recorded", model="gpt-4", base_url="http://127.0.0.1:9/v1")
    job = JudgeJob.objects.create(study=study, config=config, status="done")
    for comparison, (people, judge) in zip(comparisons, PLAN, strict=True):
        if people:
            vote(a, comparison, people)
        recorded_verdicts(job, comparison, VERDICTS[judge])
    return study, job


def indicators(outcomes):
    return np.array([[o == "candidate", o == "tie", o == "baseline"] for o in outcomes], dtype=float)


def test_the_people_shares_with_the_judges_help_are_ppi_over_the_voted_and_the_unvoted():
    study, job = half_voted_study()
    assisted = data.dashboard(study, "majority", job)["evidence"]["assisted"]["alpaca-65b"]
    votes = {"a": "candidate", "b": "baseline", "tie": "tie"}
    y = indicators([votes[p] for p, _ in PLAN if p])
    f = indicators([j for p, j in PLAN if p])
    unvoted = indicators([j for p, j in PLAN if not p])
    expected = [ppi_mean(y[:, k], f[:, k], unvoted[:, k]) for k in range(3)]
    assert (assisted["n"], assisted["judge_only"]) == (6, 6)
    assert (assisted["win"], assisted["tie"], assisted["loss"]) == pytest.approx([e.value for e in expected])
    # shares stay shares: the interval is cut at 0 and 1
    assert assisted["win_ci"] == pytest.approx((max(expected[0].low, 0), min(expected[0].high, 1)))
    assert 0 < assisted["lam"] <= 1, "a judge that mostly agrees gets weight"


def test_figure_1_shows_the_judge_assisted_bar_beside_the_peoples_in_the_page_and_the_exports(staff_client):
    study, job = half_voted_study()
    page = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/?job={job.pk}").content, "html.parser")
    rows = page.select("#figure1 table.figure-table tbody tr")
    assert [r["class"] for r in rows] == [["people"], ["assisted"]]
    assert rows[1].select("td")[-1].get_text(strip=True).startswith("people + the judge on 6 more")
    assert [t.get_text() for t in page.select("#figure1 svg text") if t.get_text().startswith("judge-assisted")] == [
        "judge-assisted, +6"
    ]
    table = figures.build(study, job=job).table()
    assert [(r["figure"], r["annotator"], r["judge_only"]) for r in table if r["figure"] == "1 (human)"] == [
        ("1 (human)", "people", None),
        ("1 (human)", "people, judge-assisted", 6),
    ]


def test_the_calibration_panel_counts_the_judge_against_the_people():
    study, job = half_voted_study()
    c = data.dashboard(study, "majority", job)["evidence"]["calibration"]
    # people (rows) x judge (columns), candidate / tie / baseline: 5 agree, one candidate called baseline
    assert c["matrix"] == [[3, 0, 1], [0, 1, 0], [0, 0, 1]]
    assert (c["n"], c["agreement"], c["agreement_without_ties"]) == (6, pytest.approx(5 / 6), pytest.approx(4 / 5))
    # the candidate's answers are the longer ones here: "longer wins" agrees on the 4 candidate wins of 5
    assert (c["longer_answer_agreement"], c["longer_answer_n"]) == (pytest.approx(4 / 5), 5)


def test_win_rates_controlled_for_length_for_people_and_judge(staff_client):
    study, job = half_voted_study()
    rows = data.dashboard(study, "majority", job)["evidence"]["length_control"]
    assert [r["baseline"] for r in rows] == ["alpaca-65b"]
    people, judge = rows[0]["people"], rows[0]["judge"]
    assert people["n"] == 6 and judge["n"] == 12
    assert people["raw"] == pytest.approx((4 + 0.5) / 6) and judge["raw"] == pytest.approx((7 + 1) / 12)
    # the page's first request leaves them to its second (they read both answers' style everywhere)
    first = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/?job={job.pk}").content, "html.parser")
    assert first.select_one("#evidence[data-panel]") is not None and not first.select("#length-control")
    second = staff_client.get(f"/dashboard/{study.name}/?job={job.pk}&panel=evidence")
    page = BeautifulSoup(second.content, "html.parser")
    cells = [td.get_text(strip=True) for td in page.select("#length-control tbody tr td")]
    assert cells[0] == "alpaca-65b" and cells[1] == "75%" and cells[4] == "67%"
    style = [[td.get_text(strip=True) for td in tr.select("td")] for tr in page.select("table.style-control tbody tr")]
    assert [row[:3] for row in style] == [["alpaca-65b", "people", "75%"], ["alpaca-65b", "judge", "67%"]]


def test_a_judge_that_is_one_of_the_systems_shows_its_self_preference():
    study, job = half_voted_study()
    study.baselines.filter(name="alpaca-65b").update(backend_config={"model": "gpt-4"})  # the judge's model
    c = data.dashboard(study, "majority", job)["evidence"]["calibration"]
    # the baseline wins by the judge on 2 of the 6 voted comparisons (p2, p4), by people on 1 (p2)
    assert c["self_preference"] == [
        {
            "system": "alpaca-65b",
            "role": "baseline",
            "judge": pytest.approx(2 / 6),
            "people": pytest.approx(1 / 6),
            "n": 6,
        }
    ]
    study.baselines.update(backend_config={"model": "other"})
    assert data.dashboard(study, "majority", job)["evidence"]["calibration"]["self_preference"] == []


@pytest.mark.django_db(transaction=True)
def test_the_evidence_panels_in_the_browser(live_server):
    from django.contrib.auth.models import User

    from tests.browser import ARTIFACTS, browser, login

    study, job = half_voted_study()
    User.objects.create_superuser("chief", "chief@example.org", "chief-password-1")
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        login(page, live_server.url, "chief", "chief-password-1", f"/dashboard/{study.name}/?job={job.pk}")
        page.wait_for_selector("#figure1 svg")
        assert page.locator("#figure1 tr.assisted").is_visible()
        page.wait_for_selector("#calibration table.calibration")  # the page's second request
        assert page.locator("#calibration table.calibration").is_visible()
        assert page.locator("#length-control table.length-control").is_visible()
        assert page.locator("#blinding").is_visible()  # what reads every answer comes with them
        # the figures refresh every 10 s; the second requests' answers stay in view, and are asked
        # again only once a minute (they read every judgment and answer)
        asked = []
        page.on("request", lambda r: asked.append(r.url) if "panel=" in r.url else None)
        with page.expect_response(lambda r: "fragment=1" in r.url, timeout=20000):
            pass
        page.wait_for_timeout(300)
        assert page.locator("#calibration table.calibration").is_visible()
        assert page.locator("#agreement .details table").first.is_visible()
        assert asked == [], asked
        page.locator("#figure1").screenshot(path=str(ARTIFACTS / "dashboard-judge-assisted.png"))
        page.locator("#calibration").screenshot(path=str(ARTIFACTS / "dashboard-calibration.png"))
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            page.locator("#evidence").screenshot(path=str(ARTIFACTS / f"dashboard-evidence-{width}.png"))


def test_style_features_are_counted_in_the_rendered_answers():
    from evalsite.catalog.models import Response, render_responses
    from evalsite.dashboard.estimates import study_rows

    study, job = half_voted_study()
    comparison = Comparison.objects.filter(study=study).order_by("prompt__id").first()
    styled = "## Plan\n\nFirst:\n\n- **one**\n- two\n- three\n\n### Then\n\n**done** <h2>raw</h2>"
    Response.objects.filter(pk=comparison.candidate_response_id).update(text=styled, html=None, completion_tokens=30)
    render_responses(Response.objects.filter(pk=comparison.candidate_response_id))
    rows = study_rows(study, job, "majority")["alpaca-65b"]
    [style] = rows.style[rows.pk == comparison.pk]
    # the styled one: length 30 tokens, 3 headers (the raw <h2> is kept by the sanitiser and shows
    # as one), 3 list items, 2 bold spans; the baseline has none
    assert style[:4].tolist() == [30.0, 3.0, 3.0, 2.0]
    assert style[5:].tolist() == [0.0, 0.0, 0.0]
    stored = Response.objects.get(pk=comparison.candidate_response_id)
    assert (stored.style_length, stored.style_headers, stored.style_lists, stored.style_bold) == (30, 3, 3, 2)
    # an answer rendered before the style was stored (the migration counts it in SQL the same way)
    Response.objects.all().update(style_length=None, style_headers=None, style_lists=None, style_bold=None)
    again = study_rows(study, job, "majority")["alpaca-65b"]
    assert again.style.tolist() == rows.style.tolist()

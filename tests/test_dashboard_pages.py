import csv
import io
import json

import pytest
from bs4 import BeautifulSoup
from django.core.management import call_command

from evalsite.annotation import studies
from evalsite.dashboard import data
from tests.dashboard_fixtures import seeded_study

pytestmark = pytest.mark.django_db


def by_baseline(rows):
    return {r["baseline"]: r for r in rows}


def test_figure_1_and_2_numbers_for_a_seeded_study():
    study, job, _ = seeded_study()
    result = data.dashboard(study, "majority", job)
    human = by_baseline(result["human"])
    assert (human["alpaca-65b"]["win"], human["alpaca-65b"]["tie"], human["alpaca-65b"]["loss"]) == (0.25, 0.5, 0.25)
    assert (human["davinci-003"]["win"], human["davinci-003"]["loss"], human["davinci-003"]["n"]) == (0.75, 0.25, 4)
    assert [r["baseline"] for r in result["human"]] == ["davinci-003", "alpaca-65b"], (
        "best result on top, as in the paper"
    )
    judge = by_baseline(result["judge"]["figure"])["alpaca-65b"]
    # p0, p1: candidate both orders; p2: orders disagree -> tie; p3: one order failed -> not counted
    assert (judge["n"], judge["loss"]) == (3, 0.0)
    assert (judge["win"], judge["tie"]) == (pytest.approx(2 / 3), pytest.approx(1 / 3))
    assert judge["dropped"] == {"one order unreadable": 1} and result["judge"]["dropped"] == {"one order unreadable": 1}
    assert (result["judge"]["consistency"], result["judge"]["pairs_with_both_orders"]) == (pytest.approx(2 / 3), 3)


def test_figure_1s_vote_patterns_from_the_rows_the_page_reads_are_the_databases_counts():
    """The page reads every comparison once and counts Figure 1's vote patterns from those rows: the
    same counts the database's GROUP BY gives, complete comparisons only (one vote in: not counted)."""
    from django.db.models import Count

    from evalsite.annotation.models import Comparison
    from evalsite.dashboard.estimates import study_rows

    study, job, _ = seeded_study()
    # davinci's one loss not complete yet (as if a vote were still to come): counted nowhere
    Comparison.objects.filter(study=study, baseline__name="davinci-003", votes_candidate=0).update(completed_at=None)
    patterns = data.vote_patterns(study_rows(study, job, "majority", style=False))
    grouped = (
        Comparison.objects.filter(study=study, is_gold=False, completed_at__isnull=False)
        .values_list("baseline__name", "votes_candidate", "votes_baseline", "votes_tie")
        .annotate(n=Count("pk"))
    )
    counted: dict = {}
    for name, c, b, t, n in grouped:
        counted.setdefault(name, {})[(c, b, t)] = n
    assert patterns == counted
    assert patterns["alpaca-65b"] == {(2, 0, 0): 1, (1, 0, 1): 1, (0, 2, 0): 1, (0, 0, 2): 1}
    assert patterns["davinci-003"] == {(2, 0, 0): 3}


def test_a_bar_on_too_few_votes_says_so_in_every_form_of_its_figure(staff_client):
    """Four comparisons a baseline: the 95% interval on a win share spans most of the bar, and the
    page, the SVG (so the PNG), the CSV, the JSON and study status all say so."""
    study, job, _ = seeded_study()
    human = by_baseline(data.dashboard(study, "majority", job)["human"])
    low, high = human["alpaca-65b"]["win_ci"]
    expected = (
        f"Too few votes for alpaca-65b so far (4 comparisons): its win share is known only to within "
        f"{low * 100:.0f}-{high * 100:.0f}% (95% interval); more votes narrow it."
    )
    page = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/").content, "html.parser")
    assert expected in [li.get_text() for li in page.select("#figure1 .figure-notes li")]
    svg = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/export/figure1.svg").content, "html.parser")
    caption = " ".join(t.get_text() for t in svg.select("g.notes text"))
    assert "Too few votes for alpaca-65b so far (4 comparisons)" in caption
    lines = staff_client.get(f"/dashboard/{study.name}/export/csv").content.decode().splitlines()
    assert f"# note (Figure 1): {expected}" in lines
    notes = staff_client.get(f"/dashboard/{study.name}/export/json").json()["notes"]
    assert expected in notes["figure1"]
    # the judge's bar for alpaca rests on 3 comparisons: Figure 2 says so too
    assert any(n.startswith("Too few votes for alpaca-65b so far (3 comparisons)") for n in notes["figure2"])
    status = io.StringIO()
    call_command("study", "status", study.name, stdout=status)
    said = status.getvalue().splitlines()
    assert "read with care:" in said
    assert any(line.startswith("  Too few votes for alpaca-65b so far (4 complete comparisons)") for line in said)


def test_a_bar_with_enough_votes_has_no_such_note():
    from evalsite.core.figures import few_votes

    assert few_votes("alpaca-65b", 300, (0.44, 0.56), "win share", "comparisons") is None
    assert few_votes("alpaca-65b", 0, None, "win share", "comparisons") is None
    assert few_votes("alpaca-65b", 12, (0.2, 0.7), "win share", "comparisons").startswith("Too few votes")


def test_every_vote_counts_when_asked():
    study, job, _ = seeded_study()
    alpaca = by_baseline(data.dashboard(study, "all", job)["human"])["alpaca-65b"]
    # votes: a a | a tie | b b | tie tie -> 3 wins, 3 ties, 2 losses of 8
    assert (alpaca["win"], alpaca["tie"], alpaca["loss"], alpaca["votes"]) == (3 / 8, 3 / 8, 2 / 8, 8)


def test_excluded_annotators_are_left_out():
    study, job, (a, b) = seeded_study()
    studies.set_excluded(study, b, True)
    alpaca = by_baseline(data.dashboard(study, "majority", job)["human"])["alpaca-65b"]
    assert (alpaca["win"], alpaca["tie"], alpaca["loss"]) == (0.5, 0.25, 0.25)  # a alone: a, a, b, tie


def test_agreement_and_scorecard():
    study, job, _ = seeded_study()
    result = data.dashboard(study, "majority", job)
    # alpaca pairs: (c,c)=1 (c,t)=.5 (b,b)=1 (t,t)=1 -> 3.5/4; davinci's four pairs agree -> 7.5/8
    assert result["person_person"]["tie_discounted_accuracy"] == pytest.approx(0.9375)
    assert {a["annotator"]: a["pairs"] for a in result["person_person"]["per_annotator"]} == {"ann0": 8, "ann1": 8}
    card = result["judge"]["scorecard"]
    assert (card["first_wins"], card["second_wins"], card["api_failures"], card["verdicts"]) == (5, 2, 1, 8)
    assert card["position_bias"] == pytest.approx(5 / 7)


def test_the_page_shows_the_figures_with_the_papers_numbers(staff_client):
    study, job, _ = seeded_study()
    html = staff_client.get(f"/dashboard/{study.name}/?job={job.pk}").content.decode()
    assert "Figure 1: human preference" in html and "Figure 2: gpt-4 as the annotator" in html
    assert "The paper (LIMA 65B, 300 prompts)" in html and "53/21/26" in html
    assert "<td>alpaca-65b</td><td>4</td>" in html and "25%" in html and "75%" in html
    assert "crowd-crowd 82%" in html
    panel = staff_client.get(f"/dashboard/{study.name}/?job={job.pk}&panel=agreement").content.decode()
    assert "<td>ann0</td><td>8</td><td>0.938</td>" in panel
    judge_line = BeautifulSoup(panel, "html.parser").select_one("#judge-kappa").get_text(" ", strip=True)
    assert judge_line.startswith("People with gpt-4: Cohen's kappa")
    fragment = staff_client.get(f"/dashboard/{study.name}/?job={job.pk}&fragment=1").content.decode()
    assert "<html" not in fragment and "Figure 1" in fragment


def test_the_agreement_panel_reads_no_judge_call_the_job_page_counts_their_cost(staff_client):
    """The agreement panel shows the judge's agreement and warnings, not money: it does not join
    every verdict to its call (at a million verdicts 0.6 s of the panel's 2.5); the job's page
    says what the calls behind the verdicts cost."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    study, job, _ = seeded_study()
    with CaptureQueriesContext(connection) as queries:
        panel = staff_client.get(f"/dashboard/{study.name}/?job={job.pk}&panel=agreement")
    assert panel.status_code == 200
    assert BeautifulSoup(panel.content, "html.parser").select_one("#judge-kappa") is not None
    assert not [q["sql"] for q in queries.captured_queries if "judging_judgecall" in q["sql"]]
    page = staff_client.get(f"/judge/jobs/{job.pk}/").content
    cost = BeautifulSoup(page, "html.parser").select_one("td.cost")
    assert cost is not None and cost.get_text(" ", strip=True).split()[0].replace(".", "", 1).isdigit()


def test_exports_csv_json_and_svg(staff_client):
    study, job, _ = seeded_study()
    text = staff_client.get(f"/dashboard/{study.name}/export/csv?job={job.pk}").content.decode()
    # the figures' notes lead as # lines, as pandas reads them with comment="#"
    rows = list(csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#")))
    alpaca_human = next(r for r in rows if r["baseline"] == "alpaca-65b" and r["figure"] == "1 (human)")
    assert (alpaca_human["win"], alpaca_human["tie"], alpaca_human["n"]) == ("0.2500", "0.5000", "4")
    payload = staff_client.get(f"/dashboard/{study.name}/export/json?job={job.pk}").json()
    assert payload["judge"]["scorecard"]["first_wins"] == 5
    assert payload["breakdowns"]["source"] and payload["leaderboard"][-1]["system"] == "davinci-003"
    svg = staff_client.get(f"/dashboard/{study.name}/export/figure1.svg").content.decode()
    assert svg.startswith("<svg") and "alpaca-65b" in svg


def test_annotators_get_403(annotator_client):
    study, _, _ = seeded_study()
    assert annotator_client.get(f"/dashboard/{study.name}/").status_code == 403
    assert annotator_client.get("/dashboard/").status_code == 403


def test_breakdowns_by_source_and_tag_and_the_drill_down(staff_client):
    from evalsite.catalog.models import Prompt

    study, job, _ = seeded_study()
    Prompt.objects.filter(external_id__in=["p0", "p1"]).update(source="askreddit", tags=["ood"])
    result = data.breakdowns(study)
    # askreddit prompts p0, p1: alpaca win, tie; davinci win, win -> 3 of 4 wins
    assert result["source"]["askreddit"]["n"] == 4 and result["source"]["askreddit"]["win"] == 0.75
    assert result["tag"]["ood"]["n"] == 4 and "safety" not in result["tag"]
    panel = staff_client.get(f"/dashboard/{study.name}/?panel=agreement").content.decode()
    assert "source: askreddit" in panel and "tag: ood" in panel
    svg = staff_client.get(f"/dashboard/{study.name}/export/figure1.svg").content.decode()
    assert "/drill?baseline=alpaca-65b&amp;outcome=baseline" in svg
    drill = staff_client.get(f"/dashboard/{study.name}/drill?baseline=alpaca-65b&outcome=baseline").content.decode()
    assert [h.get_text() for h in BeautifulSoup(drill, "html.parser").select("h3 .prompt-id")] == ["p2"]
    assert "ann0: baseline" in drill and "ann1: baseline" in drill and "cand_first" in drill
    assert staff_client.get(f"/dashboard/{study.name}/drill?baseline=x&outcome=nope").status_code == 400


def test_the_index_shows_a_leaderboard_and_absolute_ratings(staff_client):
    from evalsite.catalog.models import Response
    from evalsite.judging.models import JudgeCall, Rating, RatingJob

    study, job, _ = seeded_study()
    rows = data.leaderboard(bootstrap=50)
    # davinci-003 lost 3 of 4 to lima-65b; alpaca-65b drew with it (1 win, 2 ties, 1 loss)
    strength = {r["system"]: r["strength"] for r in rows}
    assert rows[-1]["system"] == "davinci-003" and strength["lima-65b"] > strength["davinci-003"] + 0.5
    assert strength["lima-65b"] == pytest.approx(strength["alpaca-65b"], abs=0.05)
    assert all(r["low"] <= r["strength"] <= r["high"] for r in rows)
    # four votes a pair cannot order three systems: every rank-set holds each system's place and more
    assert all(r["rank_low"] <= place <= r["rank_high"] for place, r in enumerate(rows, 1))
    assert all(r["rank_high"] > r["rank_low"] for r in rows)
    rating_job = RatingJob.objects.create(
        config=job.config, system=study.candidate, prompt_set=study.prompt_set, kind="fpe", status="done"
    )
    for k, (response, grade) in enumerate(
        zip(Response.objects.filter(system=study.candidate), ["excellent", "pass", "fail", "excellent"], strict=False)
    ):
        call = JudgeCall.objects.create(
            key=f"r{k}",
            model="m",
            template="fpe",
            template_hash="x",
            reserved_at=response.created_at,
            status="done",
            verdict=grade,
            raw_output=grade.title(),
        )
        Rating.objects.create(job=rating_job, response=response, call=call, value=grade)
    html = staff_client.get("/dashboard/").content.decode()
    assert "Absolute quality (Figures 3 and 7)" in html and "Excellent" in html
    assert html.index("<td>lima-65b</td>") < html.index("<td>davinci-003</td>")
    shown = [td.get_text() for td in BeautifulSoup(html, "html.parser").select("#leaderboard td.rank-set")]
    assert shown == [f"{r['rank_low']} to {r['rank_high']}" for r in rows]


def test_report_writes_a_self_contained_html_with_figures_and_tables(tmp_path):
    from django.core.management import call_command

    study, job, _ = seeded_study()
    call_command("report", study.name, out=tmp_path, job=job.pk)
    html = (tmp_path / "index.html").read_text()
    assert "<svg" in html and "Figure 1: human preference" in html and "Figure 2: gpt-4 as the annotator" in html
    assert "<link" not in html and "<script" not in html and "src=" not in html, "self-contained"
    links = [a.get("href") or a.get("xlink:href") for a in BeautifulSoup(html, "html.parser").find_all("a")]
    assert [href for href in links if href and href.startswith("/")] == [], "no link into the site: it stands alone"
    assert (tmp_path / "figure1.svg").read_text().startswith("<svg")
    assert (tmp_path / "figure1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "alpaca-65b" in (tmp_path / "figures.csv").read_text()


def test_png_export_of_a_figure(staff_client):
    study, job, _ = seeded_study()
    reply = staff_client.get(f"/dashboard/{study.name}/export/figure2.png?job={job.pk}")
    assert reply.status_code == 200 and reply.content[:4] == b"\x89PNG"


def test_the_page_the_report_and_the_exports_show_the_same_tables(staff_client, tmp_path):
    from django.core.management import call_command

    study, job, _ = seeded_study()
    page = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/?job={job.pk}").content, "html.parser")
    call_command("report", study.name, out=tmp_path, job=job.pk, no_png=True)
    report = BeautifulSoup((tmp_path / "index.html").read_text(), "html.parser")

    def cells(soup, selector):
        return [[td.get_text(" ", strip=True) for td in tr.select("td")] for tr in soup.select(selector)]

    human = "table.figure-table tbody tr"
    judge = "table.judge-per-baseline tr:has(td)"
    assert cells(page, human) == cells(report, human) and len(cells(page, human)) == 2
    assert cells(page, judge) == cells(report, judge) and cells(page, judge)[0][:2] == ["alpaca-65b", "3"]
    base = f"/dashboard/{study.name}/export"
    assert staff_client.get(f"{base}/csv?job={job.pk}").content.decode() == (tmp_path / "figures.csv").read_text()
    exported = staff_client.get(f"{base}/json?job={job.pk}").content.decode()
    assert exported == (tmp_path / "figures.json").read_text()
    # and the rows on the page are the exported numbers
    rows = [r for r in json.loads(exported)["figures"] if r["figure"] == "1 (human)"]
    shown = [
        [r["baseline"], str(r["n"]), f"{r['win'] * 100:.0f}%", f"{r['tie'] * 100:.0f}%", f"{r['loss'] * 100:.0f}%"]
        for r in rows
    ]
    assert [c[:5] for c in cells(page, human)] == shown


def test_figure_2_bars_drill_down_to_the_judges_outcomes_and_the_pngs_are_linked(staff_client):
    study, job, _ = seeded_study()
    svg = staff_client.get(f"/dashboard/{study.name}/export/figure2.svg?job={job.pk}").content.decode()
    assert f"/drill?baseline=alpaca-65b&amp;outcome=candidate&amp;job={job.pk}" in svg
    drill = staff_client.get(f"/dashboard/{study.name}/drill?baseline=alpaca-65b&outcome=candidate&job={job.pk}")
    soup = BeautifulSoup(drill.content, "html.parser")
    assert [h.get_text() for h in soup.select("h3 .prompt-id")] == ["p0", "p1"], "the judge's wins, not the people's"
    assert "the judge" in soup.select_one("h1").get_text()
    assert staff_client.get(f"/dashboard/{study.name}/drill?baseline=x&outcome=tie&job=abc").status_code == 400
    assert staff_client.get(f"/dashboard/{study.name}/drill?baseline=x&outcome=tie&job=99999").status_code == 404
    page = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/?job={job.pk}").content, "html.parser")
    pngs = [a["href"] for a in page.select("a[href*='.png']")]
    assert pngs == [
        f"/dashboard/{study.name}/export/figure1.png?rule=majority",
        f"/dashboard/{study.name}/export/figure2.png?job={job.pk}",
    ]


def test_the_staff_home_says_where_to_start_and_what_to_do_next(staff_client):
    from tests.annotation_fixtures import make_study

    def steps():
        page = BeautifulSoup(staff_client.get("/").content, "html.parser")
        card = page.select_one("#start-here")
        return [
            (a.get_text(), p.get_text(" ", strip=True))
            for a, p in zip(
                [s.select_one("strong a") for s in card.select(".start-study")],
                card.select(".start-study .next-step"),
                strict=True,
            )
        ] or [("", card.select_one(".next-step").get_text(" ", strip=True))]

    assert steps()[0][1].startswith("No study yet: make demo makes one end to end")
    study, _ = make_study(n_prompts=3, baselines=("alpaca-65b",), start=False)
    assert steps() == [("lima-study", "Next: start it on its page (it checks every answer is there first).")]
    studies.start_study(study)
    assert steps()[0][1].startswith("Next: bring people to vote")
    page = BeautifulSoup(staff_client.get("/").content, "html.parser")
    assert page.select_one("#start-here .start-study strong a")["href"] == "/dashboard/lima-study/"


def test_the_staff_home_sends_a_judged_study_to_its_figures(staff_client):
    seeded_study()
    page = BeautifulSoup(staff_client.get("/").content, "html.parser")
    [study] = page.select("#start-here .start-study")
    assert "8 of 8 comparisons complete" in study.select_one(".muted").get_text()
    step = study.select_one(".next-step").get_text()
    assert step.startswith("Next: read its figures on the dashboard")
    assert "manage.py study status lima-study says" in step and "`" not in step, "a command, not Markdown"

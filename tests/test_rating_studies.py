"""Rating studies (Figure 3): people grade one response at a time Fail / Pass / Excellent, with
overlap; prompts tagged safety also ask safe / unsafe; the dashboard shows the people's shares
with intervals beside the judge's grades of the same responses and the paper's."""

from __future__ import annotations

import csv
import json

import pytest
from bs4 import BeautifulSoup
from django.contrib.auth.models import User
from django.core import signing
from django.core.management import CommandError, call_command
from django.test import Client

from evalsite.annotation import rating
from evalsite.annotation.models import HumanRating, RatingItem, Study
from evalsite.annotation.studies import StudyError, start_study
from evalsite.catalog.models import Prompt, PromptSet, Response, System
from evalsite.core.accounts import annotators_group
from evalsite.judging.models import JudgeCall, JudgeConfig, Rating, RatingJob
from tests.openai_stub import OpenAIStub

pytestmark = pytest.mark.django_db


def rated_system(n=6, safety=(), name="lima-7b"):
    prompts = PromptSet.objects.create(name=f"{name}-fig3")
    system = System.objects.create(name=name, kind="candidate", backend="imported")
    for i in range(n):
        prompt = Prompt.objects.create(
            prompt_set=prompts,
            external_id=f"q{i}",
            messages=[{"role": "user", "content": f"Question {i}?"}],
            tags=["safety"] if i in safety else [],
        )
        Response.objects.create(system=system, prompt=prompt, text=f"Answer {i}.")
    return system, prompts


def rater(name, study):
    user = User.objects.create_user(name, password=f"pw-{name}-secret")
    user.groups.add(annotators_group())
    study.annotators.add(user)
    return user


def grade_all(study, user, grades: dict, safes: dict | None = None) -> None:
    """The person grades every item served to them (rating.claim_rating_item, as the page does),
    each with its grade from ``grades`` (item id -> grade) and safe / unsafe from ``safes``."""
    study.refresh_from_db()
    while (item := rating.claim_rating_item(study, user)) is not None:
        rating.submit_rating(item.pk, user, grades[item.pk], (safes or {}).get(item.pk, ""), 20.0)


def test_create_study_of_kind_rating_opens_one_item_per_response(capsys):
    system, prompts = rated_system(4)
    call_command("create_study", candidate=system.name, prompts=prompts.name, kind="rating", overlap=2)
    assert "rating study lima-7b-rated-on-lima-7b-fig3: open with 4 responses to rate" in capsys.readouterr().out
    study = Study.objects.get()
    assert study.kind == Study.Kind.RATING and study.status == Study.Status.OPEN and study.overlap == 2
    assert study.rating_items.count() == 4
    empty = PromptSet.objects.create(name="empty")
    with pytest.raises(CommandError, match="lima-7b has no responses on empty"):
        call_command("create_study", candidate=system.name, prompts="empty", kind="rating")
    with pytest.raises(CommandError, match="a study needs at least one baseline"):
        call_command("create_study", candidate=system.name, prompts=prompts.name)
    assert Study.objects.count() == 1 and empty.studies.count() == 0


def test_each_response_gets_overlap_grades_from_different_people_and_a_double_submit_counts_once():
    system, prompts = rated_system(3)
    study = rating.create_rating_study("fig3", system, prompts, overlap=2)
    start_study(study)
    ann, bob, cy = (rater(n, study) for n in ("ann", "bob", "cy"))
    seen = []
    for user in (ann, bob, cy):
        while (item := rating.claim_rating_item(study, user)) is not None:
            seen.append((user.username, item.pk))
            rating.submit_rating(item.pk, user, "pass", "", 12.0)
    assert len(seen) == 6  # 3 responses x overlap 2
    assert all(item.ratings_done == item.slots_taken == 2 for item in RatingItem.objects.filter(study=study))
    assert len({(u, i) for u, i in seen}) == 6
    assert rating.claim_rating_item(study, cy) is None  # nothing left that wants a grade
    first = RatingItem.objects.filter(study=study).first()
    graders = set(HumanRating.objects.filter(item=first).values_list("annotator__username", flat=True))
    grader = next(u for u in (ann, bob, cy) if u.username in graders)
    _, recorded = rating.submit_rating(first.pk, grader, "excellent", "", 3.0)
    assert not recorded and HumanRating.objects.get(item=first, annotator=grader).grade == "pass"
    never_served = next(u for u in (ann, bob, cy) if u.username not in graders)
    with pytest.raises(StudyError, match="this item was not served to you"):
        rating.submit_rating(first.pk, never_served, "fail", "", 3.0)
    with pytest.raises(StudyError, match="grade must be one of fail, pass, excellent, not 'good'"):
        rating.submit_rating(first.pk, never_served, "good", "", 3.0)
    outsider = User.objects.create_user("out", password="pw-out-secret")
    with pytest.raises(StudyError, match=f"no rating item {first.pk}"):
        rating.submit_rating(first.pk, outsider, "pass", "", 3.0)
    assert RatingItem.objects.get(pk=first.pk).ratings_done == 2, "nothing past the overlap"


def test_a_safety_prompt_needs_safe_or_unsafe_and_the_page_says_why(client):
    system, prompts = rated_system(2, safety=(0,))
    study = rating.create_rating_study("fig3", system, prompts)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.OPEN)
    user = rater("ann", study)
    client.force_login(user)
    page = BeautifulSoup(client.get("/annotate/study/fig3/rate").content, "html.parser")
    item = int(page.select_one("#rate-form")["action"].rstrip("/").split("/")[-1])
    assert page.select_one("#safety") is not None  # q0 comes first and is tagged safety
    assert [b["value"] for b in page.select("#rate-form button[name=grade]")] == ["fail", "pass", "excellent"]
    shown = page.select_one("input[name=shown]")["value"]
    reply = client.post(f"/annotate/rating/{item}", {"grade": "pass", "shown": shown}, follow=True)
    error = BeautifulSoup(reply.content, "html.parser").select_one(".message.error, .messages .error, [class*=error]")
    assert "say whether the response is safe or unsafe" in error.get_text()
    assert not HumanRating.objects.exists()
    client.post(f"/annotate/rating/{item}", {"grade": "pass", "safe": "unsafe", "shown": shown})
    saved = HumanRating.objects.get()
    assert (saved.grade, saved.safe) == ("pass", False) and 0 <= saved.seconds < 60
    # the time comes from the server's signed stamp: a forged or missing one is refused (counted as
    # the longest time, it hid a rater too fast to have read)
    page = BeautifulSoup(client.get("/annotate/study/fig3/rate").content, "html.parser")
    other = int(page.select_one("#rate-form")["action"].rstrip("/").split("/")[-1])
    for forged in ({"shown": signing.dumps({"item": other, "at": 0}, salt="elsewhere")}, {}):
        reply = client.post(f"/annotate/rating/{other}", {"grade": "fail", **forged}, follow=True)
        error = BeautifulSoup(reply.content, "html.parser").select_one("[class*=error]").get_text()
        assert "time stamp is missing or not ours" in error
    assert not HumanRating.objects.filter(item_id=other).exists()
    # the plain "next" link of a rating study leads to the rating page
    assert client.get("/annotate/study/fig3/next")["Location"].endswith("/annotate/study/fig3/rate")
    # another person's study: not found
    stranger = Client()
    stranger.force_login(User.objects.create_user("zed", password="pw-zed-secret"))
    assert stranger.get("/annotate/study/fig3/rate").status_code == 404
    assert stranger.post(f"/annotate/rating/{item}", {"grade": "pass"}).status_code == 404


def test_figure_3_people_beside_the_judge_and_the_paper_with_the_safe_share(staff_client, tmp_path):
    system, prompts = rated_system(6, safety=(4, 5))
    study = rating.create_rating_study("fig3", system, prompts, overlap=2)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.OPEN)
    ann, bob = rater("ann", study), rater("bob", study)
    items = list(RatingItem.objects.filter(study=study).order_by("response__prompt__external_id"))
    # ann: E E P P F P; bob: E P P P F F; safety prompts q4, q5: ann safe safe, bob safe unsafe
    for user, grades, safes in ((ann, "EEPPFP", "ss"), (bob, "EPPPFF", "su")):
        word = {"E": "excellent", "P": "pass", "F": "fail"}
        letters = {item.pk: word[g] for item, g in zip(items, grades, strict=True)}
        safe = {item.pk: "safe" if s == "s" else "unsafe" for item, s in zip(items[4:], safes, strict=True)}
        grade_all(study, user, letters, safe)
    # the judge graded the same responses: E P P F F P
    with OpenAIStub() as stub:
        config = JudgeConfig.objects.create(name="judge", base_url=stub.url, api_key_env="")
    job = RatingJob.objects.create(config=config, system=system, prompt_set=prompts, kind="fpe", status="done")
    for n, (item, value) in enumerate(zip(items, ["excellent", "pass", "pass", "fail", "fail", "pass"], strict=True)):
        call = JudgeCall.objects.create(
            key=f"k{n}", model="m", template="fpe", template_hash="h", reserved_at=job.created_at
        )
        Rating.objects.create(job=job, response=item.response, call=call, value=value)

    # and its safe / unsafe verdicts on the two safety prompts: safe, unsafe
    safety = RatingJob.objects.create(config=config, system=system, prompt_set=prompts, kind="safety", status="done")
    for item, value in zip(items[4:], ["safe", "unsafe"], strict=True):
        call = JudgeCall.objects.create(
            key=f"s{item.pk}", model="gpt-4", template="safety", template_hash="h", reserved_at=job.created_at
        )
        Rating.objects.create(job=safety, response=item.response, call=call, value=value)

    summary = rating.people_rating_summary(study)
    assert summary["ratings"] == 12 and summary["responses"] == 6
    assert summary["excellent"] == pytest.approx(3 / 12) and summary["fail"] == pytest.approx(3 / 12)
    low, high = summary["excellent_ci"]
    assert low < 3 / 12 < high
    assert summary["agreement"]["items"] == 6
    assert summary["safe"]["share"] == pytest.approx(3 / 4) and summary["safe"]["responses"] == 2

    page = BeautifulSoup(staff_client.get("/dashboard/fig3/").content, "html.parser")
    bars = page.select_one("#figure-3 svg")
    labels = [t.get_text() for t in bars.find_all("text")]
    assert "people" in labels and "gpt-4" in labels and "LIMA 65B, the authors" in labels
    assert "50/38/12" in labels
    assert len(bars.select("g.interval")) >= 2
    # majority of the people where there is one (q0 E, q2 P, q3 P, q4 F) against the judge's
    # grade (E, P, F, F): 3 of 4
    judge_row = [td.get_text(" ", strip=True) for td in page.select("#judge-agreement td")]
    assert judge_row[1:3] == ["4", "0.75"]
    assert page.select_one("#safety strong").get_text() == "0.75"
    raters = [[td.get_text() for td in tr.find_all("td")] for tr in page.select("#raters tr")[1:]]
    assert raters == [["ann", "6", "20.0"], ["bob", "6", "20.0"]]
    assert page.select_one("#judge-safe strong").get_text() == "0.50"
    # the study's staff page says what it is and links to the figure
    staff_page = BeautifulSoup(staff_client.get("/annotate/studies/fig3/").content, "html.parser")
    line = staff_page.select_one("#rating-study")
    assert line.select_one(".rated").get_text() == "6" and line.select_one(".grades").get_text() == "12"
    assert line.find("a")["href"] == "/dashboard/fig3/"

    # Figure 3 from the registry in every form: the exports and the report say the same numbers,
    # under the grades' own names
    exported_csv = staff_client.get("/dashboard/fig3/export/figure3.csv").content.decode().splitlines()
    notes = [line for line in exported_csv if line.startswith("#")]
    assert exported_csv[: len(notes)] == notes, "the notes lead"
    # six responses: both bars too thin to read, and the figure says so wherever it goes
    assert [n.split(" so far")[0] for n in notes] == [
        "# note: Too few votes for people",
        "# note: Too few votes for gpt-4",
    ]
    table = list(csv.DictReader(exported_csv[len(notes) :]))
    assert [r["label"] for r in table] == ["people", "gpt-4"]
    assert float(table[0]["excellent"]) == pytest.approx(3 / 12, abs=1e-4)
    assert float(table[1]["fail"]) == pytest.approx(2 / 6, abs=1e-4)
    assert float(table[0]["excellent_low"]) < 0.25 < float(table[0]["excellent_high"])
    exported = json.loads(staff_client.get("/dashboard/fig3/export/figure3.json").content)
    assert exported["figure"] == "figure3" and exported["rows"][1]["pass"] == pytest.approx(3 / 6)
    assert exported["notes"] == [n.removeprefix("# note: ") for n in notes]
    svg = staff_client.get("/dashboard/fig3/export/figure3.svg")
    assert svg["Content-Type"] == "image/svg+xml" and "50/38/12" in [
        t.get_text() for t in BeautifulSoup(svg.content, "html.parser").find_all("text")
    ]
    assert staff_client.get("/dashboard/fig3/export/figure1.svg").status_code == 404, "a rating study has no Figure 1"
    out = tmp_path / "report"
    call_command("report", "fig3", out=out, no_png=True)
    assert list(csv.DictReader(line for line in (out / "figure3.csv").open() if not line.startswith("#"))) == table
    report = BeautifulSoup((out / "index.html").read_text(), "html.parser")
    assert "gpt-4" in [t.get_text() for t in report.select("#figure-3 svg text")]
    assert report.select_one("#safety strong").get_text() == "0.75"
    assert not report.select("a[href^='/']"), "the report stands alone: no link into the site"


def test_staff_create_and_start_a_rating_study_from_the_page(staff_client):
    system, prompts = rated_system(3)
    reply = staff_client.post(
        "/annotate/studies/",
        {"name": "graded", "kind": "rating", "candidate": system.pk, "prompt_set": prompts.pk, "overlap": 2},
    )
    assert reply["Location"] == "/annotate/studies/graded/"
    study = Study.objects.get(name="graded")
    assert (study.kind, study.status, study.rating_items.count()) == ("rating", "draft", 3)
    started = staff_client.post("/annotate/studies/graded/start", follow=True)
    assert [str(m) for m in started.context["messages"]] == ["study opened with 3 responses to grade"]
    study.refresh_from_db()
    assert study.status == "open"
    # a pairwise study from the same form still needs a baseline
    refused = staff_client.post(
        "/annotate/studies/",
        {"name": "pairs", "candidate": system.pk, "prompt_set": prompts.pk, "overlap": 1},
        follow=True,
    )
    assert [str(m) for m in refused.context["messages"]] == ["a study needs at least one baseline"]


@pytest.mark.django_db(transaction=True)
def test_many_people_grading_at_once_keep_every_item_within_its_overlap():
    """Eight people in threads, each claiming and grading as fast as they can, on five items of
    overlap 2: every item gets exactly two grades from two different people, none more."""
    import threading

    from django.db import connection

    system, prompts = rated_system(5)
    study = rating.create_rating_study("fig3", system, prompts, overlap=2)
    start_study(study)
    people = [rater(f"p{k}", study) for k in range(8)]
    errors: list[Exception] = []

    def grade(user) -> None:
        try:
            while (item := rating.claim_rating_item(study, user)) is not None:
                rating.submit_rating(item.pk, user, "pass", "", 5.0)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=grade, args=(u,)) for u in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    for item in RatingItem.objects.filter(study=study):
        graders = list(HumanRating.objects.filter(item=item).values_list("annotator_id", flat=True))
        assert len(graders) == len(set(graders)) == item.ratings_done == 2


def test_a_second_grade_from_a_stale_tab_says_the_first_one_stands(client):
    system, prompts = rated_system(2)
    study = rating.create_rating_study("fig3", system, prompts)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.OPEN)
    client.force_login(rater("ann", study))
    page = BeautifulSoup(client.get("/annotate/study/fig3/rate").content, "html.parser")
    item = int(page.select_one("#rate-form")["action"].rstrip("/").split("/")[-1])
    shown = page.select_one("input[name=shown]")["value"]
    for grade in ("pass", "pass"):  # the same grade twice (a double click) loses nothing: no word
        reply = client.post(f"/annotate/rating/{item}", {"grade": grade, "shown": shown}, follow=True)
        assert BeautifulSoup(reply.content, "html.parser").select(".message") == []
    reply = client.post(f"/annotate/rating/{item}", {"grade": "fail", "shown": shown}, follow=True)
    [said] = BeautifulSoup(reply.content, "html.parser").select(".message.warning")
    assert said.get_text() == (
        "Not counted: you had already graded that answer (Pass, in another tab or an earlier visit); your first "
        "grade stands."
    )
    assert list(HumanRating.objects.values_list("grade", flat=True)) == ["pass"]

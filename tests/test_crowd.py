"""Crowd participants (Prolific, MTurk): arriving by the study's link, screening, quota, the code at
the end, and the export a team uploads for approvals and bonuses."""

import csv
import io
import json
import statistics
import threading

import pytest
from bs4 import BeautifulSoup
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from evalsite.annotation.models import Assignment, Comparison, HumanJudgment
from evalsite.annotation.studies import create_study
from evalsite.crowd import services
from evalsite.crowd.models import CrowdLink, Participant
from tests.annotation_fixtures import make_study

pytestmark = pytest.mark.django_db


def pid(k: int) -> str:
    return f"{k:024x}"  # a Prolific id: 24 hexadecimal characters


def arrive(client: Client, link: CrowdLink, k: int, follow: bool = False):
    query = {"PROLIFIC_PID": pid(k), "STUDY_ID": "s" * 24, "SESSION_ID": f"session{k}"}
    return client.get(f"/s/{link.token}/", query, follow=follow)


def item_assignment(response) -> Assignment:
    return Assignment.objects.get(pk=response.context["assignment"].pk)


def answer(client: Client, assignment: Assignment, right: bool = True):
    """Pick the candidate (right on gold checks) or the other side."""
    candidate_side = "a" if assignment.candidate_on_left else "b"
    other = "b" if candidate_side == "a" else "a"
    return client.post(f"/annotate/item/{assignment.pk}/judge", {"choice": candidate_side if right else other})


@pytest.fixture
def link():
    study, _ = make_study(n_prompts=12, baselines=("alpaca-65b",), gold_rate=0.34, annotators=0)
    return services.create_link(study, quota=3, screening_items=2, screening_pass=2, completion_url="")


def test_a_participant_arrives_by_the_link_and_is_served_a_gold_check_first(client, link):
    reply = arrive(client, link, 1, follow=True)
    assert reply.status_code == 200 and reply.redirect_chain[-1][0] == f"/s/{link.token}/next"
    participant = Participant.objects.get()
    assert (participant.external_id, participant.platform_study, participant.session) == (pid(1), "s" * 24, "session1")
    assert not participant.user.has_usable_password()
    assert link.study.annotators.filter(pk=participant.user_id).exists()
    assert item_assignment(reply).comparison.is_gold, "the screening block serves gold checks"


def test_the_same_id_on_another_device_resumes_the_same_participant(link):
    first, second = Client(), Client()
    reply = arrive(first, link, 2, follow=True)
    answer(first, item_assignment(reply))
    again = arrive(second, link, 2, follow=True)
    assert Participant.objects.count() == 1 and User.objects.filter(participant__isnull=False).count() == 1
    assert (
        again.context["done"] == 0 and HumanJudgment.objects.filter(annotator__participant__isnull=False).count() == 1
    )
    assert item_assignment(again).comparison.is_gold, "still in the screening block (1 of 2 done)"


@pytest.mark.parametrize(
    "query, problem",
    [
        ({}, "this link has no PROLIFIC_PID"),
        ({"PROLIFIC_PID": "not-an-id"}, "PROLIFIC_PID is not a Prolific id"),
        ({"PROLIFIC_PID": "<script>alert(1)</script>"}, "PROLIFIC_PID is not a Prolific id"),
    ],
)
def test_a_missing_or_malformed_id_gets_a_clear_page_and_no_account(client, link, query, problem):
    users = User.objects.count()
    reply = client.get(f"/s/{link.token}/", query)
    assert reply.status_code == 400
    assert problem in reply.context["problem"]
    assert User.objects.count() == users and not Participant.objects.exists()
    assert "_auth_user_id" not in client.session


def test_an_unknown_link_is_a_404_and_the_flow_needs_the_link(client, link):
    assert client.get("/s/no-such-token/", {"PROLIFIC_PID": pid(3)}).status_code == 404
    assert client.get(f"/s/{link.token}/next").status_code == 403


def test_mturk_workers_arrive_through_the_same_code_and_a_preview_makes_no_account(client, link):
    services.create_link(link.study, platform="mturk", quota=3)
    preview = client.get(f"/s/{link.token}/", {"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": "H1"})
    assert preview.status_code == 200 and preview.templates[0].name == "crowd/preview.html"
    assert not Participant.objects.exists()
    reply = client.get(
        f"/s/{link.token}/", {"workerId": "A1B2C3D4E5F6G7", "assignmentId": "3ABCDEF", "hitId": "H1"}, follow=True
    )
    participant = Participant.objects.get()
    assert (participant.external_id, participant.session, participant.platform_study) == (
        "A1B2C3D4E5F6G7",
        "3ABCDEF",
        "H1",
    )
    assert services.stage(participant).name == "work", "no screening on this link"
    assert item_assignment(reply).annotator_id == participant.user_id


def test_passing_the_screening_then_the_quota_ends_on_the_completion_code(client, link):
    reply = arrive(client, link, 4, follow=True)
    for _ in range(2):  # the screening block, both right
        assignment = item_assignment(reply)
        assert assignment.comparison.is_gold
        reply = client.get(answer(client, assignment)["Location"], follow=True)
    for k in range(3):  # the quota
        assert reply.context["done"] == k and reply.context["target"] == 3
        reply = client.get(answer(client, item_assignment(reply))["Location"], follow=True)
    assert reply.templates[0].name == "crowd/end.html"
    assert reply.context["code"] == link.completion_code
    assert reply.context["return_url"] == f"https://app.prolific.com/submissions/complete?cc={link.completion_code}"
    participant = Participant.objects.get()
    assert participant.status == "completed" and participant.finished_at is not None
    # the ordinary next page cannot take them past the quota
    again = client.get(f"/annotate/study/{link.study.name}/next", follow=True)
    assert again.templates[0].name == "crowd/end.html"


def test_failing_the_screening_ends_with_the_screened_out_code_and_leaves_the_votes_out(client, link):
    reply = arrive(client, link, 5, follow=True)
    first = item_assignment(reply)
    reply = client.get(answer(client, first, right=False)["Location"], follow=True)
    reply = client.get(answer(client, item_assignment(reply))["Location"], follow=True)
    assert reply.templates[0].name == "crowd/end.html" and reply.context["screened_out"]
    assert reply.context["code"] == link.screened_out_code != link.completion_code
    participant = Participant.objects.get()
    assert participant.status == "screened_out"
    assert link.study.excluded.filter(pk=participant.user_id).exists()
    gold = Comparison.objects.get(pk=first.comparison_id)
    assert gold.votes_candidate + gold.votes_baseline + gold.votes_tie == 0, "their votes are not counted"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent first visits need a real database")
@pytest.mark.django_db(transaction=True)
def test_two_tabs_arriving_at_once_make_one_participant():
    study, _ = make_study(n_prompts=6, baselines=("alpaca-65b",), annotators=0)
    link = services.create_link(study, quota=2)
    barrier, replies, errors = threading.Barrier(4), [], []

    def visit():
        try:
            barrier.wait()
            replies.append(arrive(Client(), link, 6).status_code)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=visit) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and replies == [302] * 4
    assert Participant.objects.count() == 1
    assert User.objects.filter(username__startswith="prolific-").count() == 1


def test_the_export_matches_rows_counted_by_hand(link, staff_client):
    done = Client()
    reply = arrive(done, link, 7, follow=True)
    for right in (True, True, True, False, True):  # screening (2), then the quota of 3
        reply = done.get(answer(done, item_assignment(reply), right)["Location"], follow=True)
    out = Client()
    reply = arrive(out, link, 8, follow=True)
    for _ in range(2):
        reply = out.get(answer(out, item_assignment(reply), right=False)["Location"], follow=True)
    arrive(Client(), link, 9)  # arrived, did nothing
    csv_reply = staff_client.get(f"/crowd/{link.study.name}/participants.csv")
    assert csv_reply.status_code == 200 and csv_reply["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(csv_reply.content.decode())))
    assert list(rows[0])[0] == "participant_id"
    by_id = {r["participant_id"]: r for r in rows}
    assert set(by_id) == {pid(7), pid(8), pid(9)}

    finished = Participant.objects.get(external_id=pid(7))
    judged = list(HumanJudgment.objects.filter(annotator=finished.user).order_by("created_at", "pk"))
    after = judged[2:]  # the first two were the screening block
    gold = [j for j in judged if j.comparison.is_gold]
    sided = [j.picked_side for j in after if j.picked_side != "none"]
    row = by_id[pid(7)]
    assert row["status"] == "completed" and row["completion_code"] == link.completion_code
    assert int(row["items_done"]) == 3 == len(after)
    assert float(row["median_seconds"]) == round(statistics.median(j.seconds for j in after), 1)
    assert float(row["total_seconds"]) == round(sum(j.seconds for j in after), 1)
    assert int(row["gold_seen"]) == len(gold)
    assert float(row["gold_accuracy"]) == round(sum(j.outcome == "candidate" for j in gold) / len(gold), 3)
    assert float(row["left_pick_share"]) == round(sided.count("left") / len(sided), 3)
    assert (row["study_id"], row["session_id"]) == ("s" * 24, "session7")

    assert by_id[pid(8)]["status"] == "screened_out" and by_id[pid(8)]["completion_code"] == link.screened_out_code
    assert by_id[pid(8)]["items_done"] == "0" and by_id[pid(8)]["gold_accuracy"] == "0.0"
    assert by_id[pid(9)]["status"] == "active" and by_id[pid(9)]["completion_code"] == ""
    assert Client().get(f"/crowd/{link.study.name}/participants.csv").status_code in (302, 403), "staff only"


def test_link_rules_that_cannot_work_are_refused_and_change_nothing(link):
    study = link.study
    gold = Comparison.objects.filter(study=study, is_gold=True).count()
    with pytest.raises(services.CrowdError, match=f"needs {gold + 1} gold checks but study {study.name} has {gold}"):
        services.create_link(study, screening_items=gold + 1)
    with pytest.raises(services.CrowdError, match="pass mark 3 is more than its 2 items"):
        services.create_link(study, screening_items=2, screening_pass=3)
    with pytest.raises(services.CrowdError, match="must start with https://"):
        services.create_link(study, completion_url="javascript:alert(1)")
    draft = create_study("draft-study", study.candidate, list(study.baselines.all()), study.prompt_set)
    with pytest.raises(services.CrowdError, match="start it before"):
        services.create_link(draft)
    link.refresh_from_db()
    assert (link.quota, link.screening_items, link.screening_pass) == (3, 2, 2)


def test_staff_make_the_link_on_the_study_page_and_see_the_url_to_paste(staff_client):
    study, _ = make_study(n_prompts=4, baselines=("alpaca-65b",), annotators=0)
    reply = staff_client.post(f"/crowd/{study.name}/link", {"platform": "prolific", "quota": "5"}, follow=True)
    link = CrowdLink.objects.get(study=study)
    assert link.quota == 5
    url = reply.context["crowd_url"]
    assert url.startswith(f"http://testserver/s/{link.token}/?")
    assert "PROLIFIC_PID={{%PROLIFIC_PID%}}" in url and "SESSION_ID={{%SESSION_ID%}}" in url
    bad = staff_client.post(f"/crowd/{study.name}/link", {"quota": "many"}, follow=True)
    assert [str(m) for m in bad.context["messages"]] == ["quota: Enter a whole number."]


def test_the_crowd_command_prints_the_url_and_writes_the_export(link, tmp_path):
    from django.core.management import CommandError, call_command

    out = io.StringIO()
    call_command("crowd", "link", link.study.name, "--quota", "4", "--completion-code", "C0DE1234", stdout=out)
    link.refresh_from_db()
    assert (link.quota, link.completion_code) == (4, "C0DE1234")
    printed = out.getvalue().splitlines()
    assert printed[0] == f"study URL for Prolific: {link.study_url('http://127.0.0.1:8000')}"
    assert printed[1] == "completion code: C0DE1234"
    arrive(Client(), link, 10)
    target = tmp_path / "participants.csv"
    call_command("crowd", "export", link.study.name, "--out", str(target), stdout=io.StringIO())
    rows = list(csv.DictReader(target.open()))
    assert [r["participant_id"] for r in rows] == [pid(10)]
    with pytest.raises(CommandError, match="no study named 'nope'"):
        call_command("crowd", "export", "nope")
    with pytest.raises(CommandError, match="pass mark 5 is more than its 1 items"):
        call_command("crowd", "link", link.study.name, "--screening", "1", "--pass", "5")


def test_participants_prolific_says_returned_or_timed_out_are_marked_returned_and_get_no_code(link, tmp_path):
    from django.core.management import CommandError, call_command

    clients = {k: Client() for k in (1, 2, 3)}
    for k, client in clients.items():
        arrive(client, link, k)
    Participant.objects.filter(external_id=pid(3)).update(status=Participant.Status.COMPLETED)
    # Prolific's submissions export: a BOM, CRLF, extra columns, statuses as Prolific writes them
    export = tmp_path / "prolific_export.csv"
    export.write_bytes(
        (
            "\ufeffSubmission id,Participant id,Status,Started at,Time taken\r\n"
            f"64a,{pid(1)},RETURNED,2026-12-04T10:00:00Z,\r\n"
            f"64b,{pid(2)},ACTIVE,2026-12-04T10:01:00Z,\r\n"
            f"64c,{pid(3)},TIMED-OUT,2026-12-04T10:02:00Z,\r\n"
            f"64d,{pid(9)},RETURNED,2026-12-04T10:03:00Z,\r\n"
        ).encode()
    )
    out = io.StringIO()
    call_command("crowd", "returned", link.study.name, "--submissions", str(export), stdout=out)
    assert out.getvalue().splitlines() == [
        "1 participant(s) marked returned",
        f"1 id(s) in the file never arrived by this link: {pid(9)}",
    ]
    statuses = dict(Participant.objects.values_list("external_id", "status"))
    assert statuses == {pid(1): "returned", pid(2): "active", pid(3): "completed"}  # a completed one stays
    rows = {r["participant_id"]: r for r in csv.DictReader(io.StringIO(services.export_csv(link)))}
    assert rows[pid(1)]["status"] == "returned" and rows[pid(1)]["completion_code"] == ""
    # back on the link, a returned participant is told so, and given no code
    page = clients[1].get(f"/s/{link.token}/next")
    assert page.context["returned"] and page.context["code"] == ""
    reason = BeautifulSoup(page.content, "html.parser").select_one(".end-reason").get_text(" ", strip=True)
    assert reason.startswith("You returned this study on Prolific")
    assert BeautifulSoup(page.content, "html.parser").select_one(".completion-code") is None
    # the API's JSON list of submissions reads the same
    api = tmp_path / "submissions.json"
    api.write_text(json.dumps({"results": [{"id": "64b", "participant_id": pid(2), "status": "TIMED-OUT"}]}))
    call_command("crowd", "returned", link.study.name, "--submissions", str(api), stdout=io.StringIO())
    assert Participant.objects.get(external_id=pid(2)).status == "returned"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,state\n1,RETURNED\n")
    with pytest.raises(CommandError, match="bad.csv:1: needs the columns 'Participant id' and 'Status'"):
        call_command("crowd", "returned", link.study.name, "--submissions", str(bad))


def test_a_rating_study_gets_no_crowd_link():
    from evalsite.annotation.rating import create_rating_study
    from evalsite.annotation.studies import start_study
    from evalsite.catalog.models import PromptSet, System

    study, _ = make_study(n_prompts=2, baselines=("alpaca-65b",))
    rated = create_rating_study("graded", System.objects.get(name="lima-65b"), PromptSet.objects.get(), overlap=1)
    start_study(rated)
    with pytest.raises(services.CrowdError, match="graded is a rating study: crowd links serve pairwise studies"):
        services.create_link(rated)


def prolific_export(path, rows) -> None:
    """Prolific's submissions export as its study page writes it: a BOM, CRLF, extra columns."""
    lines = ["\ufeffSubmission id,Participant id,Status,Started at"]
    lines += [f"s{k},{participant},{status},2026-12-06T10:00:00Z" for k, (participant, status) in enumerate(rows)]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())


def vote_as_participant(client: Client, link: CrowdLink, k: int) -> None:
    """Arrive, pass the screening block (right on both gold checks), then judge items until one
    that is not a gold check is judged."""
    reply = arrive(client, link, k, follow=True)
    for _ in range(10):
        assignment = item_assignment(reply)
        answer(client, assignment)
        if not assignment.comparison.is_gold:
            return
        reply = client.get(f"/s/{link.token}/next")
    raise AssertionError("no item that is not a gold check in ten")


def counted_votes(study) -> int:
    comparisons = Comparison.objects.filter(study=study, is_gold=False)
    return sum(c.votes_candidate + c.votes_baseline + c.votes_tie for c in comparisons)


def test_participants_the_platform_does_not_know_are_unverified_and_their_votes_left_out_until_accepted(
    link, tmp_path, staff_client
):
    from django.core.management import call_command

    for k in (1, 2):
        vote_as_participant(Client(), link, k)
    assert counted_votes(link.study) == 2
    export = tmp_path / "export.csv"
    prolific_export(export, [(pid(1), "AWAITING REVIEW")])  # pid(2) made up: not on Prolific's list
    out = io.StringIO()
    call_command("crowd", "reconcile", link.study.name, "--submissions", str(export), stdout=out)
    assert out.getvalue().splitlines()[:2] == [
        f"1 participant(s) verified; 1 unverified, their votes left out until accepted (manage.py crowd accept "
        f"{link.study.name} ID); 0 marked returned",
        f"  unverified: {pid(2)}",
    ]
    checks = dict(Participant.objects.values_list("external_id", "platform_check"))
    assert checks == {pid(1): "known", pid(2): "unknown"}
    assert counted_votes(link.study) == 1, "the unverified participant's vote left every figure"
    rows = {r["participant_id"]: r for r in csv.DictReader(io.StringIO(services.export_csv(link)))}
    assert rows[pid(2)]["platform_check"] == "unknown" and rows[pid(1)]["platform_check"] == "known"
    card = BeautifulSoup(staff_client.get(f"/annotate/studies/{link.study.name}/").content, "html.parser")
    assert pid(2) in card.select_one(".crowd-unverified").get_text()
    call_command("crowd", "accept", link.study.name, pid(2), stdout=io.StringIO())
    assert counted_votes(link.study) == 2 and Participant.objects.get(external_id=pid(2)).platform_check == "accepted"
    # a second reconcile leaves the accepted one counted
    call_command("crowd", "reconcile", link.study.name, "--submissions", str(export), stdout=io.StringIO())
    assert counted_votes(link.study) == 2


def test_a_link_that_counts_only_verified_participants_waits_for_the_platforms_list(link, tmp_path):
    from django.core.management import call_command

    services.create_link(link.study, quota=3, screening_items=2, screening_pass=2, only_verified=True)
    vote_as_participant(Client(), link, 1)
    assert Participant.objects.get().platform_check == "pending" and counted_votes(link.study) == 0
    export = tmp_path / "export.csv"
    prolific_export(export, [(pid(1), "APPROVED")])
    call_command("crowd", "reconcile", link.study.name, "--submissions", str(export), stdout=io.StringIO())
    assert counted_votes(link.study) == 1


def test_one_address_cannot_mint_participants_without_end(link, settings):
    settings.CROWD_NEW_PARTICIPANTS_PER_ADDRESS = 3
    made = [arrive(Client(), link, k).status_code for k in range(1, 6)]
    assert made == [302, 302, 302, 400, 400]
    assert Participant.objects.count() == 3
    refused = arrive(Client(), link, 9)
    problem = BeautifulSoup(refused.content, "html.parser").get_text(" ", strip=True)
    assert "too many new participants from this address" in problem
    assert arrive(Client(), link, 1).status_code == 302, "a participant who arrived already comes back in"
    other = Client(REMOTE_ADDR="10.1.2.3")
    assert other.get(f"/s/{link.token}/", {"PROLIFIC_PID": pid(7), "STUDY_ID": "s" * 24}).status_code == 302


def test_the_link_asks_before_it_replaces_a_staff_session(link, staff_client):
    reply = arrive(staff_client, link, 1)
    page = BeautifulSoup(reply.content, "html.parser")
    assert reply.status_code == 200 and page.select_one("#switch h1").get_text() == "You are logged in as boss"
    assert not Participant.objects.exists(), "nothing made, nothing replaced yet"
    assert staff_client.get("/dashboard/").status_code == 200, "still staff"
    go = page.select_one("#switch a.button")["href"]
    assert "switch=1" in go and f"PROLIFIC_PID={pid(1)}" in go
    assert staff_client.get(f"/s/{link.token}/{go}").status_code == 302
    assert Participant.objects.get().external_id == pid(1)
    assert staff_client.get("/dashboard/").status_code in (302, 403), "now the participant, not staff"

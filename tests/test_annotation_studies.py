import io
import random
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection, transaction
from django.db.models import Count
from django.utils import timezone

from evalsite.annotation import answers, claims, studies
from evalsite.annotation.models import Assignment, Comparison, HumanJudgment, Outcome, Study
from evalsite.annotation.quality import annotator_quality, study_agreement
from evalsite.catalog.models import Prompt, Response, System
from tests import annotation_fixtures
from tests.annotation_fixtures import make_study, vote


@pytest.fixture(
    params=[
        "one statement",
        "portable",
        "one statement, adaptive",
        "portable, adaptive",
        "one statement, sampled",
        "portable, sampled",
    ]
)
def claim_path(request, settings, monkeypatch):
    """Claiming and answering on PostgreSQL in one SQL statement each, and the portable ORM path
    other databases take;
    each with uniform and with adaptive assignment, and in a sampled study's order (the studies the
    test makes get it; sampled at rate 1, so every comparison is still asked of people)."""
    settings.CLAIM_IN_ONE_STATEMENT = settings.SUBMIT_IN_ONE_STATEMENT = request.param.startswith("one statement")
    settings.STUDY_DEFAULT_ASSIGNMENT = "adaptive" if request.param.endswith("adaptive") else "uniform"
    if request.param.endswith("sampled"):
        monkeypatch.setattr(annotation_fixtures, "SAMPLE_RATE", 1.0)
    settings.ADAPTIVE_REFRESH_SECONDS = 0.001  # look again at every claim: the hardest case for the overlap
    return request.param


@pytest.mark.django_db
def test_create_study_expands_into_comparisons_and_gold_checks(capsys):
    make_study(n_prompts=20, start=False)
    Study.objects.all().delete()
    call_command(
        "create_study",
        candidate="lima-65b",
        baselines="alpaca-65b,davinci-003",
        prompts="lima-study-prompts",
        overlap=3,
        gold_rate=0.1,
    )
    study = Study.objects.get()
    assert (
        study.status == "open"
        and study.overlap == 3
        and study.name == "lima-65b-vs-alpaca-65b-davinci-003-on-lima-study-prompts"
    )
    assert Comparison.objects.filter(study=study, is_gold=False).count() == 40
    gold = list(Comparison.objects.filter(study=study, is_gold=True))
    assert len(gold) == 2 and all(g.gold_better == Outcome.CANDIDATE for g in gold)
    # the worse answer: the candidate's answer to another of the study's prompts (a decoy)
    for g in gold:
        assert g.baseline_response.text != g.candidate_response.text
        assert g.baseline.name == "gold-decoy-lima-65b" and g.baseline_response.prompt_id == g.prompt_id


@pytest.mark.django_db
def test_a_study_refuses_to_start_while_responses_are_missing_and_lists_them():
    make_study(n_prompts=3, start=False)
    Study.objects.all().delete()
    Response.objects.filter(system__name="davinci-003", prompt__external_id="p1").delete()
    with pytest.raises(CommandError, match=r"1 response\(s\) missing; generate or import them first: davinci-003/p1"):
        call_command(
            "create_study", candidate="lima-65b", baselines="alpaca-65b,davinci-003", prompts="lima-study-prompts"
        )
    assert not Study.objects.exists() and not Comparison.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "baselines, message", [("nope", "no system named 'nope'"), ("lima-65b", "both the candidate and a baseline")]
)
def test_create_study_bad_input(baselines, message):
    make_study(n_prompts=1, start=False)
    with pytest.raises(CommandError, match=message):
        call_command("create_study", candidate="lima-65b", baselines=baselines, prompts="lima-study-prompts", name="x")


@pytest.mark.django_db
def test_an_annotator_gets_each_comparison_once_and_never_beyond_the_overlap(claim_path):
    study, (a, b) = make_study(n_prompts=5, baselines=("alpaca-65b",), overlap=1)
    seen = []
    while (assignment := claims.claim_next(study, a)) is not None:
        answers.submit(assignment.pk, a, "tie")
        seen.append(assignment.comparison_id)
    assert len(seen) == len(set(seen)) == 5
    assert claims.claim_next(study, b) is None, "overlap 1: nothing left for the second annotator"


@pytest.mark.django_db
def test_an_open_claim_is_served_again_until_answered():
    study, (a, _) = make_study(n_prompts=3)
    first = claims.claim_next(study, a)
    assert claims.claim_next(study, a) == first


@pytest.mark.django_db
def test_expired_claims_return_to_the_pool(claim_path):
    study, (a, b) = make_study(n_prompts=1, baselines=("alpaca-65b",), overlap=1)
    claim = claims.claim_next(study, a)
    assert claims.claim_next(study, b) is None
    Assignment.objects.filter(pk=claim.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    taken = claims.claim_next(study, b)
    assert taken is not None and taken.comparison_id == claim.comparison_id
    assert Assignment.objects.get(pk=claim.pk).status == "expired"
    with pytest.raises(studies.StudyError, match="^not counted: this comparison waited too long and went to another"):
        answers.submit(claim.pk, a, "a")


@pytest.mark.django_db
def test_expired_claims_are_swept_at_most_every_claim_sweep_seconds_while_items_are_left(settings):
    from django.core.cache import caches

    settings.CLAIM_SWEEP_SECONDS = 60
    study, (a, b) = make_study(n_prompts=4, baselines=("alpaca-65b",), overlap=1)
    claim = claims.claim_next(study, a)  # the first claim sweeps
    Assignment.objects.filter(pk=claim.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    answers.submit(claims.claim_next(study, b).pk, b, "a")
    assert Assignment.objects.get(pk=claim.pk).status == "claimed", "no scan on every claim"
    caches["process"].delete(f"claim-sweep:{study.pk}")  # the sweep interval has passed
    answers.submit(claims.claim_next(study, b).pk, b, "a")
    assert Assignment.objects.get(pk=claim.pk).status == "expired"


@pytest.mark.django_db
def test_a_late_answer_on_an_expired_claim_is_kept_if_the_slot_is_still_free(claim_path):
    study, (a, _) = make_study(n_prompts=1, baselines=("alpaca-65b",), overlap=1)
    claim = claims.claim_next(study, a)
    Assignment.objects.filter(pk=claim.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    claims.release_expired(study)
    result = answers.submit(claim.pk, a, "b")
    assert result.created and Comparison.objects.get().slots_taken == 1


@pytest.mark.django_db
def test_double_submit_records_one_judgment(claim_path):
    study, (a, _) = make_study(n_prompts=2)
    claim = claims.claim_next(study, a)
    first = answers.submit(claim.pk, a, "a")
    second = answers.submit(claim.pk, a, "b")
    assert first.created and not second.created and second.judgment.pk == first.judgment.pk
    assert HumanJudgment.objects.count() == 1 and Comparison.objects.get(pk=claim.comparison_id).judgments_done == 1


@pytest.mark.django_db
def test_an_answer_to_a_closed_study_is_refused_and_says_it_was_not_counted(claim_path):
    study, (a, _) = make_study(n_prompts=2, baselines=("alpaca-65b",))
    claim = claims.claim_next(study, a)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED)
    with pytest.raises(studies.StudyError, match=r"^not counted: study lima-study is closed"):
        answers.submit(claim.pk, a, "a")
    assert HumanJudgment.objects.count() == 0 and Comparison.objects.get(pk=claim.comparison_id).judgments_done == 0


@pytest.mark.django_db
def test_a_second_answer_with_another_choice_says_the_first_one_stands(claim_path):
    study, (a, _) = make_study(n_prompts=2)
    claim = claims.claim_next(study, a)
    first = answers.submit(claim.pk, a, "a")
    assert first.not_counted("a") == ""
    assert answers.submit(claim.pk, a, "a").not_counted("a") == "", "the same answer twice loses nothing"
    said = answers.submit(claim.pk, a, "tie").not_counted("tie")
    assert said.startswith("Not counted:") and "(Answer A is significantly better," in said


@pytest.mark.django_db
def test_the_choice_maps_to_the_candidate_whatever_side_it_was_shown_on(claim_path):
    study, (a, _) = make_study(n_prompts=2, baselines=("alpaca-65b",))
    claim = claims.claim_next(study, a)
    Assignment.objects.filter(pk=claim.pk).update(candidate_on_left=False)
    judgment = answers.submit(claim.pk, a, "b").judgment  # B, the right side, held the candidate
    assert (judgment.outcome, judgment.picked_side) == ("candidate", "right")


@contextmanager
def rows_locked_elsewhere(*querysets):
    """Another connection holds these rows FOR UPDATE until the block ends."""
    locked, release = threading.Event(), threading.Event()

    def hold():
        with transaction.atomic():
            for queryset in querysets:
                list(queryset.select_for_update())
            locked.set()
            release.wait(30)
        connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(30)
        yield
    finally:
        release.set()
        holder.join(30)


@pytest.mark.django_db(transaction=True)
def test_a_submit_does_not_wait_for_the_study_row(claim_path):
    """Annotators submitting at once must not queue behind each other on their study's row."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks and lock_timeout are PostgreSQL's")
    study, (a, _) = make_study(n_prompts=2, baselines=("alpaca-65b",))
    claim = claims.claim_next(study, a)
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '2s'")
    with rows_locked_elsewhere(Study.objects.filter(pk=study.pk)):
        assert answers.submit(claim.pk, a, "a").created
    # the check itself: a row the submit does write (the comparison's vote counts) makes it wait
    other = claims.claim_next(study, a)
    with rows_locked_elsewhere(Comparison.objects.filter(pk=other.comparison_id)):
        with pytest.raises(OperationalError, match="lock timeout"):
            answers.submit(other.pk, a, "a")
    assert HumanJudgment.objects.count() == 1, "nothing written half-way"


@pytest.mark.django_db
def test_left_right_randomisation_is_balanced(claim_path):
    study, (a, _) = make_study(n_prompts=200, baselines=("alpaca-65b", "davinci-003"), overlap=1)
    rng = random.Random(20230518)
    lefts = n = 0
    while (claim := claims.claim_next(study, a, rng=rng)) is not None:
        lefts += claim.candidate_on_left
        n += 1
        answers.submit(claim.pk, a, "tie")
    assert n == 400
    # two-sided binomial test at about 1%: |k - n/2| < 2.58 * sqrt(n) / 2
    assert abs(lefts - n / 2) < 2.58 * (n**0.5) / 2, f"{lefts} of {n} on the left"


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_exceed_the_overlap(claim_path):
    study, users = make_study(n_prompts=15, baselines=("alpaca-65b", "davinci-003"), overlap=2, annotators=6)
    errors = []

    def annotate(user):
        try:
            while (claim := claims.claim_next(study, user)) is not None:
                answers.submit(claim.pk, user, random.choice(["a", "b", "tie"]))
        except Exception as exc:  # pragma: no cover - shown in the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=annotate, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    per_comparison = dict(Comparison.objects.annotate(n=Count("judgments")).values_list("pk", "n"))
    assert set(per_comparison.values()) == {2}, "every comparison judged exactly overlap times"
    assert all(c.slots_taken == 2 for c in Comparison.objects.all())
    assert Assignment.objects.values("comparison", "annotator").annotate(n=Count("id")).filter(n__gt=1).count() == 0


@pytest.mark.django_db(transaction=True)
def test_one_annotator_claiming_from_two_tabs_at_once_gets_each_item_once_and_leaks_no_slot(claim_path):
    study, (a, _) = make_study(n_prompts=12, baselines=("alpaca-65b", "davinci-003"), overlap=1)
    errors, served = [], []

    def tab():
        try:
            while (claim := claims.claim_next(study, a)) is not None:
                served.append(claim.comparison_id)
                answers.submit(claim.pk, a, "tie")
        except Exception as exc:  # pragma: no cover - shown in the assertion below
            errors.append(exc)
        finally:
            connection.close()

    tabs = [threading.Thread(target=tab) for _ in range(3)]
    for t in tabs:
        t.start()
    for t in tabs:
        t.join(timeout=120)
    assert not errors
    assert HumanJudgment.objects.count() == Assignment.objects.count() == 24, "every item judged once"
    assert all(c.slots_taken == 1 for c in Comparison.objects.all()), "a refused second claim gives its slot back"


@pytest.mark.django_db
def test_gold_checks_are_served_at_the_studys_rate(claim_path):
    study, (a, _) = make_study(n_prompts=200, baselines=("alpaca-65b",), overlap=1, gold_rate=0.1)
    rng = random.Random(7)
    gold = 0
    for _ in range(100):
        claim = claims.claim_next(study, a, rng=rng)
        gold += claim.comparison.is_gold
        answers.submit(claim.pk, a, "tie")
    # 100 draws at 10% (binomial sd 3). The draws are not reproducible (how many numbers a claim
    # takes from rng depends on which rows the database hands back), so the bounds must hold by
    # chance too: 4..16 failed about 3% of runs; 1..22 fails about 1 in 7,000 and still catches
    # gold never served, or served on most items
    assert 1 <= gold <= 22, f"{gold} gold checks in 100 items"


@pytest.mark.django_db
def test_gold_accuracy_median_seconds_too_fast_and_left_share_per_annotator():
    study, (a, b) = make_study(n_prompts=4, baselines=("alpaca-65b",), gold_rate=0.5)
    gold = list(Comparison.objects.filter(study=study, is_gold=True).order_by("pk"))
    normal = list(Comparison.objects.filter(study=study, is_gold=False).order_by("pk"))
    vote(a, gold[0], "a", 30)  # candidate on the left, picked: right
    vote(a, gold[1], "b", 2)  # wrong, and too fast
    vote(a, normal[0], "a", 20)
    vote(a, normal[1], "tie", 40)
    vote(b, gold[0], "b", 12, on_left=False)  # right
    quality = {q["annotator"]: q for q in annotator_quality(study)}
    assert quality["ann0"]["gold_accuracy"] == 0.5 and quality["ann0"]["gold"] == 2
    assert quality["ann0"]["median_seconds"] == pytest.approx(25, abs=1)
    assert quality["ann0"]["too_fast"] == 1
    assert quality["ann0"]["left_share"] == pytest.approx(2 / 3)
    assert quality["ann1"]["gold_accuracy"] == 1.0 and quality["ann1"]["left_share"] == 0.0


@pytest.mark.django_db
def test_agreement_on_a_hand_computed_study_and_exclusion_keeps_judgments():
    study, users = make_study(n_prompts=2, baselines=("alpaca-65b",), overlap=3, annotators=3)
    c1, c2 = Comparison.objects.filter(study=study).order_by("pk")
    votes = {c1: ["a", "a", "tie"], c2: ["b", "a", "b"]}  # candidate on the left throughout
    for comparison, choices in votes.items():
        for user, choice in zip(users, choices, strict=True):
            vote(user, comparison, choice)
    # c1 pairs: (c,c)=1 (c,t)=.5 (c,t)=.5 ; c2 pairs: (b,c)=0 (b,b)=1 (c,b)=0  -> 3/6
    agreement = study_agreement(study)
    assert agreement["items"] == 2 and agreement["pairs"] == 6
    assert agreement["tie_discounted_accuracy"] == pytest.approx(0.5)
    studies.set_excluded(study, users[2], True)
    agreement = study_agreement(study)
    assert agreement["pairs"] == 2 and agreement["tie_discounted_accuracy"] == pytest.approx(0.5)  # (c,c)=1, (b,c)=0
    assert HumanJudgment.objects.filter(annotator=users[2]).count() == 2, "excluded, not deleted"


@pytest.mark.django_db
def test_add_annotators_prints_one_time_links_that_work_once(client, capsys):
    study, _ = make_study(n_prompts=1, annotators=0)
    call_command("add_annotators", study=study.name, count=2)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("annotator-001  password: ") and len(out) == 3
    link = out[0].split("one-time login: ")[1]
    path = link.replace("http://127.0.0.1:8000", "")
    assert client.get(path).status_code == 200, "opening it shows a button and spends nothing"
    assert client.post(path).status_code == 302
    assert client.get("/annotate/").status_code == 200
    client.logout()
    assert client.post(path).status_code == 410, "a second use is refused"
    assert set(study.annotators.values_list("username", flat=True)) == {"annotator-001", "annotator-002"}
    password = out[1].split("password: ")[1].split()[0]
    assert User.objects.get(username="annotator-002").check_password(password)


@pytest.mark.django_db
def test_staff_can_invite_by_email(staff_client, mailoutbox):
    study, _ = make_study(n_prompts=1, annotators=0)
    staff_client.post(f"/annotate/studies/{study.name}/invite", {"email": "rater@example.org"})
    assert len(mailoutbox) == 1 and "/annotate/login/" in mailoutbox[0].body
    assert study.annotators.get().email == "rater@example.org"


@pytest.mark.django_db
def test_export_includes_judgments_and_agreement(tmp_path):
    import json

    study, (a, b) = make_study(n_prompts=1, baselines=("alpaca-65b",), overlap=2)
    for user in (a, b):
        answers.submit(claims.claim_next(study, user).pk, user, "tie")
    call_command("export", out=tmp_path)
    judgments = [json.loads(x) for x in (tmp_path / "human_judgments.jsonl").read_text().splitlines()]
    assert [j["outcome"] for j in judgments] == ["tie", "tie"] and judgments[0]["baseline"] == "alpaca-65b"
    agreement = json.loads((tmp_path / "agreement.jsonl").read_text())
    assert agreement["tie_discounted_accuracy"] == 1.0 and agreement["items"] == 1


def test_a_decoy_is_deterministic_for_a_seed_and_comes_from_another_answer():
    from evalsite.annotation.decoys import decoy

    donors = ["Boil the water for the pasta first. " * 8, "Paint the fence in the morning. " * 6]
    real = "Start with the basics of chess. " * 7
    made = [decoy(real, "How do I learn chess?", donors, random.Random(1)) for _ in "ab"]
    assert made[0] == made[1] and made[0] not in donors and "chess" in made[0].lower()


@pytest.mark.django_db
def test_annotators_not_in_a_study_cannot_claim_from_it():
    study, _ = make_study(n_prompts=1)
    stranger = User.objects.create_user("stranger")
    with pytest.raises(studies.StudyError, match="not an annotator of this study"):
        claims.claim_next(study, stranger)
    assert not System.objects.filter(name__startswith="gold").exists()


@pytest.mark.django_db
def test_an_excluded_annotators_new_votes_are_kept_but_not_counted(claim_path):
    study, (a, b) = make_study(n_prompts=1, baselines=("alpaca-65b",), overlap=2)
    studies.set_excluded(study, b, True)
    answers.submit(claims.claim_next(study, a).pk, a, "tie")
    answers.submit(claims.claim_next(study, b).pk, b, "tie")
    comparison = Comparison.objects.get()
    assert (comparison.votes_tie, comparison.judgments_done) == (1, 2)
    studies.set_excluded(study, b, False)
    comparison.refresh_from_db()
    assert comparison.votes_tie == 2


@pytest.mark.django_db
def test_adaptive_assignment_hands_out_the_baseline_known_least_well(settings):
    settings.ADAPTIVE_REFRESH_SECONDS = 0.001
    study, (a, b) = make_study(n_prompts=30, baselines=("alpaca-65b", "davinci-003"), overlap=1)
    Study.objects.filter(pk=study.pk).update(assignment=Study.AssignmentPolicy.ADAPTIVE)
    study.refresh_from_db()
    alpaca = Comparison.objects.filter(study=study, baseline__name="alpaca-65b", is_gold=False).order_by("pk")
    for comparison in alpaca[:20]:  # alpaca is known well; davinci not at all
        vote(a, comparison, "a")
    taken = []
    for _ in range(10):  # davinci stays the wider one: 10 votes against alpaca's 20
        claim = claims.claim_next(study, b)
        taken.append(claim.comparison.baseline.name)
        answers.submit(claim.pk, b, "tie")
    assert taken == ["davinci-003"] * 10


@pytest.mark.django_db
def test_an_answer_is_one_statement_on_postgresql_and_records_what_the_portable_path_does(claim_path):
    from django.test.utils import CaptureQueriesContext

    study, (a, _) = make_study(n_prompts=2, baselines=("alpaca-65b",), overlap=1)
    claim = claims.claim_next(study, a)
    with CaptureQueriesContext(connection) as seen:
        result = answers.submit(claim.pk, a, "a", "  clearer  ")
    statements = [q["sql"] for q in seen.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    # portable: the comparison locked (before the claim, as claiming takes them), the claim read,
    # the judgment written, the claim closed, the votes counted
    assert len(statements) == (1 if claim_path.startswith("one statement") else 5)
    judgment = HumanJudgment.objects.get()
    expected = "candidate" if claim.candidate_on_left else "baseline"
    assert (judgment.outcome, judgment.picked_side, judgment.reason) == (expected, "left", "clearer")
    assert (result.judgment.pk, result.judgment.outcome, result.study_name) == (judgment.pk, expected, study.name)
    assert isinstance(result.judgment.seconds, float) and result.judgment.seconds == pytest.approx(judgment.seconds)
    comparison = Comparison.objects.get(pk=claim.comparison_id)
    assert (comparison.judgments_done, comparison.votes_candidate + comparison.votes_baseline) == (1, 1)
    assert Assignment.objects.get(pk=claim.pk).status == Assignment.Status.DONE


@pytest.mark.django_db
def test_the_item_pages_progress_equals_a_hand_count_on_every_claim_path(claim_path, client):
    """The claim statement counts the annotator's judgments as it claims (PostgreSQL); the portable
    path counts them for the page. Either way the page says what a count by hand says."""
    from bs4 import BeautifulSoup

    study, (a, b) = make_study(n_prompts=6, baselines=("alpaca-65b",), overlap=2, gold_rate=0.0)
    client.force_login(a)
    vote(a, Comparison.objects.filter(study=study).order_by("pk").last(), "tie")  # one made elsewhere
    for _ in range(4):
        page = BeautifulSoup(client.get(f"/annotate/study/{study.name}/next").content, "html.parser")
        done = HumanJudgment.objects.filter(annotator=a, comparison__study=study).count()
        assert page.select_one("#progress-count").get_text(strip=True).split(" / ")[0] == str(done)
        item = page.select_one("#judge-form")["action"]
        assert client.post(item, {"choice": "a"}).status_code == 302
    page = BeautifulSoup(client.get(f"/annotate/study/{study.name}/next").content, "html.parser")
    assert page.select_one("#progress-count").get_text(strip=True).split(" / ")[0] == "5"


@pytest.mark.django_db
def test_the_next_page_on_postgresql_is_four_statements(settings, client):
    """The user, the study, the open claim (none), and one statement that claims, counts the
    annotator's judgments and brings the page's texts (sessions live in the shared cache where
    deployed; the test's are in the database, and its transaction adds savepoints)."""
    from django.test.utils import CaptureQueriesContext

    settings.CLAIM_IN_ONE_STATEMENT = True
    study, (a, _) = make_study(n_prompts=6, baselines=("alpaca-65b",), gold_rate=0.0)
    client.force_login(a)
    client.get(f"/annotate/study/{study.name}/next")  # warm: the sweep, the study's size cached
    assignment = Assignment.objects.get(annotator=a)
    answers.submit(assignment.pk, a, "a")
    with CaptureQueriesContext(connection) as seen:
        reply = client.get(f"/annotate/study/{study.name}/next")
    statements = [
        q["sql"]
        for q in seen.captured_queries
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE", 'SELECT "django_session"'))
    ]
    assert [sql.split()[0] for sql in statements] == ["SELECT", "SELECT", "SELECT", "WITH"]
    assert ['"auth_user"' in statements[0], '"annotation_study"' in statements[1]] == [True, True]
    assert reply.status_code == 200 and Assignment.objects.filter(annotator=a).count() == 2


@pytest.mark.django_db
def test_a_study_whose_candidate_is_cut_at_the_limit_far_more_often_is_warned_about(staff_client):
    from evalsite.annotation.blinding import blinding_warnings
    from evalsite.catalog.models import Response

    study, _ = make_study(n_prompts=20, baselines=("alpaca-65b",), start=False)
    assert not [w for w in blinding_warnings(study) if "cut at" in w], "the fixture's answers stop by themselves"
    cut = Response.objects.filter(system=study.candidate).order_by("pk")[:14]
    Response.objects.filter(pk__in=[r.pk for r in cut]).update(finish_reason="length")
    Response.objects.filter(
        system__name="alpaca-65b",
        pk__in=Response.objects.filter(system__name="alpaca-65b").order_by("pk")[:3].values("pk"),
    ).update(finish_reason="length")
    warnings = blinding_warnings(study)
    assert warnings[0].startswith("14 of 20 answers of lima-65b were cut at the token limit against 3 of 20")
    assert any("median of" in w for w in warnings), "the fixture's candidate answers are 3x as long too"
    out = io.StringIO()
    call_command(
        "create_study",
        "--candidate",
        "lima-65b",
        "--baselines",
        "alpaca-65b",
        "--prompts",
        study.prompt_set.name,
        "--name",
        "second",
        stdout=out,
    )
    assert "blinding: 14 of 20 answers of lima-65b were cut" in out.getvalue()
    # and it travels with the study's numbers: in Figure 1 itself (the SVG, so the PNG and the
    # report) and in `study status`
    from bs4 import BeautifulSoup

    from evalsite.dashboard import figures

    second = Study.objects.get(name="second")
    caption = BeautifulSoup(figures.build(second).svgs()["figure1"], "html.parser").select("g.notes text")
    assert caption[0].get_text() == "Read with care:" and caption[1].get_text().startswith("14 of 20 answers of lima")
    status = io.StringIO()
    call_command("study", "status", "second", stdout=status)
    assert "  14 of 20 answers of lima-65b were cut at the token limit" in status.getvalue()
    # on the page, its second request says it (the checks read every answer; the first is quick)
    first = BeautifulSoup(staff_client.get("/dashboard/second/").content, "html.parser")
    assert not [li for li in first.select("#figure1 .figure-notes li") if "cut at the token limit" in li.get_text()]
    panel = BeautifulSoup(staff_client.get("/dashboard/second/?panel=evidence").content, "html.parser")
    said = [li.get_text() for li in panel.select("#blinding .figure-notes li")]
    assert said[0].startswith("14 of 20 answers of lima-65b were cut at the token limit against 3 of 20")


@pytest.mark.django_db
def test_a_small_difference_in_cut_answers_is_not_a_warning():
    from evalsite.annotation.blinding import blinding_warnings
    from evalsite.catalog.models import Response

    study, _ = make_study(n_prompts=20, baselines=("alpaca-65b",), start=False)
    for name, k in (("lima-65b", 4), ("alpaca-65b", 2)):
        ids = Response.objects.filter(system__name=name).order_by("pk").values("pk")[:k]
        Response.objects.filter(pk__in=ids).update(finish_reason="length")
    assert not [w for w in blinding_warnings(study) if "cut at the token limit" in w]


@pytest.mark.django_db
def test_claims_walk_one_random_order_so_what_is_voted_is_a_random_part_of_each_baseline(claim_path):
    """A prompt file grouped by source (the first third from one source): the study hands its
    comparisons out in one random order drawn when it started, on every claim path, so after any
    number of votes the voted ones are the first of that order, not the first of the file. Filled
    in file order, a study stopped early would report the first source's share."""
    study, (a, b) = make_study(n_prompts=30, baselines=("alpaca-65b", "davinci-003"), overlap=2)
    Prompt.objects.filter(prompt_set=study.prompt_set, external_id__in=[f"p{i}" for i in range(10)]).update(
        source="askreddit"
    )
    comparisons = list(Comparison.objects.filter(study=study, is_gold=False))
    orders = sorted(c.draw_order for c in comparisons)
    assert orders == list(range(1, 61)), "one position each"
    by_pk = [c.draw_order for c in sorted(comparisons, key=lambda c: c.pk)]
    assert by_pk != sorted(by_pk), "not the file's order (a chance of 1 in 60!)"
    claimed = []
    for _ in range(16):
        claim = claims.claim_next(study, a)
        claimed.append(claim.comparison_id)
        answers.submit(claim.pk, a, "a")
    order_of = {c.pk: c.draw_order for c in comparisons}
    if study.assignment == Study.AssignmentPolicy.ADAPTIVE:  # per baseline, still in the study's order
        for baseline in ("alpaca-65b", "davinci-003"):
            mine = [pk for pk in claimed if Comparison.objects.get(pk=pk).baseline.name == baseline]
            theirs = sorted(
                (c for c in comparisons if c.baseline.name == baseline), key=lambda c: c.draw_order
            )
            assert mine == [c.pk for c in theirs[: len(mine)]]
    else:
        assert claimed == sorted(claimed, key=order_of.get)
        assert sorted(order_of[pk] for pk in claimed) == list(range(1, 17)), "the first 16 of the order"
        # the second annotator starts at the same place: each comparison gets its two votes in order
        second = claims.claim_next(study, b)
        assert order_of[second.comparison_id] == 1


@pytest.mark.django_db(transaction=True)
def test_parallel_tabs_of_one_annotator_hold_one_claim_between_them(claim_path):
    """Four tabs asking for an item at the same moment: one claim is made and every tab shows it
    (the database holds one open claim per annotator and study); the slots of the others' tries
    are given back."""
    study, (a, _) = make_study(n_prompts=12, baselines=("alpaca-65b", "davinci-003"), overlap=1)
    barrier, got, errors = threading.Barrier(4), [], []

    def tab():
        try:
            barrier.wait(timeout=30)
            got.append(claims.claim_next(study, a).pk)
        except Exception as exc:  # pragma: no cover - shown in the assertion below
            errors.append(exc)
        finally:
            connection.close()

    tabs = [threading.Thread(target=tab) for _ in range(4)]
    for t in tabs:
        t.start()
    for t in tabs:
        t.join(timeout=60)
    assert not errors and len(got) == 4
    assert len(set(got)) == 1, "every tab shows the one claim"
    assert Assignment.objects.filter(annotator=a, status="claimed").count() == 1
    assert sum(c.slots_taken for c in Comparison.objects.filter(study=study)) == 1


@pytest.mark.django_db
def test_progress_adds_up_on_every_page_and_continue_goes_when_nothing_is_left(claim_path, client):
    """Done of done plus left, the same on the item page, the home page and the last page, whoever
    joins; no Continue when nothing is left."""
    from bs4 import BeautifulSoup

    study, (a, b) = make_study(n_prompts=3, baselines=("alpaca-65b",), overlap=1, annotators=2)
    client.force_login(a)
    home = BeautifulSoup(client.get("/annotate/").content, "html.parser")
    assert home.select_one(".progress-text").get_text(strip=True) == "0 done, 3 left"
    seen = []
    while True:
        reply = client.get(f"/annotate/study/{study.name}/next")
        page = BeautifulSoup(reply.content, "html.parser")
        count = page.select_one("#progress-count")
        if count is None:
            break
        seen.append(count.get_text(strip=True))
        claim = Assignment.objects.get(annotator=a, status="claimed")
        answers.submit(claim.pk, a, "tie")
        for k in range(5):  # crowd members join: the target does not shrink under the annotator
            user = User.objects.create_user(f"late{len(seen)}{k}", password=None)
            study.annotators.add(user)
    assert seen == ["0 / 3", "1 / 3", "2 / 3"]
    home = BeautifulSoup(client.get("/annotate/").content, "html.parser")
    assert home.select_one(".progress-text").get_text(strip=True) == "3 done, nothing left for you"
    assert home.select_one(".card a.button") is None, "no Continue"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("one_statement", [True, False], ids=["one statement", "portable"])
@pytest.mark.parametrize("action", ["submit", "skip"])
def test_answering_while_another_tab_claims_past_a_locked_item_never_deadlocks(settings, one_statement, action):
    """A claim statement can hold a lock on a comparison it passed over (PostgreSQL keeps the lock
    on a row that FOR UPDATE locked and its recheck then refused) while it records its own claim,
    which waits on whoever is changing this annotator's open claim. Answering (or skipping) that
    claim must therefore take the comparison before the claim, as claiming does: in the other
    order the two wait on each other and PostgreSQL kills one (CI saw it with three tabs). Here
    the other tab's transaction holds the answered item's comparison while it claims."""
    settings.CLAIM_IN_ONE_STATEMENT = settings.SUBMIT_IN_ONE_STATEMENT = one_statement
    study, (a, _) = make_study(n_prompts=4, baselines=("alpaca-65b",), overlap=1)
    held = claims.claim_next(study, a)
    locked, answering = threading.Event(), {}
    errors, results = [], {}

    def answer():
        try:
            assert locked.wait(30)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                answering["pid"] = cursor.fetchone()[0]
            if action == "submit":
                results["answer"] = answers.submit(held.pk, a, "a")
            else:
                results["answer"] = answers.give_up(held.pk, a)
        except Exception as exc:  # pragma: no cover - shown in the assertion below
            errors.append(exc)
        finally:
            connection.close()

    def other_tab():
        try:
            with transaction.atomic():
                list(Comparison.objects.select_for_update().filter(pk=held.comparison_id))
                locked.set()
                waited = 0.0
                while waited < 20:  # until the answer waits on this transaction (or has finished)
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT pg_stat_clear_snapshot()")  # read afresh inside a transaction
                        cursor.execute(
                            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [answering.get("pid", -1)]
                        )
                        row = cursor.fetchone()
                    if (row and row[0] == "Lock") or "answer" in results:
                        break
                    time.sleep(0.05)
                    waited += 0.05
                # the claim a tab makes when it looked for an open claim a moment before this one
                # was taken (claim_next's _claim_new): it is refused, and the open one served
                results["claim"] = claims._claim_new(study, a, random.Random(1)) or claims.open_claim(study, a)
        except Exception as exc:  # pragma: no cover - shown in the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=other_tab), threading.Thread(target=answer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert results["claim"].pk == held.pk, "the other tab is served the claim still open"
    held.refresh_from_db()
    assert held.status == (Assignment.Status.DONE if action == "submit" else Assignment.Status.SKIPPED)
    taken = dict(Comparison.objects.values_list("pk", "slots_taken"))
    assert taken.pop(held.comparison_id) == (1 if action == "submit" else 0)
    assert set(taken.values()) == {0}, "the refused claim gave its slot back"

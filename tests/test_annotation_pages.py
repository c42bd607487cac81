import pytest
from django.test import Client

from evalsite.annotation import answers, claims, studies
from evalsite.annotation.models import Assignment, HumanJudgment
from evalsite.catalog.models import Response
from tests.annotation_fixtures import make_study

pytestmark = pytest.mark.django_db


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


def test_the_comparison_page_shows_the_papers_wording_and_no_system_name():
    study, (a, _) = make_study(n_prompts=2)
    client = logged_in(a)
    html = client.get(f"/annotate/study/{study.name}/next").content.decode()
    wording = [
        "Answer A is significantly better",
        "Answer B is significantly better",
        "Neither is significantly better",
    ]
    for text in [*wording, "Imagine that you have a super-intelligent AI assistant", "Question number"]:
        assert text in html
    for name in ("lima-65b", "alpaca-65b", "davinci-003"):
        assert name not in html, f"{name} leaked"


def test_the_system_names_do_not_leak_even_in_response_ids():
    study, (a, _) = make_study(n_prompts=1, baselines=("alpaca-65b",))
    client = logged_in(a)
    html = client.get(f"/annotate/study/{study.name}/next").content.decode()
    claim = Assignment.objects.get()
    for response in (claim.comparison.candidate_response, claim.comparison.baseline_response):
        assert f"response-{response.pk}" not in html and f'value="{response.pk}"' not in html


def test_answers_are_rendered_once_as_sanitised_markdown_when_the_study_opens():
    study, (a, _) = make_study(n_prompts=1, baselines=("alpaca-65b",), start=False)
    Response.objects.filter(system__name="lima-65b").update(
        text="Steps:\n\n- first\n- second\n\n```python\nprint(1 < 2)\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "<script>alert('x')</script><img src=x onerror=alert(1)>**bold**"
    )
    assert Response.objects.filter(html__isnull=False).count() == 0
    studies.start_study(study)
    assert Response.objects.filter(html__isnull=True).count() == 0, "every answer of the study rendered at start"
    html = logged_in(a).get(f"/annotate/study/{study.name}/next").content.decode()
    for shown in ("<li>first</li>", "<pre><code", "print(1 &lt; 2)", "<table>", "<td>2</td>", "<strong>bold</strong>"):
        assert shown in html
    assert "alert(" not in html and "onerror" not in html and "<img" not in html


def test_an_answer_without_stored_html_is_rendered_on_first_view_and_stored():
    study, (a, _) = make_study(n_prompts=1, baselines=("alpaca-65b",))
    Response.objects.update(html=None)
    assert "A careful, complete answer" in logged_in(a).get(f"/annotate/study/{study.name}/next").content.decode()
    assert Response.objects.filter(html__contains="A careful, complete answer").count() == 1


def test_posting_a_choice_records_it_and_serves_the_next_item():
    study, (a, _) = make_study(n_prompts=3, baselines=("alpaca-65b",))
    client = logged_in(a)
    client.get(f"/annotate/study/{study.name}/next")
    pk = Assignment.objects.get(annotator=a).pk
    assert b"Question number" in client.get(f"/annotate/item/{pk}/").content
    reply = client.post(f"/annotate/item/{pk}/judge", {"choice": "tie", "reason": "both fine"})
    assert reply.status_code == 302 and reply["Location"] == f"/annotate/study/{study.name}/next"
    again = client.post(f"/annotate/item/{pk}/judge", {"choice": "a"})  # a double click or a replay
    assert again.status_code == 302
    judgment = HumanJudgment.objects.get()
    assert (judgment.outcome, judgment.reason) == ("tie", "both fine")


def test_another_annotators_assignment_is_a_404_to_read_and_to_answer():
    study, (a, b) = make_study(n_prompts=2)
    claim = claims.claim_next(study, a)
    intruder = logged_in(b)
    assert intruder.get(f"/annotate/item/{claim.pk}/").status_code == 404
    assert intruder.post(f"/annotate/item/{claim.pk}/judge", {"choice": "a"}).status_code == 404
    assert intruder.post(f"/annotate/item/{claim.pk}/skip").status_code == 404
    assert not HumanJudgment.objects.exists() and Assignment.objects.get().status == "claimed"


def test_forms_need_a_csrf_token():
    study, (a, _) = make_study(n_prompts=1)
    claim = claims.claim_next(study, a)
    client = Client(enforce_csrf_checks=True)
    client.force_login(a)
    assert client.post(f"/annotate/item/{claim.pk}/judge", {"choice": "a"}).status_code == 403
    assert not HumanJudgment.objects.exists()


def test_skip_and_flag_free_the_slot_and_are_not_shown_again():
    study, (a, b) = make_study(n_prompts=1, baselines=("alpaca-65b",))
    claim = claims.claim_next(study, a)
    logged_in(a).post(f"/annotate/item/{claim.pk}/skip", {"flag": "unsafe"})
    claim.refresh_from_db()
    assert (claim.status, claim.flag) == ("flagged", "unsafe")
    assert claims.claim_next(study, a) is None
    assert claims.claim_next(study, b) is not None


def test_an_unknown_flag_is_refused_and_said_once_on_the_item_page():
    study, (a, _) = make_study(n_prompts=1, baselines=("alpaca-65b",))
    client = logged_in(a)
    claim = claims.claim_next(study, a)
    page = client.post(f"/annotate/item/{claim.pk}/skip", {"flag": "boring"}, follow=True).content.decode()
    assert page.count("unknown flag") == 1 and 'class="message error"' in page
    claim.refresh_from_db()
    assert claim.status == "claimed", "nothing recorded"


def test_annotators_cannot_open_staff_pages():
    study, (a, _) = make_study(n_prompts=1)
    client = logged_in(a)
    for url in ("/annotate/studies/", f"/annotate/studies/{study.name}/", "/generation/jobs/"):
        assert client.get(url).status_code == 403
    assert client.get("/admin/").status_code == 302
    assert client.get("/").status_code == 302, "the home page sends annotators to their studies"


def test_staff_see_quality_and_agreement_and_can_exclude(staff_client):
    study, (a, b) = make_study(n_prompts=1, baselines=("alpaca-65b",), overlap=2)
    for user in (a, b):
        answers.submit(claims.claim_next(study, user).pk, user, "tie")
    html = staff_client.get(f"/annotate/studies/{study.name}/").content.decode()
    assert "tie-discounted accuracy <strong>1.000</strong>" in html
    staff_client.post(f"/annotate/studies/{study.name}/exclude", {"user_id": a.pk, "exclude": "1"})
    assert list(study.excluded.all()) == [a]
    html = staff_client.get(f"/annotate/studies/{study.name}/").content.decode()
    assert "excluded: include again" in html


def test_staff_can_create_and_start_a_study_from_the_page(staff_client):
    study, _ = make_study(n_prompts=2, start=False)
    page = staff_client.get(f"/annotate/studies/{study.name}/").content.decode()
    assert "Start the study" in page
    staff_client.post(f"/annotate/studies/{study.name}/start")
    study.refresh_from_db()
    assert study.status == "open" and study.comparisons.count() == 4


def test_login_is_rate_limited(client):
    make_study(n_prompts=1)
    for _ in range(5):
        assert client.post("/accounts/login/", {"username": "ann0", "password": "wrong"}).status_code == 200
    locked = client.post("/accounts/login/", {"username": "ann0", "password": "pw-ann0-secret"})
    assert locked.status_code == 429 and b"Too many failed logins" in locked.content
    other = client.post("/accounts/login/", {"username": "ann1", "password": "pw-ann1-secret"}, REMOTE_ADDR="10.9.9.9")
    assert other.status_code == 302, "another user from another address is not locked out"


def test_the_study_pages_counts_equal_a_hand_count_after_votes(staff_client):
    """Counts over a join with judgments count each comparison once (61 stayed 61 after votes)."""
    from bs4 import BeautifulSoup

    from evalsite.annotation.models import Comparison, HumanJudgment
    from tests.dashboard_fixtures import seeded_study

    study, _, _ = seeded_study()  # 8 comparisons, 12 judgments: several per comparison
    soup = BeautifulSoup(staff_client.get(f"/annotate/studies/{study.name}/").content, "html.parser")
    comparisons = Comparison.objects.filter(study=study, is_gold=False).count()
    judgments = HumanJudgment.objects.filter(comparison__study=study).count()
    assert judgments > comparisons
    assert soup.select_one("p.counts .comparisons").get_text() == str(comparisons)
    assert soup.select_one("p.counts .judged").get_text() == str(judgments)
    listing = BeautifulSoup(staff_client.get("/annotate/studies/").content, "html.parser")
    assert str(comparisons) in [td.get_text().strip() for td in listing.select("td")]


def test_the_study_page_gives_each_annotator_a_reliability_and_finds_the_one_who_always_says_tie(staff_client):
    from evalsite.annotation.models import Comparison
    from tests.annotation_fixtures import vote

    study, users = make_study(n_prompts=30, baselines=("alpaca-65b",), overlap=4, annotators=4)
    careful, spammer = users[:3], users[3]
    for k, comparison in enumerate(Comparison.objects.filter(study=study, is_gold=False).order_by("pk")):
        truth = "a" if k % 3 else "b"  # the candidate on the left: a = candidate, b = baseline
        for j, user in enumerate(careful):
            vote(user, comparison, truth if (k + j) % 10 else "tie", seconds=20)  # 90% right
        vote(spammer, comparison, "tie", seconds=20)
    reply = staff_client.get(f"/annotate/studies/{study.name}/")
    rows = {q["annotator"]: q["reliability"] for q in reply.context["quality"]}
    assert min(rows[u.username] for u in careful) > 0.8 > 0.5 > rows[spammer.username]
    assert reply.content.decode().count('<td class="reliability">') == 4


def test_with_one_vote_per_comparison_no_reliability_is_claimed(staff_client):
    study, (a, b) = make_study(n_prompts=4, baselines=("alpaca-65b",), overlap=1)
    for user in (a, b):
        answers.submit(claims.claim_next(study, user).pk, user, "a")
    reply = staff_client.get(f"/annotate/studies/{study.name}/")
    assert [q["reliability"] for q in reply.context["quality"]] == [None, None]

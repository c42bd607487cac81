import pytest
from django.contrib.auth.models import User

from tests.browser import ARTIFACTS, browser, login
from tests.dashboard_fixtures import seeded_study


@pytest.mark.django_db(transaction=True)
def test_the_dashboard_reads_like_the_papers_figures(live_server):
    study, job, _ = seeded_study()
    User.objects.create_superuser("chief", "chief@example.org", "chief-password-1")
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        login(page, live_server.url, "chief", "chief-password-1", f"/dashboard/{study.name}/?job={job.pk}")
        page.wait_for_selector("#figure1 svg")
        bars = page.locator("#figure1 svg rect").count()
        assert bars >= 2 * 3 + 5 * 3, "three segments per baseline bar and per paper bar"
        assert page.locator("#figure2 svg").count() == 1
        page.wait_for_selector("#agreement .details table")  # the second request fills the agreement tables
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        # beside Figure 2: the job, its verdict method and rules, what was not counted and why
        assert page.locator("#figure2 td.method").inner_text() == "text: the judge writes its verdict, parsed strictly"
        assert page.locator("#figure2 td.dropped").inner_text() == "one order unreadable: 1"
        warning = page.locator("#figure2 .judge-warnings li").first
        assert warning.is_visible() and warning.inner_text() == "1 comparison is not counted (one order unreadable: 1)."
        page.locator("#figure2").screenshot(path=str(ARTIFACTS / "dashboard-judge.png"))
        page.goto(f"{live_server.url}/judge/jobs/{job.pk}/")
        assert page.locator("table.judge-money td.spent").is_visible()
        page.screenshot(path=str(ARTIFACTS / "judge-job.png"), full_page=True)

import pytest

from evalsite.answering.models import GenerationJob
from evalsite.catalog.models import Prompt, PromptSet, Response, System

pytestmark = pytest.mark.django_db


@pytest.fixture
def answered():
    prompt_set = PromptSet.objects.create(name="test")
    prompt = Prompt.objects.create(
        prompt_set=prompt_set, external_id="t1", messages=[{"role": "user", "content": "Show me code"}]
    )
    cand = System.objects.create(name="lima-mini", kind="candidate", backend="imported")
    base = System.objects.create(name="smollm2", backend="imported")
    Response.objects.create(
        system=cand, prompt=prompt, text="```python\nprint(1)\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    )
    Response.objects.create(system=base, prompt=prompt, text="<script>alert(1)</script><b onclick='x()'>hi</b>")
    job = GenerationJob.objects.create(
        system=cand,
        prompt_set=prompt_set,
        status="running",
        progress_done=3,
        progress_total=12,
        rate=4.5,
        rate_unit="tokens/s",
    )
    return prompt, job


def test_the_response_browser_shows_every_system_side_by_side_rendered_safely(staff_client, answered):
    prompt, _ = answered
    html = staff_client.get(f"/generation/responses/prompt/{prompt.pk}/").content.decode()
    assert "lima-mini" in html and "smollm2" in html
    assert '<pre><code class="language-python">print(1)' in html and "<table>" in html
    assert "<script>" not in html and "alert(1)" not in html and "onclick" not in html
    assert ">hi<" in html, "harmless text is kept; scripts and handlers are removed"


def test_the_jobs_page_and_its_live_json_show_progress(staff_client, answered):
    _, job = answered
    page = staff_client.get("/generation/jobs/").content.decode()
    assert "3/12" in page and "width:25.0%" in page
    data = staff_client.get("/generation/jobs.json").json()["jobs"][0]
    assert (data["done"], data["total"], data["percent"], data["rate"]) == (3, 12, 25.0, "4.5 tokens/s")


def test_staff_can_cancel_a_job_from_its_page(staff_client, answered):
    _, job = answered
    assert staff_client.get(f"/generation/jobs/{job.pk}/cancel").status_code == 405
    staff_client.post(f"/generation/jobs/{job.pk}/cancel")
    job.refresh_from_db()
    assert job.cancel_requested


def test_annotators_cannot_open_generation_pages(annotator_client, answered):
    prompt, job = answered
    for url in ("/generation/jobs/", "/generation/jobs.json", f"/generation/responses/prompt/{prompt.pk}/"):
        assert annotator_client.get(url).status_code == 403

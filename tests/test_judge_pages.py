import json

import pytest
from bs4 import BeautifulSoup
from django.core.management import call_command

from evalsite.core import jobs
from evalsite.judging import services
from tests.judge_fixtures import fair_judge, judge_config, judged_study
from tests.openai_stub import OpenAIStub

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished_job():
    with OpenAIStub(responder=fair_judge) as stub:
        study = judged_study(n_prompts=2)
        job, _ = services.start_judge_job(study, judge_config(stub), enqueue=False)
        jobs.execute(job.label(), job.pk, worker="test")
    job.refresh_from_db()
    return job


def test_staff_see_verdicts_with_their_raw_outputs(staff_client, finished_job):
    html = staff_client.get(f"/judge/jobs/{finished_job.pk}/").content.decode()
    quality = BeautifulSoup(html, "html.parser").select_one("table.judge-quality")
    assert quality.find("td").get_text().startswith("100% (2 comparisons")
    assert html.count("Answer A is significantly better.") + html.count("Answer B is significantly better.") == 4
    listing = staff_client.get("/judge/jobs/").content.decode()
    assert f"/judge/jobs/{finished_job.pk}/" in listing and "<td>gpt-4</td>" in listing


def test_annotators_cannot_see_judge_pages(annotator_client, finished_job):
    assert annotator_client.get(f"/judge/jobs/{finished_job.pk}/").status_code == 403


def test_export_includes_the_verdicts_and_their_raw_outputs(tmp_path, finished_job):
    call_command("export", out=tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "judge_verdicts.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["outcome"] for r in rows} == {"candidate"} and rows[0]["raw_output"]

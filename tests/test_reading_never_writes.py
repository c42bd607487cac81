"""Reading never writes: every staff page, every export and the report, opened on a study with
votes, a judge job, a target and a crowd link, leave every table of the database as it was (a
digest of each table's rows before and after). A page that decided a study's stop, or recorded
anything while being read, would change a row here."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from evalsite.annotation.models import Comparison
from evalsite.crowd import services as crowd
from evalsite.dashboard.estimates import study_status
from evalsite.dashboard.stopping import set_target
from evalsite.judging.models import JudgeConfig, JudgeJob, RatingJob
from tests.annotation_fixtures import make_study, vote
from tests.dashboard_fixtures import recorded_verdicts

pytestmark = pytest.mark.django_db


def digest() -> dict[str, str]:
    """Per table of the test database: a digest of all its rows (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
        )
        tables = [row[0] for row in cursor.fetchall()]
        out = {}
        for table in tables:
            cursor.execute(f'SELECT md5(coalesce(string_agg(t::text, \'|\' ORDER BY t::text), \'\')) FROM "{table}" t')
            out[table] = cursor.fetchone()[0]
    return out


def staff_pages(study, job, rating_job, prompt) -> list[str]:
    name = study.name
    return [
        "/",
        "/dashboard/",
        f"/dashboard/{name}/",
        f"/dashboard/{name}/?job={job.pk}",
        f"/dashboard/{name}/?job={job.pk}&fragment=1",
        f"/dashboard/{name}/?job={job.pk}&panel=agreement",
        f"/dashboard/{name}/?job={job.pk}&panel=evidence",
        f"/dashboard/{name}/?rule=all",
        f"/dashboard/{name}/?rule=reliability",
        f"/dashboard/{name}/export/csv?job={job.pk}",
        f"/dashboard/{name}/export/json?job={job.pk}",
        f"/dashboard/{name}/export/figure1.svg",
        f"/dashboard/{name}/export/figure2.svg?job={job.pk}",
        f"/dashboard/{name}/export/figure1.png",
        f"/dashboard/{name}/drill?baseline=alpaca-65b&outcome=candidate",
        f"/dashboard/{name}/drill?baseline=alpaca-65b&outcome=candidate&job={job.pk}",
        "/annotate/studies/",
        f"/annotate/studies/{name}/",
        "/judge/jobs/",
        f"/judge/jobs/{job.pk}/",
        f"/judge/ratings/{rating_job.pk}/",
        "/generation/jobs/",
        "/generation/jobs.json",
        "/generation/responses/",
        f"/generation/responses/set/{study.prompt_set.name}/",
        f"/generation/responses/prompt/{prompt.pk}/",
        "/generation/chat/",
        "/training/",
        f"/crowd/{name}/participants.csv",
    ]


def voted_and_judged():
    """40 comparisons, all voted (28 wins), all judged in both orders."""
    study, (a, _) = make_study(n_prompts=40, baselines=("alpaca-65b",))
    config = JudgeConfig.objects.create(name="gpt-4-recorded", model="gpt-4", base_url="http://127.0.0.1:9/v1")
    job = JudgeJob.objects.create(study=study, config=config, status="done")
    for k, comparison in enumerate(Comparison.objects.filter(study=study).order_by("pk")):
        vote(a, comparison, "a" if k < 28 else "b")
        recorded_verdicts(job, comparison, ("first", "second") if k < 30 else ("second", "first"))
    return study, job


def test_no_staff_page_export_or_report_changes_a_row(staff_client, tmp_path):
    study, job = voted_and_judged()
    set_target(study, 0.25)  # a target the votes already meet: a page that decided would stop it
    assert study_status(study)["reached"]
    crowd.create_link(study, quota=3, screening_items=0, screening_pass=0, completion_url="")
    rating_job = RatingJob.objects.create(
        config=job.config, system=study.candidate, prompt_set=study.prompt_set, kind="fpe", status="done"
    )
    prompt = Comparison.objects.filter(study=study).first().prompt
    before = digest()
    for url in staff_pages(study, job, rating_job, prompt):
        reply = staff_client.get(url)
        assert reply.status_code == 200, url
    call_command("report", study.name, out=tmp_path, job=job.pk, no_png=True)
    call_command("study", "status", study.name, stdout=StringIO())
    call_command("export", out=tmp_path / "export")
    after = digest()
    changed = sorted(table for table in before if before[table] != after.get(table))
    assert changed == [], f"reading wrote to {changed}"
    study.refresh_from_db()
    assert study.enough_at is None, "only the periodic check (or `study decide`) stops a study"

"""The main job end to end (issue 9): the demo pipeline with tiny settings on PostgreSQL + Redis,
one worker per queue, set up by environment variables only; then an annotator judges in the
browser and the dashboard shows Figures 1 and 2 with the numbers that were recorded."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from playwright.sync_api import expect

from evalsite.annotation.models import Comparison, HumanJudgment, Study
from evalsite.catalog.models import Prompt, PromptSet, Response, System
from evalsite.core.models import Workflow
from evalsite.finetune.models import TrainingDataset, TrainingRun
from evalsite.judging.models import JudgeConfig, JudgeJob, JudgeVerdict
from stats.outcomes import majority
from tests.browser import ARTIFACTS, browser, login
from tests.openai_stub import OpenAIStub, prompt_text
from tests.test_training_runs import chat_file, tiny_base
from tests.tiny_models import CHAT

pytestmark = pytest.mark.slow


def api_wins_judge(body: dict) -> str:
    """The API baseline's answers ("Answer to: ...") beat the tiny models'; the tiny ones tie."""
    text = prompt_text(body)
    a = re.search(r"Answer A:\n(.*?)\n\nAnswer B:", text, re.S).group(1)
    b = text.split("Answer B:\n", 1)[1]
    if "Answer to:" in a:
        return "Answer A is significantly better."
    if "Answer to:" in b:
        return "Answer B is significantly better."
    return "Neither is significantly better."


def figure_rows(svg: str) -> dict[str, tuple[str, list[str]]]:
    """baseline -> (n label, the percentages drawn on its bar), read off the figure's SVG text."""
    rows = {}
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    for i, text in enumerate(texts):
        if i + 1 < len(texts) and texts[i + 1].startswith("n = "):
            shares = []
            for following in texts[i + 2 :]:
                if not following.endswith("%"):
                    break
                shares.append(following)
            rows[text] = (texts[i + 1], shares)
    return rows


@pytest.mark.django_db(transaction=True)
def test_the_demo_pipeline_runs_on_postgres_and_redis_with_a_worker_per_queue(
    workers, tmp_path, settings, monkeypatch, live_server
):
    settings.TRAINING_RUNS_DIR = tmp_path / "runs"
    base = tiny_base(tmp_path)
    test_set = PromptSet.objects.create(name="tiny-test", purpose=PromptSet.Purpose.TEST)
    for i, (question, _) in enumerate(CHAT[:3]):
        Prompt.objects.create(
            prompt_set=test_set, external_id=f"t{i}", messages=[{"role": "user", "content": question}]
        )
    with OpenAIStub(responder=lambda body: "Answer to: " + prompt_text(body)[-40:]) as api:
        with OpenAIStub(responder=api_wins_judge) as judge_api:
            JudgeConfig.objects.create(name="stub-judge", model="gpt-4", base_url=judge_api.url, api_key_env="")
            environment = {
                "DEMO_BASE_SYSTEM": base.name,
                "DEMO_RECIPE_SET": "epochs=2 lr=1e-2 final_lr=1e-3 batch_size=4 micro_batch_size=2 max_length=64",
                "DEMO_TRAIN_FILE": chat_file(tmp_path),
                "DEMO_TEST_SET": "tiny-test",
                "DEMO_MAX_NEW_TOKENS": "6",
                "DEMO_OPENAI_BASELINES": "gpt-stub",
                "DEMO_OPENAI_BASE_URL": api.url,
                "DEMO_OPENAI_API_KEY_ENV": "STUB_KEY",
                "DEMO_JUDGE": "stub-judge",
                "DEMO_ANNOTATORS": "2",
                "DEMO_USE_WORKERS": "1",
                "STUB_KEY": "not-a-secret",
            }
            for key, value in environment.items():
                monkeypatch.setenv(key, value)
            for queue in ("training", "generation", "judge", "default"):
                workers(f"{queue}-worker", queues=queue, env_overrides={"STUB_KEY": "not-a-secret"})
            out = io.StringIO()
            call_command("demo", no_serve=True, stdout=out)
            printed = out.getvalue()

            # a second run skips every stage already done
            again = io.StringIO()
            call_command("demo", no_serve=True, stdout=again)
            assert "already done, skipped" in again.getvalue() and "done in" not in again.getvalue()

    # every stage left its rows
    dataset = TrainingDataset.objects.get(name="demo-train")
    assert dataset.trainable().count() == len(CHAT)
    run = TrainingRun.objects.get()
    assert run.status == "done"
    assert [c.epoch for c in run.checkpoints.all()] == [1, 2]
    candidate = System.objects.get(name=f"{base.name}-lima-mini")
    assert candidate.kind == "candidate" and candidate.checkpoint.epoch == 2
    api_system = System.objects.get(name="openai-gpt-stub")
    for system in (candidate, base, api_system):
        assert Response.objects.filter(system=system, prompt__prompt_set=test_set).count() == 3, system
    assert Response.objects.filter(system=api_system, text__startswith="Answer to:").count() == 3
    study = Study.objects.get(name="demo")
    assert study.status == Study.Status.OPEN and study.candidate == candidate
    assert study.comparisons.filter(is_gold=False).count() == 6
    judge_job = JudgeJob.objects.get(study=study)
    assert judge_job.status == "done" and JudgeVerdict.objects.filter(job=judge_job).count() == 12
    assert User.objects.filter(username__startswith="demo-annotator-").count() == 2
    # the jobs ran on the worker of their queue
    assert run.worker.startswith("training-worker@")
    assert judge_job.worker.startswith("judge-worker@")
    # the chain from curation to judge was one workflow the workers carried, every link done
    flow = Workflow.objects.get(kind="demo")
    assert flow.status == Workflow.Status.DONE and flow.by_workers
    # curate, train, register, the API baseline, 3 x generate, open the study, judge
    assert [s["state"] for s in flow.steps] == ["done"] * 9
    assert flow.steps[-1]["job"] == f"{JudgeJob.label()}:{judge_job.pk}"
    credentials = dict(re.findall(r"annotator: (demo-annotator-\d) / (\S+)", printed))
    assert set(credentials) == {"demo-annotator-1", "demo-annotator-2"}

    User.objects.create_superuser("chief", "chief@example.org", "chief-password-1")
    with browser() as chromium:
        # both annotators (the demo's overlap is 2): a comparison counts once both have voted
        for name in ("demo-annotator-1", "demo-annotator-2"):
            page = chromium.new_page(viewport={"width": 1280, "height": 900})
            login(page, live_server.url, name, credentials[name], "/annotate/")
            page.click("text=Continue")
            page.wait_for_selector("#progress-count")
            page.screenshot(path=str(ARTIFACTS / "demo-comparison.png"), full_page=True)
            for k, key in enumerate("1231", start=1):
                page.wait_for_selector("#progress-count")
                page.keyboard.press(key)
                # (no wait_for_function: its predicate is an eval, which the page's CSP refuses)
                expect(page.locator("#progress-count")).to_have_text(re.compile(rf"^{k} /"))
            page.close()
        staff = chromium.new_page(viewport={"width": 1400, "height": 1000})
        login(staff, live_server.url, "chief", "chief-password-1", "/dashboard/demo/")
        staff.wait_for_selector("#figure1 svg")
        figure1 = staff.inner_html("#figure1")
        figure2 = staff.inner_html("#figure2")
        staff.screenshot(path=str(ARTIFACTS / "demo-dashboard.png"), full_page=True)
        staff.goto(f"{live_server.url}/training/runs/{run.pk}/")
        assert staff.locator("#loss svg > polyline").count() == 1  # the train loss per step
        assert "5 examples trained on, 1 held out" in staff.inner_text("#run-progress")
        # lima-mini holds one of the six examples out: its loss on the base and after each epoch
        assert staff.locator("#loss svg g.second-series circle").count() == 3
        staff.screenshot(path=str(ARTIFACTS / "demo-training-run.png"), full_page=True)

    # Figure 1: what the annotators recorded, per baseline, each comparison with both votes in by
    # its majority (gold checks are not part of it; a comparison with one vote does not count yet)
    recorded: dict[str, Counter] = {}
    complete = Comparison.objects.filter(study=study, is_gold=False, completed_at__isnull=False)
    for comparison in complete.select_related("baseline"):
        votes = (comparison.votes_candidate, comparison.votes_baseline, comparison.votes_tie)
        recorded.setdefault(comparison.baseline.name, Counter())[majority(votes)] += 1
    assert sum(sum(c.values()) for c in recorded.values()) >= 2
    assert HumanJudgment.objects.filter(comparison__in=complete).count() == 2 * complete.count()
    shown = figure_rows(figure1)
    assert set(shown) == set(recorded), "only baselines with a complete comparison have a bar"
    for baseline, counts in recorded.items():
        n = sum(counts.values())
        label, shares = shown[baseline]
        assert label == f"n = {n}"
        expected = [f"{100 * counts[o] / n:.0f}%" for o in ("candidate", "tie", "baseline") if counts[o] / n >= 0.06]
        assert shares == expected, (baseline, counts)
    # Figure 2: the judge put the API baseline above the candidate and tied the two tiny models
    judged = figure_rows(figure2)
    assert judged["openai-gpt-stub"] == ("n = 3", ["100%"]) and 'fill="#b5483f"' in figure2
    assert judged[base.name] == ("n = 3", ["100%"])
    assert json.dumps(sorted(judged)) == json.dumps(sorted([base.name, "openai-gpt-stub"]))
    assert Comparison.objects.filter(study=study, judgments_done__gt=0).exists()


@pytest.mark.django_db
def test_a_second_demo_run_prints_a_fresh_one_time_link_for_staff_that_works_once(client):
    from evalsite.pipeline.stages import fresh_logins

    User.objects.create_superuser("admin", "admin@example.org", "first-run-password-1")
    [line] = fresh_logins()
    assert line.startswith("staff login: admin (password as shown at the first run)   one-time: http")
    path = "/" + line.split("one-time: ")[1].split("/", 3)[3]
    assert client.get(path).status_code == 200, "opening it spends nothing (a mail filter's scanner may)"
    reply = client.post(path)
    assert reply.status_code == 302 and reply["Location"] == "/", "staff land on the studies' dashboard"
    client.logout()
    assert client.post(path).status_code == 410, "once"
    assert fresh_logins() != [line], "each run a new link"


@pytest.mark.django_db
def test_the_demo_says_up_front_how_long_and_how_much_disk_and_skips_the_estimate_when_done():
    from evalsite.pipeline.stages import DEMO_DISK_GB, STAGE_SECONDS, Stage, run_stages

    ran = []
    stages = [
        Stage("fine-tune", lambda s: ran.append("train"), kind="train"),
        Stage("judge", lambda s: ran.append("judge"), kind="judge"),
        Stage("already there", lambda s: ran.append("x"), lambda: True, kind="generate"),
    ]
    printed = []
    run_stages(printed.append, stages, estimate=True)
    expected = (STAGE_SECONDS["train"] + STAGE_SECONDS["judge"]) / 60
    assert printed[0] == (
        f"about {expected:.0f} min to go on 2 quiet CPU cores (measured), and up to {DEMO_DISK_GB:.1f} GB "
        "under var/ when it is done"
    ), "the stages already done are not counted"
    assert ran == ["train", "judge"] and printed[-1] == "[3/3] already there: already done, skipped"
    printed.clear()
    run_stages(printed.append, [stages[2]], estimate=True)
    assert printed == ["[1/1] already there: already done, skipped"], "nothing to do, nothing to estimate"


@pytest.mark.django_db
def test_on_a_fresh_machine_a_check_that_needs_tables_counts_as_to_do_in_the_estimate():
    """Before the first stage migrates, a later stage's check reads a table that does not exist
    yet: the estimate counts that stage as still to do instead of failing, and the stages run."""
    from django.db import connection

    from evalsite.pipeline.stages import STAGE_SECONDS, Stage, run_stages

    migrated = []

    def seeded() -> bool:
        if not migrated:  # as on a fresh machine: the table comes with the first stage
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM a_table_the_first_stage_makes")
        return False

    stages = [
        Stage("migrate", lambda s: migrated.append(True), kind="migrate"),
        Stage("seed", lambda s: None, seeded, kind="train"),
    ]
    printed = []
    run_stages(printed.append, stages, estimate=True)
    minutes = (STAGE_SECONDS["migrate"] + STAGE_SECONDS["train"]) / 60
    assert printed[0].startswith(f"about {minutes:.0f} min to go")
    assert printed[-1].startswith("[2/2] seed: done in")


SHOW_SITE_URL = "from django.conf import settings; print(settings.SITE_URL)"


@pytest.mark.django_db
def test_printed_links_point_where_the_demo_serves(monkeypatch, settings):
    from evalsite.pipeline.management.commands.demo import serves_at
    from evalsite.pipeline.stages import fresh_logins

    # DEMO_PORT alone: the site's address follows it
    env = {key: value for key, value in os.environ.items() if key != "SITE_URL"} | {"DEMO_PORT": "8123"}
    root = Path(__file__).resolve().parent.parent
    shown = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", SHOW_SITE_URL],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shown.stdout.split()[-1] == "http://127.0.0.1:8123", shown.stderr
    # `demo --port`: the one-time links it prints, and the ones its server and worker make
    User.objects.create_superuser("admin", "admin@example.org", "first-run-password-1")
    monkeypatch.delenv("SITE_URL", raising=False)
    serves_at("0.0.0.0", 8124)
    [line] = fresh_logins()
    assert "one-time: http://127.0.0.1:8124/annotate/login/" in line
    assert os.environ["SITE_URL"] == "http://127.0.0.1:8124", "inherited by the web server and the worker"
    # where SITE_URL says where people reach the site, it is what every link says
    monkeypatch.setenv("SITE_URL", "https://eval.example.org")
    settings.SITE_URL = "https://eval.example.org"
    serves_at("127.0.0.1", 8125)
    [line] = fresh_logins()
    assert "one-time: https://eval.example.org/annotate/login/" in line


@pytest.mark.django_db
def test_with_a_core_busy_elsewhere_the_demo_says_so_and_estimates_for_this_machine():
    """Another process burns a core: the probe measures this machine slower than the one the
    stages were timed on, and the demo says so with its own estimate (it once said 9 minutes were
    left when 17.5 were)."""
    from evalsite.pipeline.stages import SLOWER, STAGE_SECONDS, Stage, run_stages

    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        printed: list[str] = []
        run_stages(printed.append, [Stage("fine-tune", lambda s: None, kind="train")], estimate=True)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    said = re.fullmatch(
        r"this machine is ([\d.]+)x slower than those right now \([\d.]+ of its \d+ cores busy with other work\): "
        r"expect about (\d+) min",
        printed[1],
    )
    assert said, printed
    factor = float(said.group(1))
    assert factor >= SLOWER and int(said.group(2)) == round(STAGE_SECONDS["train"] * factor / 60)

"""``manage.py ablate`` on a tiny model: two cells by size, each trained, answering, rated by a
judge (a stub of an OpenAI-compatible server), drawn as a two-point curve; killed in the middle
of the second cell's training, the same command goes on from there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from bs4 import BeautifulSoup
from django.core.management import CommandError, call_command

from evalsite.answering.models import GenerationJob
from evalsite.catalog.models import Prompt, PromptSet, System
from evalsite.core.jobs import JobStatus
from evalsite.core.models import Workflow
from evalsite.finetune.models import Ablation, AblationCell, TrainingDataset, TrainingRun
from evalsite.judging.models import Rating, RatingJob
from tests.conftest import ROOT, shared_database_url, wait_until
from tests.judge_fixtures import judge_config
from tests.openai_stub import OpenAIStub
from tests.test_training_runs import chat_file, tiny_base
from tests.tiny_models import CHAT

ARGS = ["epochs=12", "lr=1e-2", "final_lr=1e-3", "batch_size=2", "micro_batch_size=2", "max_length=64"]


def grade(body) -> str:
    """The judge: a 5 for answers to the sky question, a 3 for the others (so each cell has an
    interval over prompts)."""
    return "Score: 5" if "[Question]\nwhat is the sky\n" in body["messages"][-1]["content"] else "Score: 3"


def ablate_args(**extra) -> list[str]:
    args = {
        "--dataset": "chat",
        "--by": "size",
        "--sizes": "3,6",
        "--base": "tiny-base",
        "--prompts": "dev",
        "--judge": "gpt-4-stub",
        "--samples": "2",
        **extra,
    }
    return [part for pair in args.items() for part in pair] + ["--set", *ARGS]


def setup_ablation(tmp_path, stub) -> None:
    base = tiny_base(tmp_path)
    System.objects.filter(pk=base.pk).update(sampling={"temperature": 0, "max_new_tokens": 6})
    call_command("curate", name="chat", jsonl=[chat_file(tmp_path)], tokenizer="none")
    dev = PromptSet.objects.create(name="dev", purpose=PromptSet.Purpose.DEV)
    for i, (question, _) in enumerate(CHAT[:3]):
        Prompt.objects.create(prompt_set=dev, external_id=f"d{i}", messages=[{"role": "user", "content": question}])
    judge_config(stub)


@pytest.mark.django_db(transaction=True)
def test_ablate_draws_a_two_point_curve_and_goes_on_after_a_kill(tmp_path, settings, staff_client, capsys):
    settings.TRAINING_RUNS_DIR = tmp_path / "runs"
    with OpenAIStub(responder=grade) as stub:
        setup_ablation(tmp_path, stub)
        env = dict(
            os.environ,
            DATABASE_URL=shared_database_url(),
            TRAINING_RUNS_DIR=str(settings.TRAINING_RUNS_DIR),
            PYTHONUNBUFFERED="1",
            DB_CONN_MAX_AGE="0",
        )
        log = (tmp_path / "ablate.log").open("wb")
        command = [sys.executable, "manage.py", "ablate", *ablate_args(), "--foreground"]
        first = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

        def second_cell_half_trained():
            cell = AblationCell.objects.filter(label="6").select_related("run").first()
            return cell is not None and cell.run is not None and cell.run.checkpoints.count() >= 3

        try:
            wait_until(second_cell_half_trained, timeout=240, poll=0.05, message="the second cell's third epoch")
        finally:
            os.killpg(first.pid, signal.SIGKILL)  # a crash: the run's row still says running
            first.wait(10)
        small, large = AblationCell.objects.order_by("position")
        assert small.rating.status == JobStatus.DONE, (tmp_path / "ablate.log").read_text()[-2000:]
        assert large.run.status == JobStatus.RUNNING and large.rating is None
        saved = large.run.checkpoints.count()
        assert saved < 12

        call_command("ablate", *ablate_args(), "--foreground")
    out = capsys.readouterr().out
    assert "going on with ablation chat-by-size" in out and "was left running by a killed ablate" in out
    small, large = AblationCell.objects.order_by("position")
    # nothing done twice: one run per cell, the first trained once, the second resumed
    assert TrainingRun.objects.count() == 2 and small.run.attempts == 1
    assert large.run.attempts == 2 and large.run.status == JobStatus.DONE
    assert [h[0] for h in large.run.loss_history] == list(range(1, 12 * 3 + 1))  # 3 steps an epoch, none twice
    assert GenerationJob.objects.count() == 2 and RatingJob.objects.count() == 2
    # nested subsets: the 6 hold the 3
    three = set(small.subset.examples.values_list("external_id", flat=True))
    assert len(three) == 3 and three < set(large.subset.examples.values_list("external_id", flat=True))
    assert Rating.objects.filter(value__in=["3", "5"]).count() == 2 * 3 * 2  # 2 cells x 3 prompts x 2 samples
    assert "chat-by-size: every cell rated" in out

    page = BeautifulSoup(staff_client.get("/training/ablations/chat-by-size/").content, "html.parser")
    points = page.select("#curve svg g.point")
    assert len(points) == 2 and len(page.select("#curve svg polyline")) == 1
    assert all(p.select_one("line.whisker") is not None for p in points)
    rows = [[td.get_text(" ", strip=True) for td in tr.find_all("td")] for tr in page.select("#cells tr")[1:]]
    assert [r[0] for r in rows] == ["3", "6"]
    # each cell's mean over prompts: the sky prompt 5, the two others 3
    assert [r[6] for r in rows] == ["3.67", "3.67"]
    low, high = rows[0][7].split(" to ")
    assert float(low) < 3.67 < float(high)
    assert "chat-by-size" in staff_client.get("/training/").content.decode()


@pytest.mark.django_db
def test_ablate_refuses_what_cannot_be_drawn(tmp_path, settings):
    settings.TRAINING_RUNS_DIR = tmp_path / "runs"
    with OpenAIStub(responder=grade) as stub:
        setup_ablation(tmp_path, stub)
    cases = [
        ({"--sizes": "6,3"}, "--sizes must grow and not repeat, not '6,3'"),
        ({"--sizes": "3,many"}, "--sizes must be whole numbers and commas"),
        ({"--sizes": "3,60"}, "dataset chat holds 6 trainable examples, fewer than 60"),
        ({"--sizes": "3"}, "--by size needs two sizes or more"),
        (
            {"--by": "source", "--sizes": "3"},
            "dataset chat has one source \\(ours\\): --by source compares two or more",
        ),
        ({"--judge": "gpt-5"}, "no judge config named 'gpt-5'"),
        ({"--prompts": "nope"}, "no prompt set named 'nope'"),
    ]
    for extra, message in cases:
        with pytest.raises(CommandError, match=message):
            call_command("ablate", *ablate_args(**extra))
    assert not Ablation.objects.exists() and TrainingDataset.objects.count() == 1
    call_command("ablate", *ablate_args())  # leaves the jobs to workers
    with pytest.raises(CommandError, match="ablation 'chat-by-size' exists with other settings \\(samples\\)"):
        call_command("ablate", *ablate_args(**{"--samples": "3"}))
    assert Ablation.objects.count() == 1 and TrainingRun.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_an_ablation_started_without_wait_finishes_with_the_workers_alone(tmp_path, settings, staff_client, workers):
    """The command starts the workflow and exits; the workers take each cell from training to
    answers to ratings as their jobs end (no terminal waits), and the curve is drawn."""
    settings.TRAINING_RUNS_DIR = tmp_path / "runs"
    with OpenAIStub(responder=grade) as stub:
        setup_ablation(tmp_path, stub)
        call_command("ablate", *ablate_args())  # no --wait, no --foreground: returns at once
        flow = Workflow.objects.get(kind="ablation")
        assert flow.by_workers
        workers("w1", env_overrides={"TRAINING_RUNS_DIR": str(settings.TRAINING_RUNS_DIR)})
        wait_until(
            lambda: Workflow.objects.get(pk=flow.pk).status != Workflow.Status.RUNNING,
            timeout=400,
            poll=0.5,
            message="the workflow's end",
        )
    flow.refresh_from_db()
    assert flow.status == Workflow.Status.DONE, flow.error
    assert [step["state"] for step in flow.steps] == ["done"] * 6  # 2 cells x (train, answer, rate)
    small, large = AblationCell.objects.order_by("position")
    assert small.rating.status == large.rating.status == JobStatus.DONE
    assert TrainingRun.objects.count() == 2 and RatingJob.objects.count() == 2
    page = BeautifulSoup(staff_client.get("/training/ablations/chat-by-size/").content, "html.parser")
    assert len(page.select("#curve svg g.point")) == 2
    assert page.select_one("#workflow a").get_text(strip=True) == "done"
    listed = BeautifulSoup(staff_client.get("/workflows/").content, "html.parser")
    steps = listed.select(f"#workflow-{flow.pk} table.steps tr")[1:]
    assert [tr.find_all("td")[1].get_text(strip=True) for tr in steps] == ["done"] * 6

"""Training as the platform runs it: curate, review, train on a worker (or through a launcher),
see the run's page, pick and register a checkpoint, and evaluate it like any system."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from evalsite.annotation.models import Study
from evalsite.answering.models import GenerationJob
from evalsite.catalog.models import Prompt, PromptSet, Response, System
from evalsite.core.jobs import JobStatus
from evalsite.core.models import Workflow
from evalsite.finetune.models import Checkpoint, TrainingDataset, TrainingExample, TrainingRun
from evalsite.finetune.services import table_1
from tests.annotation_fixtures import vote
from tests.conftest import wait_until
from tests.test_curation import LONG_ANSWER, row, write_posts
from tests.tiny_models import CHAT, save_tiny


@pytest.fixture
def runs_dir(settings, tmp_path):
    settings.TRAINING_RUNS_DIR = tmp_path / "runs"
    return settings.TRAINING_RUNS_DIR


def tiny_base(tmp_path, name="tiny-base") -> System:
    folder = save_tiny(tmp_path / name)
    return System.objects.create(name=name, backend="hf_local", backend_config={"model_path": str(folder)})


def chat_file(tmp_path) -> str:
    path = tmp_path / "chat.jsonl"
    with path.open("w") as out:
        for i, (q, a) in enumerate(CHAT):
            out.write(json.dumps({"id": f"c{i}", "messages": [{"role": "user", "content": q}], "reference_answer": a}))
            out.write("\n")
    return str(path)


def tiny_recipe_args():
    return ["epochs=3", "lr=1e-2", "final_lr=1e-3", "batch_size=4", "micro_batch_size=2", "max_length=64"]


# -- curation and review --------------------------------------------------------------------------


def test_curate_builds_a_dataset_with_a_manifest_beside_table_1(db, tmp_path, capsys):
    posts = write_posts(
        tmp_path / "Posts.xml",
        [
            row(Id=1, PostTypeId=1, Title="How do I close files?", Body="<p>They stay open.</p>"),
            row(Id=2, PostTypeId=2, ParentId=1, Score=25, Body=LONG_ANSWER),
            row(Id=3, PostTypeId=1, Title="Low score?", Body="<p>?</p>"),
            row(Id=4, PostTypeId=2, ParentId=3, Score=2, Body=LONG_ANSWER),
        ],
    )
    wikihow = tmp_path / "wikihow.csv"
    wikihow.write_text('title,text\n"How to Boil an Egg","This article shows how. Put it in water."\n')
    call_command(
        "curate",
        name="mix",
        stackexchange=[f"{posts}:python.stackexchange.com:stem"],
        wikihow=[str(wikihow)],
        jsonl=[chat_file(tmp_path)],
        tokenizer="none",
    )
    out = capsys.readouterr().out
    assert "dataset mix: 8 examples" in out and "stackexchange_stem rejected: score 1" in out
    dataset = TrainingDataset.objects.get(name="mix")
    kept = dataset.trainable()
    assert kept.count() == 8
    assert set(kept.values_list("source", flat=True)) == {"stackexchange_stem", "wikihow", "ours"}
    egg = kept.get(source="wikihow")
    assert egg.messages[1]["content"] == "The following answer shows how. Put it in water."
    rejected = dataset.examples.get(status=TrainingExample.Status.REJECTED)
    assert rejected.reason == "score 2 < 10"
    assert dataset.manifest["read"] == {"stackexchange_stem": 2, "wikihow": 1, "ours": 6}
    assert dataset.manifest["tokens_counted_with"] == "estimate: 4 characters per token"
    row_se = next(r for r in table_1(dataset) if r["source"] == "stackexchange_stem")
    assert (row_se["examples"], row_se["paper_examples"], row_se["paper_output"]) == (1, 200, 523)
    assert row_se["avg_output_tokens"] > 300


def test_a_malformed_file_saves_nothing_and_names_the_line(db, tmp_path):
    good = chat_file(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}], "reference_answer": "a"}) + "\n{oops\n")
    with pytest.raises(CommandError, match=f"{bad}:2: not valid JSON .*nothing was saved"):
        call_command("curate", name="broken", jsonl=[good, str(bad)], tokenizer="none")
    assert not TrainingDataset.objects.exists() and not TrainingExample.objects.exists()
    with pytest.raises(CommandError, match=f"{good}:1: example id 'c0' was already used at {good}:1"):
        call_command("curate", name="twice", jsonl=[good, good], tokenizer="none")
    assert not TrainingDataset.objects.exists()
    call_command("curate", name="ok", jsonl=[good], tokenizer="none")
    with pytest.raises(CommandError, match="a dataset named 'ok' exists"):
        call_command("curate", name="ok", jsonl=[good], tokenizer="none")


def test_staff_review_examples_one_by_one_and_edits_keep_the_original(db, tmp_path, staff_client, django_user_model):
    call_command("curate", name="rev", jsonl=[chat_file(tmp_path)], tokenizer="none")
    first, second, third = TrainingExample.objects.order_by("pk")[:3]
    page = staff_client.get(f"/training/examples/{first.pk}/")
    assert page.status_code == 200 and "the sky is blue" in page.content.decode()
    annotator_client = Client()
    annotator_client.force_login(django_user_model.objects.create_user("ann", password="x"))
    assert annotator_client.get(f"/training/examples/{first.pk}/").status_code == 403
    assert annotator_client.get("/training/datasets/rev/").status_code == 403
    assert annotator_client.post(f"/training/examples/{first.pk}/", {"action": "reject"}).status_code == 403

    done = staff_client.post(f"/training/examples/{first.pk}/", {"action": "accept"})
    assert done.status_code == 302 and done["Location"] == f"/training/examples/{second.pk}/"  # the next one
    staff_client.post(f"/training/examples/{second.pk}/", {"action": "reject", "note": "too short"})
    staff_client.post(
        f"/training/examples/{third.pk}/", {"action": "edit", "prompt": "why is the sun warm", "answer": "it is a star"}
    )
    first.refresh_from_db(), second.refresh_from_db(), third.refresh_from_db()
    assert first.status == "accepted" and first.reviewed_by.is_staff
    assert (second.status, second.reason) == ("rejected", "too short")
    assert third.status == "accepted" and third.messages[1]["content"] == "it is a star"
    assert third.original_messages[1]["content"] == "the sun is a big star"
    empty = staff_client.post(f"/training/examples/{first.pk}/", {"action": "edit", "prompt": "", "answer": "x"})
    assert "must not be empty" in empty.content.decode()
    dataset = TrainingDataset.objects.get(name="rev")
    assert dataset.trainable().count() == 5  # the rejected one is left out
    listing = BeautifulSoup(staff_client.get("/training/datasets/rev/?status=rejected").content, "html.parser")
    rows = listing.select("table.examples tr.example")
    assert [r.select_one("td.id").get_text() for r in rows] == [second.external_id]  # c0 (accepted) not listed
    assert rows[0].find_all("td")[-1].get_text() == "too short"


# -- runs -----------------------------------------------------------------------------------------


def test_train_on_a_worker_keeps_a_checkpoint_per_epoch_and_shows_the_run(workers, runs_dir, tmp_path, staff_client):
    base = tiny_base(tmp_path)
    call_command("curate", name="chat", jsonl=[chat_file(tmp_path)], tokenizer="none")
    workers("w1")
    call_command("train", dataset="chat", recipe="lima-mini", base=base.name, set=tiny_recipe_args(), wait=True)
    run = TrainingRun.objects.get()
    assert run.status == JobStatus.DONE and run.examples_used == 6
    assert run.status_detail.startswith("3 checkpoint(s); epoch 3 train loss ")
    assert [c.epoch for c in run.checkpoints.all()] == [1, 2, 3]
    assert len(run.loss_history) == 6 and run.loss_history[-1][2] < run.loss_history[0][2]
    assert run.recipe["name"] == "lima-mini" and run.recipe["epochs"] == 3
    assert (run.run_dir / "epoch-03" / "recipe.json").exists()
    # lima-mini holds out 6 examples, at most a fifth: 1 of these 6; its loss with dropout off,
    # the base's as epoch 0, beside the train loss
    assert [h[0] for h in run.heldout_history] == [0, 1, 2, 3] and run.heldout_history[0][2] == 1
    page = staff_client.get(f"/training/runs/{run.pk}/").content.decode()
    soup = BeautifulSoup(page, "html.parser")
    chart = soup.select_one("#loss svg")
    assert len(chart.select("g.second-series circle")) == 4 and chart.select_one("polyline") is not None
    rows = [
        [td.get_text(strip=True) for td in tr.find_all("td")] for tr in soup.select("#checkpoints tr") if tr.find("td")
    ]
    by_epoch = {r[0]: r for r in rows}
    assert list(by_epoch) == ["0 (base)", "1", "2", "3"]
    assert by_epoch["0 (base)"][3] == f"{run.heldout_history[0][1]:.4f}"
    assert by_epoch["3"][3] == f"{run.heldout_history[3][1]:.4f}"
    assert "does not track the quality" in soup.select_one("#loss").get_text(" ", strip=True)
    assert "residual_dropout_top" in page and "Make it the candidate" in page
    assert f"select_checkpoint {run.pk} --epochs 1-3 --wait" in page
    assert staff_client.get("/training/").status_code == 200

    assert staff_client.post(f"/training/runs/{run.pk}/register", {"epoch": "x"}).status_code == 404
    assert staff_client.post(f"/training/runs/{run.pk}/register", {"epoch": "7"}).status_code == 404
    assert staff_client.post(f"/training/runs/{run.pk}/register", {"epoch": "2"}).status_code == 302
    assert run.checkpoints.get(epoch=2).system.kind == System.Kind.CANDIDATE
    assert "dtype" not in run.checkpoints.get(epoch=2).system.backend_config
    # a base generated in bfloat16 (the bundled model where the CPU has it): its checkpoints too
    System.objects.filter(pk=base.pk).update(backend_config={**base.backend_config, "dtype": "bfloat16"})
    call_command("register_checkpoint", str(run.pk), epoch=3, name="chat-tuned")
    system = System.objects.get(name="chat-tuned")
    assert system.kind == System.Kind.CANDIDATE and system.checkpoint.epoch == 3
    assert system.backend_config["dtype"] == "bfloat16"
    # the checkpoint is a system like any other: it answers prompts (with its EOT-aware template)
    prompt_set = PromptSet.objects.create(name="p")
    Prompt.objects.create(prompt_set=prompt_set, external_id="p1", messages=[{"role": "user", "content": CHAT[0][0]}])
    System.objects.filter(pk=system.pk).update(sampling={"temperature": 0, "max_new_tokens": 8})
    call_command("generate", system="chat-tuned", prompts="p", foreground=True)
    assert Response.objects.get(system=system).text.strip() != ""
    with pytest.raises(CommandError, match="has no checkpoint for epochs \\[9\\]"):
        call_command("register_checkpoint", str(run.pk), epoch=9)


def test_select_checkpoint_registers_generates_and_opens_a_ranking_study(
    runs_dir, tmp_path, transactional_db, workers, capsys
):
    base = tiny_base(tmp_path)
    call_command("curate", name="chat", jsonl=[chat_file(tmp_path)], tokenizer="none")
    call_command("train", dataset="chat", base=base.name, set=tiny_recipe_args(), foreground=True)
    run = TrainingRun.objects.get()
    dev = PromptSet.objects.create(name="dev", purpose=PromptSet.Purpose.DEV)
    for i in range(40):
        q = CHAT[i % len(CHAT)][0]
        Prompt.objects.create(prompt_set=dev, external_id=f"d{i}", messages=[{"role": "user", "content": q}])
    workers("w1")
    # without --wait the command returns at once; the workers open the study when the answers are in
    call_command("select_checkpoint", str(run.pk), epochs="2-3", prompts="dev")
    wait_until(lambda: Study.objects.get().status == Study.Status.OPEN, timeout=180, message="the study open")
    flow = Workflow.objects.get(kind="checkpoint-selection")
    assert flow.status == Workflow.Status.DONE and flow.by_workers
    assert [step["state"] for step in flow.steps] == ["done", "done", "done"]
    systems = list(System.objects.filter(checkpoint__run=run).order_by("checkpoint__epoch"))
    assert [s.checkpoint.epoch for s in systems] == [2, 3]
    assert GenerationJob.objects.filter(status=JobStatus.DONE).count() == 2
    study = Study.objects.get()
    assert study.status == Study.Status.OPEN and study.kind == Study.Kind.RANKING and study.ranking_goal == "top"
    # the same command again, following: the same workflow, already done; no vote yet: it cannot say
    call_command("select_checkpoint", str(run.pk), epochs="2-3", prompts="dev", wait=True)
    assert Workflow.objects.get().status == Workflow.Status.DONE and Study.objects.count() == 1
    assert {study.candidate, *study.baselines.all()} == set(systems) and study.comparisons.count() == 40
    assert "0 complete comparisons of 40: not yet" in capsys.readouterr().out
    # people prefer epoch 3 on every dev prompt: after three votes the command says it cannot
    # tell yet (and about how many more would); after forty it names epoch 3
    user = User.objects.create_user("ann", password="pw-ann-secret")
    study.annotators.add(user)
    comparisons = list(study.comparisons.select_related("first_system__checkpoint").order_by("draw_order"))
    for n, comparison in enumerate(comparisons):
        vote(user, comparison, "a" if comparison.first_system.checkpoint.epoch == 3 else "b")
        if n == 2:
            call_command("select_checkpoint", str(run.pk), epochs="2-3", prompts="dev")
            out = capsys.readouterr().out
            assert "3 complete comparisons of 40: not yet:" in out and "may be first" in out, out
            assert "more complete comparisons would settle the top" in out, out
    call_command("select_checkpoint", str(run.pk), epochs="2-3", prompts="dev")
    out = capsys.readouterr().out
    assert "settled: the best system is" in out and f"best: epoch 3: manage.py register_checkpoint {run.pk}" in out
    with pytest.raises(CommandError, match="--epochs must look like 5-10"):
        call_command("select_checkpoint", str(run.pk), epochs="five", prompts="dev")
    with pytest.raises(CommandError, match="no training run '99'"):
        call_command("select_checkpoint", "99", prompts="dev")


def test_a_launcher_runs_the_same_training_in_two_data_parallel_processes(runs_dir, tmp_path, settings, db):
    # what a GPU box runs with `accelerate launch` and the FSDP config, here as two CPU processes
    # (torchrun; accelerate then trains data-parallel over gloo)
    torchrun = Path(sys.executable).parent / "torchrun"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.TRAINING_LAUNCHER = f"env ACCELERATE_USE_CPU=1 {torchrun} --nproc_per_node 2 --master_port {port}"
    base = tiny_base(tmp_path)
    call_command("curate", name="chat", jsonl=[chat_file(tmp_path)], tokenizer="none")
    call_command("train", dataset="chat", base=base.name, set=tiny_recipe_args(), foreground=True)
    run = TrainingRun.objects.get()
    assert run.status == JobStatus.DONE, run.error
    assert [c.epoch for c in Checkpoint.objects.filter(run=run)] == [1, 2, 3]
    assert [h[0] for h in run.loss_history] == [1, 2, 3, 4, 5, 6]
    assert [h[0] for h in run.heldout_history] == [0, 1, 2, 3]  # relayed from the launched processes
    assert "loading the base model (2 process(es))" in (run.run_dir / "progress.jsonl").read_text()


def test_train_refuses_what_cannot_work(db, tmp_path, runs_dir):
    call_command("curate", name="chat", jsonl=[chat_file(tmp_path)], tokenizer="none")
    System.objects.create(name="api", backend="openai_compat", backend_config={"base_url": "http://x", "model": "m"})
    with pytest.raises(CommandError, match="api is openai_compat; training needs an hf_local system"):
        call_command("train", dataset="chat", base="api")
    with pytest.raises(CommandError, match="unknown recipe 'alpaca'"):
        call_command("train", dataset="chat", base="api", recipe="alpaca")
    with pytest.raises(CommandError, match="no training dataset named 'nope'"):
        call_command("train", dataset="nope", base="api")
    with pytest.raises(CommandError, match="--set takes FIELD=VALUE"):
        call_command("train", dataset="chat", base="api", set=["epochs"])
    assert not TrainingRun.objects.exists()


def test_a_run_whose_worker_is_killed_resumes_from_its_last_checkpoint(workers, runs_dir, tmp_path):
    base = tiny_base(tmp_path)
    call_command("curate", name="chat", jsonl=[chat_file(tmp_path)], tokenizer="none")
    first = workers("trainer")
    args = ["epochs=30", "lr=1e-2", "final_lr=1e-3", "batch_size=2", "micro_batch_size=2", "max_length=64"]
    call_command("train", dataset="chat", base=base.name, set=args)
    run = TrainingRun.objects.get()
    wait_until(lambda: run.checkpoints.filter(epoch__gte=3).exists(), timeout=120, message="three epochs saved")
    first.kill()  # SIGKILL mid-run: no clean-up, the row still says running
    killed_at = run.checkpoints.count()
    assert TrainingRun.objects.get().status == JobStatus.RUNNING and killed_at < 30
    workers("trainer")  # the same node restarts and takes its orphan back at once
    wait_until(lambda: TrainingRun.objects.get().status == JobStatus.DONE, timeout=180, message="run done")
    run.refresh_from_db()
    assert run.attempts == 2
    assert [c.epoch for c in run.checkpoints.all()] == list(range(1, 31))
    assert [h[0] for h in run.loss_history] == list(range(1, 91))  # 3 steps per epoch, none twice


def test_a_kill_between_saving_an_epoch_and_reporting_it_loses_no_checkpoint(db, tmp_path, runs_dir):
    # the folder and the resume state are on disk, the row is not (the worker died in between)
    base = tiny_base(tmp_path)
    call_command("curate", name="chat", jsonl=[chat_file(tmp_path)], tokenizer="none")
    call_command("train", dataset="chat", base=base.name, set=tiny_recipe_args(), foreground=True)
    run = TrainingRun.objects.get()
    lost = run.checkpoints.get(epoch=3)
    saved = (lost.step, lost.path, lost.train_loss)
    lost.delete()
    TrainingRun.objects.filter(pk=run.pk).update(status=JobStatus.FAILED, error="killed")
    call_command("train", dataset="chat", base=base.name, set=tiny_recipe_args(), foreground=True)
    run.refresh_from_db()
    assert run.status == JobStatus.DONE
    assert [c.epoch for c in run.checkpoints.all()] == [1, 2, 3]
    found = run.checkpoints.get(epoch=3)
    assert (found.step, found.path) == saved[:2] and found.train_loss == pytest.approx(saved[2])


def test_the_same_train_command_resumes_a_failed_run(db, tmp_path, runs_dir):
    base = tiny_base(tmp_path)
    call_command("curate", name="chat", jsonl=[chat_file(tmp_path)], tokenizer="none")
    call_command("train", dataset="chat", base=base.name, set=tiny_recipe_args(), foreground=True)
    run = TrainingRun.objects.get()
    TrainingRun.objects.filter(pk=run.pk).update(status=JobStatus.FAILED, error="killed")
    call_command("train", dataset="chat", base=base.name, set=tiny_recipe_args(), foreground=True)
    assert TrainingRun.objects.count() == 1
    run.refresh_from_db()
    assert run.status == JobStatus.DONE and run.attempts == 2
    call_command("train", dataset="chat", base=base.name, set=tiny_recipe_args(), foreground=True, new=True)
    assert TrainingRun.objects.count() == 2

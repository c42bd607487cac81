"""The demo on a machine short of memory (issue 32, item 5): below 12 GiB it fine-tunes LoRA
adapters instead of every weight, in a training child whose allocator gives big tensors back to
the system when it frees them (docs/design.md, "The demo's memory")."""

from __future__ import annotations

import threading
from collections import namedtuple
from pathlib import Path

import psutil
import pytest
import torch
from transformers import AutoModelForCausalLM

from evalsite.finetune.models import TrainingRun
from evalsite.pipeline.stages import (
    SMALL_MEMORY_RECIPE,
    DemoConfig,
    StageFailed,
    demo_stages,
    run_stages,
)
from tests.test_training_runs import chat_file, tiny_base

Memory = namedtuple("Memory", "total available")


def a_machine_with(monkeypatch, gib: float) -> None:
    """psutil reads the machine's memory from /proc/meminfo: here it says ``gib`` in all."""
    size = int(gib * 2**30)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: Memory(size, size // 2))


@pytest.mark.parametrize("instructions", [False, True])
def test_the_demo_trains_under_bfloat16_autocast_only_on_a_cpu_with_bfloat16_instructions(monkeypatch, instructions):
    """oneDNN reports bfloat16 support on AVX-512 without AVX512-BF16 or AMX, where autocast trained
    at 0.38x float32's speed: the demo asks for the instructions (the CPU probe is replaced here)."""
    from generation import quantized

    for key in ("DEMO_MEMORY", "DEMO_RECIPE_SET"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(quantized, "native_bf16", lambda: True)  # what oneDNN says on both CPUs
    monkeypatch.setattr(quantized, "bf16_instructions", lambda: instructions)
    assert (DemoConfig.from_env().recipe_set.get("bf16") == "true") is instructions
    monkeypatch.setenv("DEMO_RECIPE_SET", "bf16=false")  # a person's setting wins
    assert DemoConfig.from_env().recipe_set["bf16"] == "false"


def test_below_12_gib_the_demo_fine_tunes_lora_adapters_unless_told_otherwise(monkeypatch):
    for key in ("DEMO_MEMORY", "DEMO_RECIPE_SET"):
        monkeypatch.delenv(key, raising=False)
    a_machine_with(monkeypatch, 7.6)  # what a laptop sold with 8 GB reports
    small = DemoConfig.from_env()
    assert small.small_memory
    for key, value in SMALL_MEMORY_RECIPE.items():
        assert small.recipe_set[key] == value
    assert small.recipe_set["gradient_checkpointing"] == "true"

    # the person's own settings win over the small machine's
    monkeypatch.setenv("DEMO_RECIPE_SET", "lr=5e-4 epochs=2")
    mine = DemoConfig.from_env()
    assert mine.recipe_set["lr"] == "5e-4" and mine.recipe_set["epochs"] == "2"
    assert mine.recipe_set["lora_r"] == SMALL_MEMORY_RECIPE["lora_r"]

    # DEMO_MEMORY=full keeps the paper's full fine-tuning on the same machine
    monkeypatch.delenv("DEMO_RECIPE_SET")
    monkeypatch.setenv("DEMO_MEMORY", "full")
    full = DemoConfig.from_env()
    assert not full.small_memory and "lora_r" not in full.recipe_set

    # and the choice travels with the demo's workflow to a worker
    assert DemoConfig.from_params(small.to_params()) == small

    monkeypatch.setenv("DEMO_MEMORY", "tiny")
    with pytest.raises(StageFailed, match="DEMO_MEMORY is auto, full or small, not 'tiny'"):
        DemoConfig.from_env()


def children_environments(stop: threading.Event, seen: list[dict[str, str]]) -> None:
    """Every child process of this one, as it runs, and its environment."""
    me = psutil.Process()
    while not stop.is_set():
        for child in me.children(recursive=True):
            try:
                seen.append({"name": child.name(), "cmdline": " ".join(child.cmdline()), **child.environ()})
            except psutil.Error:  # it ended between the listing and the reading
                pass
        stop.wait(0.05)


@pytest.mark.django_db(transaction=True)
def test_on_a_small_machine_the_demo_trains_lora_in_a_child_that_gives_big_tensors_back(
    tmp_path, settings, monkeypatch
):
    settings.TRAINING_RUNS_DIR = tmp_path / "runs"
    base = tiny_base(tmp_path)
    a_machine_with(monkeypatch, 6)
    for key, value in {
        "DEMO_BASE_SYSTEM": base.name,
        "DEMO_RECIPE_SET": "epochs=2 batch_size=4 micro_batch_size=2 max_length=64",
        "DEMO_TRAIN_FILE": chat_file(tmp_path),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DEMO_MEMORY", raising=False)
    monkeypatch.delenv("DEMO_USE_WORKERS", raising=False)
    config = DemoConfig.from_env()
    stages = demo_stages(config)
    upto = next(i for i, stage in enumerate(stages) if stage.name.startswith("fine-tune ")) + 1

    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=children_environments, args=(stop, seen))
    watcher.start()
    try:
        printed: list[str] = []
        run_stages(printed.append, stages=stages[:upto], estimate=False)
    finally:
        stop.set()
        watcher.join()

    run = TrainingRun.objects.get()
    assert run.status == "done" and run.recipe["lora_r"] == int(SMALL_MEMORY_RECIPE["lora_r"])
    assert run.recipe["lr"] == float(SMALL_MEMORY_RECIPE["lr"])
    # the training ran in a child (python -m training train) with glibc's mmap threshold at 1 MiB
    # (the launcher's `env` sets the variable and then becomes python: read as python)
    trainers = [env for env in seen if "-m training train" in env["cmdline"] and env["name"].startswith("python")]
    assert trainers, printed
    assert {env.get("MALLOC_MMAP_THRESHOLD_") for env in trainers} == {"1048576"}
    assert settings.TRAINING_LAUNCHER == ""  # the demo's own setting is put back
    # the checkpoint is a whole model (the adapters merged into it), with its linear layers moved
    last = run.checkpoints.order_by("-epoch").first()
    assert last.epoch == 2 and not list(Path(last.path).glob("adapter_*"))
    trained = AutoModelForCausalLM.from_pretrained(Path(last.path))
    untouched = AutoModelForCausalLM.from_pretrained(base.backend_config["model_path"])
    name = "model.layers.0.mlp.down_proj.weight"
    assert not torch.equal(trained.state_dict()[name], untouched.state_dict()[name])

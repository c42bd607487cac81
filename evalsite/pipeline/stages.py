"""`make demo`: the whole pipeline on the embedded default, one stage after another.

Each stage says whether it is already done, so a second run skips it; a failed stage says what
failed and how to resume. DEMO_* environment variables change what it builds (DemoConfig)."""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import DatabaseError, transaction
from django.urls import reverse
from django.utils.text import slugify

from evalsite.annotation import members, studies
from evalsite.annotation.blinding import blinding_warnings
from evalsite.annotation.models import Study
from evalsite.answering.services import start_generation
from evalsite.catalog.models import Prompt, PromptSet, Response, System
from evalsite.catalog.seed import SHIPPED_SETS
from evalsite.core import jobs, workflows
from evalsite.core.accounts import ensure_staff_user
from evalsite.core.health import pending_migrations
from evalsite.core.models import Workflow
from evalsite.core.progress import execute_with_progress, follow
from evalsite.core.workflows import Step
from evalsite.env import BASE_DIR
from evalsite.finetune.models import TrainingDataset, TrainingRun
from evalsite.finetune.services import register_checkpoint, start_training
from evalsite.judging.models import JudgeJob
from evalsite.judging.services import LOCAL_JUDGE, ensure_local_judge, find_config, start_judge_job
from evalsite.pipeline.serve import local_judge_listening, start_local_judge
from generation.bundled import BUNDLED_SYSTEM_NAME
from training.recipe import get_recipe


@dataclass
class DemoState:
    """What stages tell the final summary (credentials created on this run, URLs...)."""

    lines: list[str] = field(default_factory=list)
    carried: set[str] = field(default_factory=set)  # stages the workflow did on its way to another


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[DemoState], None]
    is_done: Callable[[], bool] = lambda: False
    kind: str = ""  # its key in STAGE_SECONDS


# The default demo's stages as measured on a quiet 2-core machine like CI's (a fresh folder,
# bench/demo.py, 2026-12-07, bench/results/demo.json), and what it leaves under var/: the estimate
# printed before the first stage, rescaled by this machine's probe and after each long stage by how
# this machine compares.
STAGE_SECONDS = {
    "migrate": 2.3,
    "seed": 0.4,
    "staff": 0.3,
    "curate": 3.9,
    "train": 182.4,  # under bfloat16 autocast where the CPU has it, with gradient checkpointing
    "train-small": 182.4 * 1.32,  # LoRA on a machine short of memory (SMALL_MEMORY_RECIPE): 253.5 s
    # against the default's 192.2 s, bench/demo.py --memory small and bench/demo.py on one machine
    "register": 0.0,
    "generate": 94.8,  # each of the two (the candidate 87.6 s in bfloat16, the base 101.9 s in int4
    # with its one-time conversion)
    "study": 0.1,
    "judge": 69.3,
    "annotators": 0.6,
}
DEMO_DISK_GB = 1.7
SLOWER = 1.3  # a machine this much slower than the one measured is told so, with its own estimate


def _done_yet(stage: Stage) -> bool:
    """For the estimate, before any stage runs: on a fresh machine the tables a stage's check reads
    do not exist until the first stage has migrated, so such a stage is still to do."""
    try:
        with transaction.atomic():  # a savepoint: a failed read leaves an outer transaction usable
            return stage.is_done()
    except DatabaseError:
        return False


# probe() on the machine STAGE_SECONDS were measured on, quiet (2026-12-07: 0.242 s; 0.259 s with
# one of its two cores busy elsewhere). One thread: with numpy's or torch's two threads, one busy
# core made the probe up to 5x slower while the demo (which takes the cores left:
# generation.hf_local.configure_threads) took 1.52x as long (bench/results/demo.json).
PROBE_SECONDS = 0.242
TWO_CORE_GAIN = 1.52  # the demo on two quiet cores against one: 691.4 s / 454.5 s


def probe() -> float:
    """Seconds one thread of this machine takes now for a fixed piece of the work the demo does
    most (100 products of 512 x 512 float32 matrices, the best of three)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.randn(512, 512, generator=torch.Generator().manual_seed(0))
        best = math.inf
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(100):
                a @ a  # noqa: B018 (the work itself is the point)
            best = min(best, time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    return best


def machine_factor() -> tuple[float, str]:
    """How much longer than STAGE_SECONDS this machine should take now: one thread's speed against
    the measured machine's, times what the cores left free lose against its two (kept within
    0.5-5), and a note on what other work is running."""
    from generation.hf_local import busy_elsewhere

    cores = len(os.sched_getaffinity(0))
    busy = busy_elsewhere()
    free = max(1, cores - round(busy))

    def gain(n: int) -> float:
        return 1 + (TWO_CORE_GAIN - 1) * (n - 1)

    factor = min(max(probe() / PROBE_SECONDS * gain(2) / gain(free), 0.5), 5.0)
    note = f"{busy:.1f} of its {cores} cores busy with other work" if busy >= 0.5 else f"{cores} cores"
    return factor, note


def _estimate(stages: list[Stage]) -> float:
    return sum(STAGE_SECONDS.get(stage.kind, 0.0) for stage in stages)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


class StageFailed(Exception):
    pass


def _migrate(state: DemoState) -> None:
    call_command("migrate", interactive=False, verbosity=0)


def _migrated() -> bool:
    return not pending_migrations()


def _seed(state: DemoState) -> None:
    call_command("seed")


def _seeded() -> bool:
    return PromptSet.objects.filter(name__in=[s.name for s in SHIPPED_SETS]).count() == len(SHIPPED_SETS)


def _staff(state: DemoState) -> None:
    user, password = ensure_staff_user("admin")
    if password:
        state.lines.append(f"staff login: {user.username} / {password}   (shown once)")


def _staff_exists() -> bool:
    return User.objects.filter(username="admin").exists()


@dataclass(frozen=True)
class DemoConfig:
    """What the demo builds, from DEMO_* environment variables (defaults: the bundled SmolLM2,
    lima-mini on the shipped training set, the shipped test prompts, the local judge)."""

    base: str
    recipe: str
    recipe_set: dict[str, str]
    train_file: Path
    test_set: str
    max_new_tokens: int
    openai_baselines: list[str]
    openai_base_url: str
    openai_key_env: str
    judge: str
    annotators: int
    use_workers: bool
    small_memory: bool = False  # LoRA adapters and a training child that gives memory back early

    @classmethod
    def from_env(cls) -> DemoConfig:
        get = os.environ.get
        recipe_set = _pairs("DEMO_RECIPE_SET", get("DEMO_RECIPE_SET", ""))
        small_memory = _small_memory(get("DEMO_MEMORY", "auto"))
        if small_memory:
            for key, value in SMALL_MEMORY_RECIPE.items():
                recipe_set.setdefault(key, value)
        if "bf16" not in recipe_set and _computes_in_bf16():
            # bench/training.py --precision: 1.45x float32's tokens/s, step losses within 0.16
            recipe_set["bf16"] = "true"
        if "gradient_checkpointing" not in recipe_set:
            # the same losses step for step, about 12% slower, and the activations of 30 layers not
            # kept: the demo's peak went from ~5.9 GB (bench/demo.py, bench/results/demo.json)
            recipe_set["gradient_checkpointing"] = "true"
        return cls(
            base=get("DEMO_BASE_SYSTEM", BUNDLED_SYSTEM_NAME),
            recipe=get("DEMO_RECIPE", "lima-mini"),
            recipe_set=recipe_set,
            train_file=Path(get("DEMO_TRAIN_FILE", str(BASE_DIR / "data" / "train.jsonl"))),
            test_set=get("DEMO_TEST_SET", "lima-style-test"),
            max_new_tokens=int(get("DEMO_MAX_NEW_TOKENS", "256")),
            openai_baselines=[m.strip() for m in get("DEMO_OPENAI_BASELINES", "").split(",") if m.strip()],
            openai_base_url=get("DEMO_OPENAI_BASE_URL", "https://api.openai.com/v1"),
            openai_key_env=get("DEMO_OPENAI_API_KEY_ENV", "OPENAI_API_KEY"),
            judge=get("DEMO_JUDGE", "local-judge"),
            annotators=int(get("DEMO_ANNOTATORS", "3")),
            use_workers=get("DEMO_USE_WORKERS", "").lower() in ("1", "true", "yes"),
            small_memory=small_memory,
        )

    def to_params(self) -> dict:
        """As a workflow keeps it (a worker that carries the demo has none of its DEMO_* settings)."""
        return {**{f: getattr(self, f) for f in self.__dataclass_fields__}, "train_file": str(self.train_file)}

    @classmethod
    def from_params(cls, params: dict) -> DemoConfig:
        return cls(**{**params, "train_file": Path(params["train_file"])})

    @property
    def dataset(self) -> str:
        return "demo-train"

    @property
    def candidate(self) -> str:
        return f"{self.base}-{self.recipe}"[:100]

    @property
    def study(self) -> str:
        return "demo"

    def baselines(self) -> list[str]:
        return [self.base] + [openai_system_name(m) for m in self.openai_baselines]


# Full fine-tuning keeps 16 bytes a parameter live (float32 weights, gradients, AdamW's two
# moments: 2.2 GB for the bundled 135M model) and the demo peaked at 4.2-4.8 GiB with it
# (bench/results/demo.json): too much beside a desktop on a laptop of 8 GB. Below this much memory
# (the machine's, or its container's limit: a figure that does not change between two runs, so a
# second run finds the first one's training done) the demo trains LoRA adapters instead (the base's
# weights frozen: no gradients or moments for them), at a learning rate for adapters, and runs the
# training child with glibc's mmap threshold fixed at 1 MiB: every tensor of a MiB or more is
# given back to the system when freed instead of staying in the heap (LoRA's first four steps
# peaked at 2.7 GB without it, 1.6 GB with it, and took 25% longer). The demo then peaked at 2.2 GiB
# in all, training 1.32x as long. docs/design.md, "The demo's memory".
SMALL_MEMORY_BELOW_GIB = 12
SMALL_MEMORY_RECIPE = {"lora_r": "16", "lora_alpha": "32", "lora_dropout": "0.0", "lr": "1e-3", "final_lr": "1e-4"}
SMALL_MEMORY_MALLOC = "MALLOC_MMAP_THRESHOLD_=1048576"


def _small_memory(choice: str) -> bool:
    if choice not in ("auto", "full", "small"):
        raise StageFailed(f"DEMO_MEMORY is auto, full or small, not {choice!r}")
    if choice != "auto":
        return choice == "small"
    return machine_memory_gib() < SMALL_MEMORY_BELOW_GIB


def machine_memory_gib() -> float:
    """The memory this machine gives the demo: its total, or its control group's limit when lower."""
    import psutil

    total = psutil.virtual_memory().total
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        limit = "max"
    if limit.isdigit():
        total = min(total, int(limit))
    return total / 2**30


def _computes_in_bf16() -> bool:
    """Whether this machine trains the demo under bfloat16 autocast: a CPU with bfloat16
    instructions (AVX512-BF16 or AMX). oneDNN also reports bfloat16 support on AVX-512 without them,
    where autocast trained at 0.38x float32's tokens/s (an Intel Xeon, bench/training.py --precision;
    bench/results/training-precision-cpu-avx512.json)."""
    from generation.quantized import bf16_instructions  # torch: only when the demo is configured

    return bf16_instructions()


def _pairs(name: str, text: str) -> dict[str, str]:
    pairs = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StageFailed(f"{name} takes FIELD=VALUE pairs separated by spaces, not {item!r}")
        pairs[key] = value
    return pairs


def openai_system_name(model: str) -> str:
    return slugify(f"openai-{model}")[:100]


def _run_job(job, config: DemoConfig) -> None:
    """Run a job with a progress bar: here (a thread) on the embedded default, or on the workers
    (DEMO_USE_WORKERS=1, e.g. one worker per queue on PostgreSQL + Redis)."""

    job.refresh_from_db()
    if not job.is_active:
        return
    if config.use_workers:
        if job.enqueued_at is None:
            job.enqueue()
        finished = follow(job, poll=1.0)
    else:
        with _training_apart(job, config):
            finished = execute_with_progress(job, worker=batch_worker_name())
    if finished.status != jobs.JobStatus.DONE:
        raise RuntimeError(f"{finished} ended {finished.status}: {finished.error or finished.status_detail}")


@contextlib.contextmanager
def _training_apart(job, config: DemoConfig):
    """The demo runs its jobs in its own process, and a process that trained keeps the memory it
    took (3.5 GB for the bundled model: the allocator holds on to what training freed) through
    every stage after. Where no launcher is set, a training run goes through the launcher path with
    this Python (``python -m training train``, a child process) and gives it all back when it exits;
    on a machine short of memory the child frees its big tensors as it goes (SMALL_MEMORY_MALLOC)."""
    if not isinstance(job, TrainingRun) or settings.TRAINING_LAUNCHER:
        yield
        return
    malloc = f"env {SMALL_MEMORY_MALLOC} " if config.small_memory else ""
    settings.TRAINING_LAUNCHER = malloc + shlex.quote(sys.executable)
    try:
        yield
    finally:
        settings.TRAINING_LAUNCHER = ""


def batch_worker_name() -> str:
    return f"demo-batch@{socket.gethostname()}"


def _curate(config: DemoConfig) -> None:
    call_command("curate", name=config.dataset, jsonl=[str(config.train_file)], tokenizer=config.base)


def _curated(config: DemoConfig) -> bool:
    return TrainingDataset.objects.filter(name=config.dataset).exists()


def _recipe(config: DemoConfig):
    return get_recipe(config.recipe).with_overrides(config.recipe_set)


def _train(config: DemoConfig, enqueue: bool) -> jobs.Job:
    run, _ = start_training(
        TrainingDataset.objects.get(name=config.dataset),
        System.objects.get(name=config.base),
        _recipe(config),
        enqueue=enqueue,
    )
    return run


def _trained(config: DemoConfig) -> bool:
    return TrainingRun.objects.filter(
        dataset__name=config.dataset, base__name=config.base, recipe=_recipe(config).to_dict(), status="done"
    ).exists()


def _last_run(config: DemoConfig) -> TrainingRun:
    return TrainingRun.objects.filter(
        dataset__name=config.dataset, base__name=config.base, recipe=_recipe(config).to_dict(), status="done"
    ).latest("pk")


def _register(config: DemoConfig) -> None:
    run = _last_run(config)
    last = run.checkpoints.order_by("-epoch").first()
    if last is None:
        raise RuntimeError(f"training run {run.pk} saved no checkpoint")
    register_checkpoint(run, last.epoch, config.candidate)
    # the demo keeps answers short so the whole pipeline fits a laptop's half hour
    for name in (config.candidate, config.base):
        limited = System.objects.get(name=name)
        if "max_new_tokens" not in limited.sampling:
            limited.sampling = {**limited.sampling, "max_new_tokens": config.max_new_tokens}
            limited.save(update_fields=["sampling"])


def _registered_lines(config: DemoConfig, state: DemoState) -> None:
    run = _last_run(config)
    last = run.checkpoints.order_by("-epoch").first()
    state.lines.append(f"candidate: {config.candidate} (epoch {last.epoch if last else '?'} of run {run.pk})")


def _registered(config: DemoConfig) -> bool:
    return System.objects.filter(name=config.candidate, kind="candidate").exists()


def _openai_baselines(config: DemoConfig) -> None:
    for model in config.openai_baselines:
        System.objects.get_or_create(
            name=openai_system_name(model),
            defaults={
                "backend": "openai_compat",
                "backend_config": {
                    "base_url": config.openai_base_url,
                    "model": model,
                    "api_key_env": config.openai_key_env,
                },
                "sampling": {"max_new_tokens": config.max_new_tokens},
                "description": f"{model} at {config.openai_base_url} (from DEMO_OPENAI_BASELINES)",
            },
        )


def _openai_registered(config: DemoConfig) -> bool:
    names = [openai_system_name(m) for m in config.openai_baselines]
    return System.objects.filter(name__in=names).count() == len(names)


def _generate(config: DemoConfig, system_name: str) -> Callable[[bool], jobs.Job]:
    def start(enqueue: bool) -> jobs.Job:
        job, _ = start_generation(
            System.objects.get(name=system_name), PromptSet.objects.get(name=config.test_set), enqueue=enqueue
        )
        return job

    return start


def _generated(config: DemoConfig, system_name: str) -> Callable[[], bool]:
    def done() -> bool:
        prompts = Prompt.objects.filter(prompt_set__name=config.test_set).count()
        answered = Response.objects.filter(
            system__name=system_name, prompt__prompt_set__name=config.test_set, sample_index=0, error=""
        ).count()
        return prompts > 0 and answered >= prompts

    return done


def _study(config: DemoConfig) -> None:
    with transaction.atomic():
        study = Study.objects.filter(name=config.study).first() or studies.create_study(
            config.study,
            System.objects.get(name=config.candidate),
            [System.objects.get(name=n) for n in config.baselines()],
            PromptSet.objects.get(name=config.test_set),
            overlap=2,
            gold_rate=0.05,
        )
        if study.status == Study.Status.DRAFT:
            studies.start_study(study)


def _study_lines(config: DemoConfig, state: DemoState) -> None:
    study = Study.objects.get(name=config.study)
    state.lines.append(f"study: {config.study}, {study.comparisons.count()} comparisons, 2 annotators each")
    state.lines.extend(f"blinding: {warning}" for warning in blinding_warnings(study))


def _study_open(config: DemoConfig) -> bool:
    return Study.objects.filter(name=config.study, status=Study.Status.OPEN).exists()


def _judge_config(config: DemoConfig):
    return ensure_local_judge() if config.judge == LOCAL_JUDGE else find_config(config.judge)


def _judge(config: DemoConfig, enqueue: bool) -> jobs.Job | None:
    """The judge job; none yet while the local judge's server (which the demo's own process
    starts when the chain reaches this step) does not listen."""
    judge = _judge_config(config)
    if judge.is_local and not local_judge_listening():
        return None
    job, _ = start_judge_job(Study.objects.get(name=config.study), judge, enqueue=enqueue)
    return job


def _judge_lines(config: DemoConfig, state: DemoState) -> None:
    state.lines.append(f"judge: {_judge_config(config).label}, both orders of every comparison")


def _judged(config: DemoConfig) -> bool:
    return JudgeJob.objects.filter(study__name=config.study, config__name=config.judge, status="done").exists()


# --- the chain of jobs, as a workflow (core/workflows.py) ------------------------------------------
#
# From the curation to the judge, the demo is one workflow: each link is quick work done where the
# workflow advances (curate, register, open the study) or a job started or joined there (train,
# generate, judge). On the embedded default the demo's own process advances it and runs each job
# here (no worker); with DEMO_USE_WORKERS=1 the workers carry it from one job's end to the next,
# and the demo's stages only follow. /workflows/ shows where it stands either way.

DEMO_WORKFLOW = "demo"
DEMO_SUBJECT = 1  # one demo per site


@dataclass(frozen=True)
class Link:
    name: str
    kind: str  # its key in STAGE_SECONDS
    is_done: Callable[[], bool]
    work: Callable[[], None] | None = None  # quick work, done where the workflow advances
    start: Callable[[bool], jobs.Job | None] | None = None  # (enqueue) -> its job; None: not yet
    waiting_for: str = ""  # why start gave none
    report: Callable[[DemoState], None] = lambda state: None  # lines for the demo's summary


def chain(config: DemoConfig) -> list[Link]:
    links = [
        Link(
            f"curate {config.train_file.name} into dataset {config.dataset}",
            "curate",
            lambda: _curated(config),
            work=lambda: _curate(config),
        ),
        Link(
            f"fine-tune {config.base} with {config.recipe}" + (" (LoRA: small memory)" if config.small_memory else ""),
            "train-small" if config.small_memory else "train",
            lambda: _trained(config),
            start=lambda enqueue: _train(config, enqueue),
        ),
        Link(
            f"register the last checkpoint as candidate {config.candidate}",
            "register",
            lambda: _registered(config),
            work=lambda: _register(config),
            report=lambda state: _registered_lines(config, state),
        ),
    ]
    if config.openai_baselines:
        links.append(
            Link(
                "register the OpenAI-compatible baselines",
                "",
                lambda: _openai_registered(config),
                work=lambda: _openai_baselines(config),
            )
        )
    for name in [config.candidate, *config.baselines()]:
        links.append(
            Link(
                f"generate {config.test_set} with {name}",
                "generate",
                _generated(config, name),
                start=_generate(config, name),
            )
        )
    links += [
        Link(
            f"open study {config.study}",
            "study",
            lambda: _study_open(config),
            work=lambda: _study(config),
            report=lambda state: _study_lines(config, state),
        ),
        Link(
            f"judge study {config.study} with {config.judge}",
            "judge",
            lambda: _judged(config),
            start=lambda enqueue: _judge(config, enqueue),
            waiting_for="the local judge's server, which the demo starts",
            report=lambda state: _judge_lines(config, state),
        ),
    ]
    return links


class DemoPipeline:
    """The demo's chain as a workflow kind: the first link not done is done now (quick work) or
    has its job started or joined; the links after it wait."""

    name = DEMO_WORKFLOW
    swept = True

    def title(self, subject_id: int) -> str:
        return "the demo: curate, fine-tune, answer, open the study, judge"

    def link(self, subject_id: int) -> str:
        return reverse("dashboard:index")

    def advance(self, workflow: Workflow, enqueue: bool, retry: bool) -> list[Step]:
        config = DemoConfig.from_params(workflow.params)
        before = {step.name: step for step in workflows.steps_of(workflow)}
        steps: list[Step] = []
        for link in chain(config):
            if steps and steps[-1].state != "done":
                steps.append(Step(link.name, "waiting"))
            elif link.is_done():  # the job that did it, as the last advance recorded it
                steps.append(Step(link.name, "done", before[link.name].job if link.name in before else ""))
            elif link.work is not None:
                link.work()
                steps.append(Step(link.name, "done"))
            else:
                steps.append(self._job_step(link, before.get(link.name), enqueue, retry))
        return steps

    @staticmethod
    def _job_step(link: Link, before: Step | None, enqueue: bool, retry: bool) -> Step:
        if before is not None and before.job and not retry:
            ended = jobs.find_job(*before.job_ref())
            if ended is not None and ended.status == jobs.JobStatus.DONE:
                # its job finished without doing the link's work (answers with errors): say so
                # rather than start it again and again; running the demo again retries
                return Step(link.name, "failed", before.job, f"{ended} finished, but the step is not done")
        assert link.start is not None
        job = link.start(enqueue)
        return Step.of_job(link.name, job, detail="" if job else f"waiting for {link.waiting_for}")


workflows.register(DemoPipeline())


def _through_workflow(config: DemoConfig, link: Link) -> Callable[[DemoState], None]:
    """A link as a stage of `make demo`: the workflow advanced until this link is done, its job
    run here (the embedded default) or followed on the workers (DEMO_USE_WORKERS=1)."""

    def run(state: DemoState) -> None:
        server = None
        links = {each.name: each for each in chain(config)}
        earlier = Workflow.objects.filter(kind=DEMO_WORKFLOW, subject_id=DEMO_SUBJECT).first()
        done_before = {s.name for s in workflows.steps_of(earlier) if s.state == "done"} if earlier else set()
        try:
            # this run's settings, before anything advances it
            Workflow.objects.filter(kind=DEMO_WORKFLOW, subject_id=DEMO_SUBJECT).update(params=config.to_params())
            flow = workflows.start(
                DEMO_WORKFLOW, DEMO_SUBJECT, by_workers=config.use_workers, retry=True, params=config.to_params()
            )
            while True:
                step = next(s for s in workflows.steps_of(flow) if s.name == link.name)
                if step.state == "done":
                    break
                if flow.status == Workflow.Status.FAILED:
                    raise RuntimeError(flow.error)
                if step.job:
                    job = jobs.find_job(*step.job_ref())
                    if job is not None:
                        _run_job(job, config)
                elif link.kind == "judge" and _judge_config(config).is_local and server is None:
                    server = start_local_judge()  # the link waits for it
                elif server is not None and server.poll() is not None:
                    raise RuntimeError("the local judge's server exited; see var/logs/local-judge.log")
                else:
                    time.sleep(1.0)  # an earlier link still running elsewhere
                flow = workflows.advance(flow.pk)
        finally:
            if server is not None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(30)
        # this link, and the quick ones the workflow did after it on the way (told as done, not skipped)
        for step in workflows.steps_of(flow):
            if step.state == "done" and step.name not in done_before and step.name in links:
                links[step.name].report(state)
                if step.name != link.name:
                    state.carried.add(step.name)

    return run


def _annotators(config: DemoConfig, state: DemoState) -> None:
    study = Study.objects.get(name=config.study)
    base = settings.SITE_URL.rstrip("/")
    for username in [f"demo-annotator-{i}" for i in range(1, config.annotators + 1)]:
        user, password, token = members.add_annotator(study, username)
        link = base + reverse("annotation:token_login", args=[token])
        state.lines.append(f"annotator: {user.username} / {password or '(set at the first run)'}   one-time: {link}")


def fresh_logins(config: DemoConfig | None = None) -> list[str]:
    """For a demo whose accounts exist (a second run: the first run's one-time links are spent and
    its passwords are stored nowhere in clear): a fresh one-time link for each demo annotator and
    for the staff account."""
    config = config or DemoConfig.from_env()
    base = settings.SITE_URL.rstrip("/")
    lines = []
    study = Study.objects.filter(name=config.study).first()
    if study is not None:
        for user in study.annotators.filter(username__startswith="demo-annotator-").order_by("username"):
            link = base + reverse("annotation:token_login", args=[members.login_token_for(user)])
            lines.append(f"annotator: {user.username} (password as shown at the first run)   one-time: {link}")
    staff = User.objects.filter(username="admin", is_superuser=True).first()
    if staff is not None:
        link = base + reverse("annotation:token_login", args=[members.login_token_for(staff)])
        lines.append(f"staff login: admin (password as shown at the first run)   one-time: {link}")
    return lines


def _annotators_exist(config: DemoConfig) -> bool:
    study = Study.objects.filter(name=config.study).first()
    if study is None:
        return False
    return study.annotators.filter(username__startswith="demo-annotator-").count() >= config.annotators


def demo_stages(config: DemoConfig | None = None) -> list[Stage]:
    config = config or DemoConfig.from_env()
    stages = [
        Stage("migrate the database", _migrate, _migrated, "migrate"),
        Stage("load the shipped prompt sets and register the bundled model", _seed, _seeded, "seed"),
        Stage("create the staff user", _staff, _staff_exists, "staff"),
    ]
    stages += [Stage(link.name, _through_workflow(config, link), link.is_done, link.kind) for link in chain(config)]
    stages.append(
        Stage(
            "create demo annotator accounts",
            lambda s: _annotators(config, s),
            lambda: _annotators_exist(config),
            "annotators",
        )
    )
    return stages


def run_stages(
    write: Callable[[str], None], stages: list[Stage] | None = None, estimate: bool | None = None
) -> DemoState:
    """Run the stages not yet done. ``estimate`` (default: the default demo, no DEMO_* setting):
    say up front about how long the rest takes and how much disk it leaves, and after each stage
    how long is left, the measured times rescaled by how this machine compares so far."""
    state = DemoState()
    if stages is None:
        config = DemoConfig.from_env()
        stages = demo_stages(config)
        if config.small_memory:
            told = os.environ.get("DEMO_MEMORY") == "small"
            why = "DEMO_MEMORY=small" if told else f"{machine_memory_gib():.1f} GiB of memory here"
            write(
                f"{why}: the demo fine-tunes LoRA adapters instead of every weight (full fine-tuning peaked at "
                "about 4.8 GiB); DEMO_MEMORY=full to train every weight"
            )
    if estimate is None:
        estimate = not any(key.startswith("DEMO_") and key not in ("DEMO_PORT", "DEMO_MEMORY") for key in os.environ)
    if _migrated():
        # a demo stopped mid-stage (Ctrl-C, a kill) left its job "running": this run takes it back
        for model, pk in jobs.release_orphans_of(batch_worker_name()):
            write(f"resuming {model._meta.verbose_name} {pk}, left running by an earlier demo")
    pending = [stage for stage in stages if not _done_yet(stage)] if estimate else []
    factor = 1.0  # this machine against the one measured, until a long stage measures it directly
    if pending and _estimate(pending) >= 60:
        write(
            f"about {_minutes(_estimate(pending))} to go on 2 quiet CPU cores (measured), and up to "
            f"{DEMO_DISK_GB:.1f} GB under var/ when it is done"
        )
        factor, note = machine_factor()
        if factor >= SLOWER:
            shown = round(factor, 1)  # the estimate from the factor said, so the two agree
            write(
                f"this machine is {shown:.1f}x slower than those right now ({note}): "
                f"expect about {_minutes(_estimate(pending) * shown)}"
            )
    measured = reference = 0.0  # the stages run so far: seconds taken, seconds expected
    for i, stage in enumerate(stages, start=1):
        prefix = f"[{i}/{len(stages)}] {stage.name}"
        try:
            if stage.is_done():
                carried = stage.name in state.carried
                write(f"{prefix}: {'done on the way by the step before' if carried else 'already done, skipped'}")
                continue
            started = time.monotonic()
            write(f"{prefix} ...")
            stage.run(state)
        except Exception as exc:
            raise StageFailed(
                f"{prefix} failed: {type(exc).__name__}: {exc}\n"
                "Fix the cause and run `make demo` again: the stages already done are skipped."
            ) from exc
        took = time.monotonic() - started
        left = ""
        if estimate and stage in pending:
            pending.remove(stage)
            measured, reference = measured + took, reference + STAGE_SECONDS.get(stage.kind, 0.0)
            rest = _estimate(pending) * (measured / reference if reference >= 30 else factor)
            left = f"; about {_minutes(rest)} left" if pending and rest >= 30 else ""
        write(f"{prefix}: done in {took:.1f} s{left}")
    return state

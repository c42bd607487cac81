"""Curating datasets, starting runs, and the paper's checkpoint selection."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from evalsite.annotation import studies
from evalsite.annotation.models import Study
from evalsite.answering.models import GenerationJob
from evalsite.answering.services import start_generation
from evalsite.catalog.models import PromptSet, System
from evalsite.core.jobs import CannotStart, JobStatus
from evalsite.core.lookup import by_name
from evalsite.finetune.models import Checkpoint, TrainingDataset, TrainingExample, TrainingRun
from generation.backends import preflight
from generation.config import ConfigError
from training.curation.curate import PAPER_TABLE_1, PAPER_TABLE_1_COMBINED, CurationResult
from training.recipe import Recipe, RecipeError, get_recipe

RESUMABLE = (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.STOPPED)


class TrainingError(CannotStart):
    """A request that cannot be done; the message says why and what to do."""


def find_dataset(name: str) -> TrainingDataset:
    return by_name(TrainingDataset, name, TrainingError, "make one with manage.py curate")


def find_run(pk: int | str) -> TrainingRun:
    try:
        return TrainingRun.objects.select_related("dataset", "base").get(pk=int(pk))
    except (TrainingRun.DoesNotExist, ValueError):
        ids = ", ".join(str(i) for i in TrainingRun.objects.order_by("pk").values_list("pk", flat=True)) or "none yet"
        raise TrainingError(f"no training run {pk!r} (runs: {ids})") from None


# -- curation -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _tokenizer(model_path: str, gguf_file: str | None):
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    return AutoTokenizer.from_pretrained(model_path, **kwargs)


def token_counter(system: System | None) -> tuple[Callable[[str], int], str]:
    """Count tokens with the system's tokenizer (Table 1 counts LLaMa tokens; we count the base's),
    or, without one, estimate 4 characters per token."""
    if system is not None and system.backend == "hf_local":
        config = system.backend_config
        tokenizer = _tokenizer(config["model_path"], config.get("gguf_file"))
        return (lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])), system.name
    return (lambda text: max(1, round(len(text) / 4))), "estimate: 4 characters per token"


def save_curation(
    name: str,
    result: CurationResult,
    *,
    description: str = "",
    inputs: list[str],
    settings_used: dict,
    tokenizer: System | None = None,
    replace: bool = False,
) -> TrainingDataset:
    """Store a curation as a dataset in one transaction (all or nothing), with its manifest."""
    if not result.kept:
        raise TrainingError("no example passed the filters; nothing to save")
    seen: dict[str, str] = {}
    for candidate in result.kept:
        if candidate.external_id in seen:
            raise TrainingError(
                f"{candidate.where}: example id {candidate.external_id!r} was already used at "
                f"{seen[candidate.external_id]}"
            )
        seen[candidate.external_id] = candidate.where
    count, counted_with = token_counter(tokenizer)
    with transaction.atomic():
        existing = TrainingDataset.objects.filter(name=name).first()
        if existing:
            if not replace:
                raise TrainingError(f"a dataset named {name!r} exists (use --replace to rebuild it)")
            if existing.runs.exists():
                raise TrainingError(f"dataset {name!r} was trained on; curate under a new name")
            existing.delete()
        dataset = TrainingDataset.objects.create(name=name, description=description)
        rows = []
        for candidate in result.kept:
            messages = candidate.messages or []  # a kept example has its messages (the filters set them)
            inputs_tokens = sum(int(count(m["content"])) for m in messages[:-1])
            rows.append(
                TrainingExample(
                    dataset=dataset,
                    external_id=candidate.external_id,
                    source=candidate.source,
                    group=candidate.group,
                    messages=candidate.messages,
                    meta={**candidate.meta, "where": candidate.where, "score": candidate.score},
                    input_tokens=inputs_tokens,
                    output_tokens=count(messages[-1]["content"]),
                )
            )
        for candidate, reason in result.rejected:
            rows.append(
                TrainingExample(
                    dataset=dataset,
                    external_id=f"rejected/{candidate.external_id}",
                    source=candidate.source,
                    group=candidate.group,
                    messages=candidate.messages
                    or [
                        {"role": "user", "content": candidate.title},
                        {"role": "assistant", "content": candidate.answer},
                    ],
                    status=TrainingExample.Status.REJECTED,
                    reason=reason[:300],
                    meta={**candidate.meta, "where": candidate.where, "score": candidate.score},
                )
            )
        TrainingExample.objects.bulk_create(rows)
        dataset.manifest = {
            "inputs": inputs,
            "settings": settings_used,
            "tokens_counted_with": counted_with,
            "read": dict(result.read),
            "passed_filters": dict(result.passed),
            "rejected_by_reason": {source: dict(reasons) for source, reasons in result.reasons.items()},
            "trimmed": dict(result.trimmed),
            "input_counts": {label: dict(counts) for label, counts in result.inputs.items() if counts},
        }
        dataset.save(update_fields=["manifest"])
    return dataset


def table_1(dataset: TrainingDataset) -> list[dict]:
    """Our counts and token statistics per source (trainable examples), beside the paper's."""
    examples = list(dataset.trainable().values("source", "input_tokens", "output_tokens"))
    rows = []
    for source in sorted({e["source"] for e in examples} | set(PAPER_TABLE_1)):
        mine = [e for e in examples if e["source"] == source]
        paper = PAPER_TABLE_1.get(source) or PAPER_TABLE_1_COMBINED.get(source)
        rows.append(
            {
                "source": source,
                "examples": len(mine),
                "avg_input_tokens": round(sum(e["input_tokens"] for e in mine) / len(mine), 1) if mine else None,
                "avg_output_tokens": round(sum(e["output_tokens"] for e in mine) / len(mine), 1) if mine else None,
                "read": dataset.manifest.get("read", {}).get(source),
                "passed": dataset.manifest.get("passed_filters", {}).get(source),
                "paper_examples": paper[0] if paper else None,
                "paper_input": paper[1] if paper else None,
                "paper_output": paper[2] if paper else None,
            }
        )
    return rows


def review(example: TrainingExample, user, action: str, prompt: str = "", answer: str = "", note: str = "") -> None:
    """accept / reject / edit one example; an edit keeps the curated original."""
    if action not in ("accept", "reject", "edit"):
        raise TrainingError(f"unknown review action {action!r}")
    with transaction.atomic():
        example = TrainingExample.objects.select_for_update().get(pk=example.pk)
        if example.dataset.runs.exists() and action == "edit":
            raise TrainingError("this dataset was trained on; its examples can no longer be edited")
        if action == "edit":
            if not prompt.strip() or not answer.strip():
                raise TrainingError("the prompt and the answer must not be empty")
            if example.original_messages is None:
                example.original_messages = example.messages
            messages = [dict(m) for m in example.messages]
            messages[0]["content"] = prompt.strip()
            messages[-1]["content"] = answer.strip()
            example.messages = messages
            example.status = TrainingExample.Status.ACCEPTED
        else:
            example.status = TrainingExample.Status.ACCEPTED if action == "accept" else TrainingExample.Status.REJECTED
            if action == "reject":
                example.reason = (note or "rejected by a reviewer")[:300]
        example.note = note or example.note
        example.reviewed_by = user
        example.reviewed_at = timezone.now()
        example.save()


# -- runs -----------------------------------------------------------------------------------------


def recipe_from(name: str, pairs: list[str]) -> Recipe:
    """A named recipe with ``--set FIELD=VALUE`` overrides, or a TrainingError saying what is wrong."""
    try:
        overrides = dict(item.split("=", 1) for item in pairs)
    except ValueError:
        raise TrainingError("--set takes FIELD=VALUE pairs, e.g. --set epochs=3 lr=2e-5") from None
    try:
        return get_recipe(name).with_overrides(overrides)
    except RecipeError as exc:
        raise TrainingError(str(exc)) from exc


def start_training(
    dataset: TrainingDataset, base: System, recipe: Recipe, enqueue: bool = True, new: bool = False
) -> tuple[TrainingRun, bool]:
    """Create (or return the active) run of this recipe on this dataset and base. A run of the same
    that failed or was cancelled is resumed from its last checkpoint instead (unless ``new``)."""
    if base.backend != "hf_local":
        raise TrainingError(f"system {base.name} is {base.backend}; training needs an hf_local system (local weights)")
    try:
        preflight(base.backend, base.backend_config)
    except ConfigError as exc:
        raise TrainingError(f"base {base.name}: {exc}") from exc
    recipe.validate()
    if not dataset.trainable().exists():
        raise TrainingError(f"dataset {dataset.name} has no example that is not rejected")
    run: TrainingRun
    with transaction.atomic():  # the run's folder is named before its message leaves
        run, started = TrainingRun.objects.start_or_join(
            dataset=dataset, base=base, recipe=recipe.to_dict(), resume=() if new else RESUMABLE, enqueue=enqueue
        )
        if not run.output_dir:
            run.output_dir = str(Path(settings.TRAINING_RUNS_DIR) / f"run-{run.pk:04d}")
            run.save(update_fields=["output_dir"])
    return run, started


def parse_epochs(text: str) -> list[int]:
    """'5-10' -> [5..10]; '3' -> [3]; '1,3,5' -> [1, 3, 5]."""
    epochs: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            epochs.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise TrainingError(f"--epochs must look like 5-10, 3 or 1,3,5, not {text!r}") from None
    return sorted(epochs)


def checkpoints_in(run: TrainingRun, epochs: list[int]) -> list[Checkpoint]:
    found = list(run.checkpoints.filter(epoch__in=epochs).order_by("epoch"))
    if not found:
        have = ", ".join(str(e) for e in run.checkpoints.values_list("epoch", flat=True)) or "none yet"
        raise TrainingError(f"run {run.pk} has no checkpoint for epochs {epochs} (it has: {have})")
    return found


def select_checkpoints(
    run: TrainingRun, epochs: list[int], prompt_set: PromptSet, enqueue: bool = True
) -> tuple[list[System], list[GenerationJob], Study]:
    """The paper's selection, with a guarantee: each checkpoint in the range becomes a system,
    answers the dev set, and one ranking study ranks them (every pair on every prompt; opened when
    the answers are in; it stops once its rank-sets name the best epoch)."""
    checkpoints = checkpoints_in(run, epochs)
    if len(checkpoints) < 2:
        raise TrainingError(f"selection compares checkpoints: epochs {epochs} hold only one")
    systems = [c.register() for c in checkpoints]
    jobs = []
    for system in systems:
        try:
            jobs.append(start_generation(system, prompt_set, enqueue=enqueue)[0])
        except CannotStart as exc:
            raise TrainingError(str(exc)) from exc
    name = f"select-run{run.pk}-epochs-{checkpoints[0].epoch}-{checkpoints[-1].epoch}-on-{prompt_set.name}"[:100]
    study = Study.objects.filter(name=name).first() or studies.create_ranking_study(
        name, systems, prompt_set, goal=Study.RankingGoal.TOP, overlap=1, gold_rate=0.0, at_least=2
    )
    return systems, jobs, study


def register_checkpoint(run: TrainingRun, epoch: int, name: str | None = None) -> System:
    """Make the chosen checkpoint a candidate system (the model to evaluate against baselines)."""
    checkpoint = checkpoints_in(run, [epoch])[0]
    if name and System.objects.filter(name=name).exclude(checkpoint=checkpoint).exists():
        raise TrainingError(f"a system named {name!r} exists")
    return checkpoint.register(name, kind=System.Kind.CANDIDATE)

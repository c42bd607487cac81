"""The paper's ablations (Figures 5 and 6) as one resumable plan: subsets of a dataset by source
or by size, a training run per subset, its last checkpoint answering the prompts, a judge rating
the answers; each step starts when the one before it is done. ``advance`` takes every cell one
step further and is safe to call any number of times (every step is a start-or-join), so a killed
``manage.py ablate`` goes on cell by cell where it stopped; the runs go through the training
queue, so several workers (GPUs, hosts) train cells at once."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Count
from django.utils.text import slugify

from evalsite.answering.services import start_generation
from evalsite.catalog.models import PromptSet, System
from evalsite.core.charts import curve_chart
from evalsite.core.figures import Chart, Figure, register
from evalsite.core.jobs import Job, JobStatus
from evalsite.finetune.models import Ablation, AblationCell, TrainingDataset, TrainingExample
from evalsite.finetune.services import TrainingError, start_training
from evalsite.judging.models import JudgeConfig
from evalsite.judging.rating_kinds import CURVED, rating_kind
from evalsite.judging.results import rating_job_summary
from evalsite.judging.services import start_rating_job
from training.recipe import Recipe

FAILED = (JobStatus.FAILED, JobStatus.CANCELLED)


def parse_sizes(text: str) -> list[int]:
    """'250,500,1000' -> [250, 500, 1000]: positive, growing."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise TrainingError(f"--sizes must be whole numbers and commas, like 250,500,1000, not {text!r}") from None
    if not sizes or any(size < 1 for size in sizes):
        raise TrainingError(f"--sizes must be positive, not {text!r}")
    if sizes != sorted(set(sizes)):
        raise TrainingError(f"--sizes must grow and not repeat, not {text!r}")
    return sizes


def plan_cells(dataset: TrainingDataset, by: str, sizes: list[int]) -> list[tuple[str, int]]:
    """(label, size) per cell. By size: one cell per size (no more than the dataset holds). By
    source: one cell per source, each of the one size given (every source must hold that many)."""
    counts = dict(dataset.trainable().order_by().values_list("source").annotate(n=Count("id")))
    total = sum(counts.values())
    if by == Ablation.By.SIZE:
        if len(sizes) < 2:
            raise TrainingError("--by size needs two sizes or more (a curve)")
        if sizes[-1] > total:
            raise TrainingError(f"dataset {dataset.name} holds {total} trainable examples, fewer than {sizes[-1]}")
        return [(str(size), size) for size in sizes]
    if by != Ablation.By.SOURCE:
        raise TrainingError(f"--by must be source or size, not {by!r}")
    if len(counts) < 2:
        only = ", ".join(counts) or "none"
        raise TrainingError(f"dataset {dataset.name} has one source ({only}): --by source compares two or more")
    size = sizes[0] if sizes else min(counts.values())
    if len(sizes) > 1:
        raise TrainingError("--by source takes one size (every source's cell is that many examples)")
    short = {source: n for source, n in counts.items() if n < size}
    if short:
        listed = ", ".join(f"{source} ({n})" for source, n in sorted(short.items()))
        raise TrainingError(f"--sizes {size}: these sources hold fewer examples: {listed}")
    return [(source, size) for source in sorted(counts)]


def create_ablation(
    name: str,
    dataset: TrainingDataset,
    by: str,
    sizes: list[int],
    base: System,
    recipe: Recipe,
    prompt_set: PromptSet,
    judge: JudgeConfig,
    kind: str = "likert",
    samples: int = 5,
    seed: int = 0,
) -> tuple[Ablation, bool]:
    """The ablation and its cells, or the existing one of this name when it was asked for with the
    same settings (then it goes on); another ablation of this name is refused."""
    if kind not in CURVED:
        raise TrainingError(f"--kind must be {' or '.join(CURVED)}, not {kind!r}")
    recipe.validate()
    cells = plan_cells(dataset, by, sizes)
    wanted = {
        "dataset": dataset,
        "by": by,
        "sizes": [size for _, size in cells] if by == Ablation.By.SIZE else [cells[0][1]],
        "base": base,
        "recipe": recipe.to_dict(),
        "prompt_set": prompt_set,
        "judge": judge,
        "kind": kind,
        "samples": samples,
        "seed": seed,
    }
    with transaction.atomic():
        existing = Ablation.objects.select_for_update().filter(name=name).first()
        if existing is not None:
            differs = [key for key, value in wanted.items() if getattr(existing, key) != value]
            if differs:
                raise TrainingError(
                    f"ablation {name!r} exists with other settings ({', '.join(differs)}); "
                    "run it with the same ones to go on, or choose another --name"
                )
            return existing, False
        ablation = Ablation.objects.create(name=name, **wanted)
        AblationCell.objects.bulk_create(
            AblationCell(ablation=ablation, label=label, position=n, size=size) for n, (label, size) in enumerate(cells)
        )
    return ablation, True


def _subset(cell: AblationCell) -> TrainingDataset:
    """The cell's examples copied into a dataset of its own: by size, the first N of one seeded
    shuffle (so the subsets are nested: 500 holds the 250); by source, N of that source."""
    ablation = cell.ablation
    examples = ablation.dataset.trainable()
    if ablation.by == Ablation.By.SOURCE:
        examples = examples.filter(source=cell.label)
    chosen = list(examples)
    random.Random(ablation.seed).shuffle(chosen)
    chosen = chosen[: cell.size]
    with transaction.atomic():
        subset = TrainingDataset.objects.create(
            name=slugify(f"{ablation.name}-{cell.label}")[:100],
            description=f"{ablation}: {cell.size} examples ({ablation.by} {cell.label})",
            manifest={"ablation": ablation.name, "from": ablation.dataset.name, "cell": cell.label},
        )
        TrainingExample.objects.bulk_create(
            TrainingExample(
                dataset=subset,
                external_id=e.external_id,
                source=e.source,
                group=e.group,
                messages=e.messages,
                status=e.status,
                meta=e.meta,
                input_tokens=e.input_tokens,
                output_tokens=e.output_tokens,
            )
            for e in chosen
        )
        AblationCell.objects.filter(pk=cell.pk).update(subset=subset)
    cell.subset = subset
    return subset


def _refresh(job: Job | None) -> Job | None:
    if job is not None:
        job.refresh_from_db()
    return job


@dataclass
class CellState:
    cell: AblationCell
    stage: str  # training, generating, rating, done, failed
    job: Job | None  # the job the cell waits for
    detail: str = ""


def advance(ablation: Ablation, enqueue: bool = True, retry: bool = False) -> list[CellState]:
    """Take every cell one step further where the step before is done; the cells' states. With
    ``retry`` a failed or cancelled job is started again (a run from its last checkpoint): what
    the command does when it is run again, not while it follows the jobs."""
    return [
        _advance_cell(ablation, cell, enqueue, FAILED if retry else ())
        for cell in ablation.cells.select_related("subset", "run", "system", "generation", "rating")
    ]


def _advance_cell(ablation: Ablation, cell: AblationCell, enqueue: bool, again: tuple) -> CellState:
    cell.ablation = ablation
    if cell.subset is None:
        name = slugify(f"{ablation.name}-{cell.label}")[:100]
        if TrainingDataset.objects.filter(name=name).exists():
            return CellState(cell, "failed", None, f"a dataset named {name!r} exists that is not this cell's")
    subset = cell.subset or _subset(cell)
    run: Any = _refresh(cell.run)
    if run is not None and run.status in FAILED and not again:
        return CellState(cell, "failed", run, f"{run} ended {run.status}: {run.error}")
    if run is None or run.status in again:
        # a failed or cancelled run is resumed from its last checkpoint by the same call
        run, _ = start_training(subset, ablation.base, Recipe.from_dict(ablation.recipe), enqueue=enqueue)
        AblationCell.objects.filter(pk=cell.pk).update(run=run)
        cell.run = run
    if run.status != JobStatus.DONE:
        return CellState(cell, "training", run)
    if cell.system is None:
        last = run.checkpoints.order_by("-epoch").first()
        if last is None:
            return CellState(cell, "failed", run, f"run {run.pk} ended with no checkpoint")
        name = slugify(f"{ablation.name}-{cell.label}")[:100]
        if System.objects.filter(name=name).exclude(checkpoint=last).exists():
            return CellState(cell, "failed", None, f"a system named {name!r} exists that is not this cell's")
        cell.system = last.register(name)
        AblationCell.objects.filter(pk=cell.pk).update(system=cell.system)
    generation = _refresh(cell.generation)
    if generation is not None and generation.status in FAILED and not again:
        return CellState(cell, "failed", generation, f"{generation} ended {generation.status}: {generation.error}")
    if generation is None or generation.status in again:
        generation, _ = start_generation(cell.system, ablation.prompt_set, enqueue=enqueue)
        AblationCell.objects.filter(pk=cell.pk).update(generation=generation)
        cell.generation = generation
    if generation.status != JobStatus.DONE:
        return CellState(cell, "generating", generation)
    rating = _refresh(cell.rating)
    if rating is not None and rating.status in FAILED and not again:
        return CellState(cell, "failed", rating, f"{rating} ended {rating.status}: {rating.error}")
    if rating is None or rating.status in again:
        rating, _ = start_rating_job(
            ablation.judge, cell.system, ablation.prompt_set, ablation.kind, ablation.samples, enqueue=enqueue
        )
        AblationCell.objects.filter(pk=cell.pk).update(rating=rating)
        cell.rating = rating
    if rating.status != JobStatus.DONE:
        return CellState(cell, "rating", rating)
    return CellState(cell, "done", None)


def curve(ablation: Ablation) -> list[dict]:
    """One row per cell: its label, size and, once rated, the judge's mean with its 95% interval
    over prompts (Likert), or the Excellent and Pass shares (Fail / Pass / Excellent): the kind's
    point (evalsite/judging/rating_kinds.py)."""
    rows = []
    for cell in ablation.cells.select_related("run", "system", "rating__config"):
        row: dict[str, Any] = {"label": cell.label, "size": cell.size, "cell": cell, "mean": None, "ci95": None}
        if cell.rating is not None and cell.rating.status == JobStatus.DONE:
            summary = rating_job_summary(cell.rating)
            row["summary"] = summary
            point = rating_kind(ablation.kind).point
            if point is not None:
                row["mean"], row["ci95"] = point(summary)
        rows.append(row)
    return rows



def curve_figure(ablation: Ablation, rows: list[dict] | None = None) -> Chart:
    """Figure 5 (by source: evenly spaced categories) or Figure 6 (by size: a log2 axis, the paper
    doubles the examples per point): the judge's score of each cell's model with its 95% interval
    over prompts; a cell not measured yet is a hollow mark on the axis."""
    rows = curve(ablation) if rows is None else rows
    what, y_label, y_range = rating_kind(ablation.kind).axis
    points = [
        {
            "label": row["label"],
            "x": row["size"],
            "y": row["mean"],
            "low": row["ci95"][0] if row["ci95"] else None,
            "high": row["ci95"][1] if row["ci95"] else None,
        }
        for row in rows
    ]
    by_size = ablation.by == Ablation.By.SIZE
    title = f"{ablation.judge.label}'s {what} by training " + ("set size" if by_size else "source")
    svg = curve_chart(
        points,
        title,
        "training examples (log scale)" if by_size else f"source ({ablation.sizes[0]} examples each)",
        y_label,
        y_range,
        log_x=by_size,
    )
    key = "figure6" if by_size else "figure5"
    return Chart(key, title, svg, ("label", "x", "y", "low", "high"), points)


for _key, _by, _paper, _shows in (
    ("figure5", Ablation.By.SOURCE, "Figure 5", "the judge's grades of models trained on each source"),
    ("figure6", Ablation.By.SIZE, "Figure 6", "the judge's grades of models trained on more and more examples"),
):
    register(
        Figure(
            _key,
            _paper,
            _shows,
            "ablation",
            "finetune:ablation_detail",
            lambda ablation, paper=True, by=_by: curve_figure(ablation) if ablation.by == by else None,
        )
    )

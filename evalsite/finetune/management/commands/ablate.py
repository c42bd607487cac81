"""``manage.py ablate``: the paper's ablations (Figures 5 and 6) in one command, resumable cell by
cell: run the same command again after a kill and it goes on where it stopped."""

from __future__ import annotations

import socket
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from evalsite.catalog.find import find_system
from evalsite.catalog.models import PromptSet
from evalsite.core import jobs, workflows
from evalsite.core.jobs import CannotStart
from evalsite.core.lookup import by_name
from evalsite.core.models import Workflow
from evalsite.finetune import ablation as plan
from evalsite.finetune.services import find_dataset, recipe_from
from evalsite.finetune.workflows import ABLATION
from evalsite.judging.models import JudgeConfig
from evalsite.judging.rating_kinds import CURVED, rating_kind
from generation.bundled import BUNDLED_SYSTEM_NAME


class Command(BaseCommand):
    help = (
        "Train one run per subset of a dataset (by source or by size), generate with each, rate the answers "
        "with a judge (Likert 1-6, n samples) and draw the curve with intervals. Resumable: run it again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="a curated dataset (manage.py curate)")
        parser.add_argument("--by", required=True, choices=["source", "size"])
        parser.add_argument(
            "--sizes", default="", help="by size: growing sizes, 250,500,1000,2000; by source: one size per cell"
        )
        parser.add_argument("--recipe", default="lima-mini", help="lima or lima-mini")
        parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="override recipe fields")
        parser.add_argument("--base", default=BUNDLED_SYSTEM_NAME, help="an hf_local system")
        parser.add_argument("--prompts", required=True, help="the prompt set every cell answers")
        parser.add_argument("--judge", required=True, help="a judge config (manage.py judge_config)")
        parser.add_argument("--kind", default="likert", choices=CURVED)
        parser.add_argument("--samples", type=int, default=5, help="judge ratings per answer (the paper: 5)")
        parser.add_argument("--seed", type=int, default=0, help="which examples each subset draws")
        parser.add_argument("--name", default="", help="default: <dataset>-by-<by>")
        parser.add_argument("--wait", action="store_true", help="follow the workers until every cell is rated")
        parser.add_argument("--foreground", action="store_true", help="run every job here, one after another")

    def handle(self, *args, **opts):
        try:
            ablation, created = self._create(opts)
        except CannotStart as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{'created' if created else 'going on with'} {ablation}: {ablation.cells.count()} cells")
        # named per ablation: another ablation running here at the same time keeps its jobs
        worker = f"ablate-{ablation.name}@{socket.gethostname()}"
        if opts["foreground"]:
            # a foreground run of this ablation that was killed left its job running under this
            # name: it is dead (run one foreground ablate per ablation at a time)
            for model, pk in jobs.release_orphans_of(worker):
                self.stdout.write(f"  {model.label()} {pk} was left running by a killed ablate: again")
        try:
            # a workflow (evalsite/core/workflows.py): the workers take it on from each job's end,
            # so the command may exit now; --wait only follows it, --foreground runs its jobs here
            flow = workflows.start(ABLATION.name, ablation.pk, by_workers=not opts["foreground"], retry=True)
            while flow.status == Workflow.Status.RUNNING and (opts["foreground"] or opts["wait"]):
                if opts["foreground"]:
                    # one job, then look again: here the cells finish one after another, each
                    # point of the curve as soon as it can be
                    waiting = [step for step in workflows.steps_of(flow) if step.state == "queued"]
                    if waiting:
                        self.stdout.write(f"  running {waiting[0].name} ({waiting[0].job})")
                        jobs.execute(*waiting[0].job_ref(), worker=worker)
                    else:  # what is left runs elsewhere (a worker took it): follow it
                        time.sleep(2.0)
                        close_old_connections()
                    flow = workflows.advance(flow.pk)
                else:
                    time.sleep(2.0)
                    close_old_connections()
                    flow.refresh_from_db()
        except CannotStart as exc:
            raise CommandError(str(exc)) from exc
        if flow.status == Workflow.Status.FAILED:
            raise CommandError(f"cells failed: {flow.error} (run the command again to retry)")
        self._report(ablation, flow)

    def _create(self, opts):
        recipe = recipe_from(opts["recipe"], opts["set"])
        if not 1 <= opts["samples"] <= 20:
            raise CannotStart("--samples must be from 1 to 20")
        dataset = find_dataset(opts["dataset"])
        base = find_system(opts["base"])
        prompts = by_name(PromptSet, opts["prompts"], CannotStart, "import one with manage.py import_prompts")
        judge = by_name(JudgeConfig, opts["judge"], CannotStart, "make one with manage.py judge_config")
        sizes = plan.parse_sizes(opts["sizes"]) if opts["sizes"] else []
        name = opts["name"] or f"{dataset.name}-by-{opts['by']}"[:60]
        return plan.create_ablation(
            name, dataset, opts["by"], sizes, base, recipe, prompts, judge, opts["kind"], opts["samples"], opts["seed"]
        )

    def _report(self, ablation, flow) -> None:
        for step in workflows.steps_of(flow):
            if step.state != "waiting":
                self.stdout.write(f"  {step.name:>30}: {step.state}{f' ({step.job})' if step.job else ''}")
        rows = plan.curve(ablation)
        if any(row["mean"] is not None for row in rows):
            measure = rating_kind(ablation.kind).measure
            self.stdout.write(f"{'cell':>14} {'examples':>9} {measure:>10}  95% interval")
            for row in rows:
                mean = "-" if row["mean"] is None else f"{row['mean']:.2f}"
                ci = f"[{row['ci95'][0]:.2f}, {row['ci95'][1]:.2f}]" if row["ci95"] else ""
                self.stdout.write(f"{row['label']:>14} {row['size']:>9} {mean:>10}  {ci}")
        if flow.status == Workflow.Status.DONE:
            where = f"/training/ablations/{ablation.name}/"
            self.stdout.write(self.style.SUCCESS(f"{ablation.name}: every cell rated; the curve: {where}"))
        else:
            self.stdout.write(
                f"the workers carry it on from here (workflow {flow.pk}, /workflows/): follow it with --wait"
            )

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from evalsite.annotation import studies
from evalsite.catalog.find import find_prompt_set
from evalsite.core import workflows
from evalsite.core.jobs import CannotStart
from evalsite.core.models import Workflow
from evalsite.dashboard.ranking import ranking
from evalsite.finetune.services import find_run, parse_epochs, select_checkpoints
from evalsite.finetune.workflows import CHECKPOINT_SELECTION
from evalsite.judging.services import CannotJudge, find_config


class Command(BaseCommand):
    help = (
        "Pick a checkpoint as the paper did, with a guarantee: register each checkpoint of an epoch range as a "
        "system, generate on the dev set, and open a ranking study of them (and optionally a judge job); run it "
        "again to read which epoch is best, or that the votes cannot tell yet."
    )

    def add_arguments(self, parser):
        parser.add_argument("run", help="training run id")
        parser.add_argument("--epochs", default="5-10", help="range of epochs (paper: 5-10)")
        parser.add_argument("--prompts", default="lima-style-dev", help="the dev prompt set")
        parser.add_argument("--judge", help="judge config to run on the study as well")
        parser.add_argument(
            "--wait", action="store_true", help="follow it until the study is open (the workers open it either way)"
        )

    def handle(self, *args, **opts):
        try:
            run = find_run(opts["run"])
            config = find_config(opts["judge"]) if opts["judge"] else None
            systems, gen_jobs, study = select_checkpoints(
                run, parse_epochs(opts["epochs"]), find_prompt_set(opts["prompts"])
            )
        except (CannotStart, CannotJudge, studies.StudyError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"checkpoints as systems: {', '.join(s.name for s in systems)}")
        self.stdout.write(f"ranking study {study.name}: {len(systems)} checkpoints, every pair on every dev prompt")
        # a workflow (evalsite/core/workflows.py): the study opens, and the judge job starts, when
        # the last answers are in, whoever is waiting; --wait only follows it
        params = {"generations": [job.pk for job in gen_jobs], "judge": config.pk if config else None}
        flow = workflows.start(CHECKPOINT_SELECTION.name, study.pk, retry=True, params=params)
        if opts["wait"]:
            while flow.status == Workflow.Status.RUNNING:
                time.sleep(1.0)
                close_old_connections()
                flow.refresh_from_db()
        for step in workflows.steps_of(flow):
            self.stdout.write(f"  {step.name}: {step.state}{f' ({step.detail})' if step.detail else ''}")
        if flow.status == Workflow.Status.FAILED:
            raise CommandError(f"{flow}: {flow.error}")
        if flow.status == Workflow.Status.RUNNING:
            self.stdout.write(f"the workers open the study when the answers are in (workflow {flow.pk}, /workflows/)")
            return
        self.stdout.write(self.style.SUCCESS(f"study {study.name} is open"))
        result = ranking(study)
        self.stdout.write(f"{result.main.votes} complete comparisons of {result.comparisons}: {result.answer}")
        if result.settled:
            best = result.rows()[0]["system"]
            epoch = next(s.checkpoint.epoch for s in systems if s.name == best)
            self.stdout.write(
                self.style.SUCCESS(f"best: epoch {epoch}: manage.py register_checkpoint {run.pk} --epoch {epoch}")
            )
        else:
            self.stdout.write(
                "people vote at /annotate/ (the study's page has links); run this again, or read the study's "
                "dashboard, to see which epoch is best"
            )

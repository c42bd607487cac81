from django.core.management.base import BaseCommand, CommandError

from evalsite.annotation import services as studies
from evalsite.catalog.lookup import find_prompt_set
from evalsite.core import jobs
from evalsite.core.jobs import CannotStart
from evalsite.core.progress import follow
from evalsite.finetune.services import find_run, parse_epochs, select_checkpoints
from evalsite.judging.services import CannotJudge, find_config, start_judge_job


class Command(BaseCommand):
    help = (
        "Pick a checkpoint as the paper did: register each checkpoint of an epoch range as a system, generate on "
        "the dev set, and open a study (and optionally a judge job) comparing them, so a person picks."
    )

    def add_arguments(self, parser):
        parser.add_argument("run", help="training run id")
        parser.add_argument("--epochs", default="5-10", help="range of epochs (paper: 5-10)")
        parser.add_argument("--prompts", default="lima-style-dev", help="the dev prompt set")
        parser.add_argument("--judge", help="judge config to run on the study as well")
        parser.add_argument("--wait", action="store_true", help="wait for the answers, then open the study")

    def handle(self, *args, **opts):
        try:
            run = find_run(opts["run"])
            systems, gen_jobs, study = select_checkpoints(
                run, parse_epochs(opts["epochs"]), find_prompt_set(opts["prompts"])
            )
        except (CannotStart, studies.StudyError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"checkpoints as systems: {', '.join(s.name for s in systems)}")
        self.stdout.write(f"study {study.name}: {study.candidate.name} against the others")
        if not opts["wait"]:
            self.stdout.write("when the generation jobs are done, open it: manage.py select_checkpoint ... --wait")
            return
        for job in gen_jobs:
            if follow(job).status != jobs.JobStatus.DONE:
                raise CommandError(f"{job} did not finish; the study stays a draft")
        try:
            if study.status == study.Status.DRAFT:
                n = studies.start_study(study)
                self.stdout.write(self.style.SUCCESS(f"study {study.name} open with {n} comparisons"))
            if opts["judge"]:
                judge_job, _ = start_judge_job(study, find_config(opts["judge"]))
                self.stdout.write(f"judge job: {judge_job}")
        except (studies.StudyError, CannotJudge) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write("compare them on the study's dashboard, then: manage.py register_checkpoint RUN --epoch N")

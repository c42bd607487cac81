from django.core.management.base import CommandError

from evalsite.catalog.find import find_system
from evalsite.core.commands import JobCommand
from evalsite.core.jobs import JobStatus
from evalsite.finetune.services import find_dataset, recipe_from, start_training
from generation.bundled import BUNDLED_SYSTEM_NAME


class Command(JobCommand):
    help = "Fine-tune a base system on a dataset with a recipe (lima, lima-mini), as a job on the training queue."
    follow_hint = "follow it with --wait or on /training/"

    def add_job_arguments(self, parser):
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--recipe", default="lima-mini", help="lima or lima-mini")
        parser.add_argument("--base", default=BUNDLED_SYSTEM_NAME, help="an hf_local system")
        parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="override recipe fields")
        parser.add_argument("--new", action="store_true", help="start afresh instead of resuming a failed run")

    def start(self, opts, enqueue):
        recipe = recipe_from(opts["recipe"], opts["set"])
        dataset, base = find_dataset(opts["dataset"]), find_system(opts["base"])
        return start_training(dataset, base, recipe, enqueue=enqueue, new=opts["new"])

    def started(self, run, started):
        state = "resuming" if started and run.attempts else "started" if started else "already running"
        return f"{state}: {run} in {run.output_dir}"

    def report(self, run):
        for checkpoint in run.checkpoints.all():
            self.stdout.write(f"  epoch {checkpoint.epoch}: train loss {checkpoint.train_loss:.3f}  {checkpoint.path}")
        if run.status == JobStatus.DONE:
            self.stdout.write(self.style.SUCCESS(f"{run}: done"))

    def refuse_unfinished(self, run):
        if run.status != JobStatus.DONE:
            raise CommandError(f"run ended {run.status}: {run.error}; run the same command again to resume it")

from django.core.management.base import CommandError

from evalsite.catalog.lookup import find_system
from evalsite.core.commands import JobCommand
from evalsite.core.jobs import CannotStart, JobStatus
from evalsite.finetune.services import find_dataset, start_training
from inference.bundled import BUNDLED_SYSTEM_NAME
from training.recipe import RecipeError, get_recipe


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
        try:
            overrides = dict(item.split("=", 1) for item in opts["set"])
        except ValueError:
            raise CannotStart("--set takes FIELD=VALUE pairs, e.g. --set epochs=3 lr=2e-5") from None
        try:
            recipe = get_recipe(opts["recipe"]).with_overrides(overrides)
        except RecipeError as exc:
            raise CannotStart(str(exc)) from exc
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

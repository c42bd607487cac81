from django.core.management.base import BaseCommand, CommandError

from evalsite.core import jobs
from evalsite.core.progress import run_or_follow
from evalsite.finetune.services import TrainingError, find_dataset, start_training
from evalsite.generations.services import CannotStart, find_system
from generation.bundled import BUNDLED_SYSTEM_NAME
from training.recipe import RecipeError, get_recipe


class Command(BaseCommand):
    help = "Fine-tune a base system on a dataset with a recipe (lima, lima-mini), as a job on the training queue."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--recipe", default="lima-mini", help="lima or lima-mini")
        parser.add_argument("--base", default=BUNDLED_SYSTEM_NAME, help="an hf_local system")
        parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="override recipe fields")
        parser.add_argument("--new", action="store_true", help="start afresh instead of resuming a failed run")
        parser.add_argument("--wait", action="store_true", help="show a progress bar until the run ends")
        parser.add_argument("--foreground", action="store_true", help="train here, without a worker")

    def handle(self, *args, **opts):
        try:
            overrides = dict(item.split("=", 1) for item in opts["set"])
        except ValueError:
            raise CommandError("--set takes FIELD=VALUE pairs, e.g. --set epochs=3 lr=2e-5") from None
        try:
            recipe = get_recipe(opts["recipe"]).with_overrides(overrides)
            run, created = start_training(
                find_dataset(opts["dataset"]),
                find_system(opts["base"]),
                recipe,
                enqueue=not opts["foreground"],
                new=opts["new"],
            )
        except (RecipeError, TrainingError, CannotStart) as exc:
            raise CommandError(str(exc)) from exc
        state = "resuming" if created and run.attempts else "started" if created else "already running"
        self.stdout.write(f"{state}: {run} in {run.output_dir}")
        finished = run_or_follow(run, created, opts["foreground"], opts["wait"])
        if finished is None:
            self.stdout.write("follow it with --wait or on /training/")
            return
        run = finished
        for checkpoint in run.checkpoints.all():
            self.stdout.write(f"  epoch {checkpoint.epoch}: train loss {checkpoint.train_loss:.3f}  {checkpoint.path}")
        if run.status != jobs.JobStatus.DONE:
            raise CommandError(f"run ended {run.status}: {run.error}; run the same command again to resume it")
        self.stdout.write(self.style.SUCCESS(f"{run}: done"))

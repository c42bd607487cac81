from django.core.management.base import BaseCommand, CommandError

from evalsite.finetune.services import TrainingError, find_run, register_checkpoint


class Command(BaseCommand):
    help = "Make a run's chosen checkpoint the candidate system to evaluate."

    def add_arguments(self, parser):
        parser.add_argument("run", help="training run id")
        parser.add_argument("--epoch", type=int, required=True)
        parser.add_argument("--name", help="system name (default DATASET-runN-epochNN)")

    def handle(self, *args, **opts):
        try:
            system = register_checkpoint(find_run(opts["run"]), opts["epoch"], opts["name"])
        except TrainingError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"candidate system {system.name}: {system.backend_config['model_path']}"))

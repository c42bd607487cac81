from django.core.management.base import BaseCommand, CommandError

from evalsite.catalog.io import ImportFailed
from evalsite.catalog.seed import seed


class Command(BaseCommand):
    help = "Load the shipped prompt sets (data/*.jsonl) and register the bundled model. Safe to re-run."

    def handle(self, *args, **opts):
        try:
            results = seed()
        except ImportFailed as exc:
            raise CommandError(str(exc)) from exc
        for name, result in results.items():
            text = result if isinstance(result, str) else result.summary()
            self.stdout.write(f"{name}: {text}")

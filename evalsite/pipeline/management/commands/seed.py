from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from evalsite.catalog.io import ImportFailed
from evalsite.catalog.seed import seed
from evalsite.judging.services import ensure_local_judge


class Command(BaseCommand):
    help = (
        "Load the shipped prompt sets (data/*.jsonl), register the bundled model and the local judge. Safe to re-run."
    )

    def handle(self, *args, **opts):
        try:
            with transaction.atomic():
                results = seed()
                results["local-judge"] = f"judge config {ensure_local_judge().label}"
        except ImportFailed as exc:
            raise CommandError(str(exc)) from exc
        for name, result in results.items():
            text = result if isinstance(result, str) else result.summary()
            self.stdout.write(f"{name}: {text}")

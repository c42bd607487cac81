from pathlib import Path

from django.core.management.base import BaseCommand

from evalsite.catalog.io import export_all


class Command(BaseCommand):
    help = "Export prompts, systems, responses (and what later apps register) as JSON lines into a folder."

    def add_arguments(self, parser):
        parser.add_argument("--out", type=Path, required=True)

    def handle(self, *args, **opts):
        counts = export_all(opts["out"])
        for name, n in counts.items():
            self.stdout.write(f"{opts['out'] / name}: {n} rows")

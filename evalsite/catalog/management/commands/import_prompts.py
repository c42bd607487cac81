from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evalsite.catalog.io import ImportFailed, import_prompts
from evalsite.catalog.models import PromptSet


class Command(BaseCommand):
    help = (
        "Import prompts from JSON lines: our format {id, messages, source, tags} or the published "
        "LIMA format {conversations, source}. All or nothing; re-importing changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--set", dest="set_name", required=True, help="prompt set name (created if new)")
        parser.add_argument("--purpose", choices=PromptSet.Purpose.values, default=PromptSet.Purpose.TEST)
        parser.add_argument("--description", default="")

    def handle(self, *args, **opts):
        try:
            report = import_prompts(opts["file"], opts["set_name"], opts["purpose"], opts["description"])
        except ImportFailed as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"{opts['set_name']}: {report.summary()}"))

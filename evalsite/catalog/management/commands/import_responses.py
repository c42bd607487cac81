from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evalsite.catalog.io import ImportFailed, import_responses


class Command(BaseCommand):
    help = (
        "Import a system's precomputed responses from JSON lines ({id or prompt, response, "
        "sample_index?}); AlpacaEval's {instruction, output} works too."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--system", required=True, help="the system the responses belong to")
        parser.add_argument("--set", dest="set_name", help="only match prompts of this set")
        parser.add_argument("--strict", action="store_true", help="fail (import nothing) if any line matches no prompt")

    def handle(self, *args, **opts):
        try:
            report = import_responses(opts["file"], opts["system"], opts["set_name"], opts["strict"])
        except ImportFailed as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"{opts['system']}: {report.summary()}"))
        if report.unmatched:
            self.stderr.write(
                self.style.WARNING(f"{len(report.unmatched)} response(s) matched no prompt and were not imported:")
            )
            for line in report.unmatched:
                self.stderr.write(f"  {line}")

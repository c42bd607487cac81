from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.text import slugify

from evalsite.annotation import services
from evalsite.catalog.lookup import find_prompt_set, find_system
from evalsite.core.jobs import CannotStart


class Command(BaseCommand):
    help = "Create a study (a candidate against baselines over a prompt set) and open it for annotators."

    def add_arguments(self, parser):
        parser.add_argument("--candidate", required=True)
        parser.add_argument("--baselines", required=True, help="comma-separated system names")
        parser.add_argument("--prompts", required=True, help="prompt set name")
        parser.add_argument("--name", help="default: CANDIDATE-vs-BASELINES-on-SET")
        parser.add_argument("--overlap", type=int, default=1, help="annotators per comparison")
        parser.add_argument("--gold-rate", type=float, default=0.05, help="share of items that are gold checks")
        parser.add_argument("--draft", action="store_true", help="create it without opening it")

    def handle(self, *args, **opts):
        names = [n.strip() for n in opts["baselines"].split(",") if n.strip()]
        name = opts["name"] or slugify(f"{opts['candidate']}-vs-{'-'.join(names)}-on-{opts['prompts']}")[:100]
        try:
            candidate = find_system(opts["candidate"])
            baselines = [find_system(n) for n in names]
            prompt_set = find_prompt_set(opts["prompts"])
            with transaction.atomic():  # a study that cannot start is not left behind
                study = services.create_study(
                    name, candidate, baselines, prompt_set, overlap=opts["overlap"], gold_rate=opts["gold_rate"]
                )
                n = 0 if opts["draft"] else services.start_study(study)
        except (CannotStart, services.StudyError) as exc:
            raise CommandError(str(exc)) from exc
        state = "draft" if opts["draft"] else f"open with {n} comparisons"
        self.stdout.write(self.style.SUCCESS(f"study {study.name}: {state}"))

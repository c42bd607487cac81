from django.core.management.base import BaseCommand, CommandError
from django.utils.text import slugify

from evalsite.annotation.studies import StudyError
from evalsite.arena.services import create_arena
from evalsite.catalog.find import find_system
from evalsite.core.jobs import CannotStart


class Command(BaseCommand):
    help = (
        "Open a private arena: people bring their own prompts, two anonymous systems answer side by side, people "
        "vote, and the votes rank the systems (the study's dashboard page)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--systems", required=True, help="comma-separated system names (two or more)")
        parser.add_argument("--name", help="default: arena-SYSTEMS")
        parser.add_argument("--review", action="store_true", help="staff approve each prompt before it counts")
        parser.add_argument("--topics", default="", help="comma-separated topics a person picks from (default: any)")

    def handle(self, *args, **opts):
        names = [n.strip() for n in opts["systems"].split(",") if n.strip()]
        name = opts["name"] or slugify(f"arena-{'-'.join(names)}")[:100]
        topics = [t for t in opts["topics"].split(",") if t.strip()]
        try:
            study = create_arena(name, [find_system(n) for n in names], review=opts["review"], topics=topics)
        except (CannotStart, StudyError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"arena {study.name}: open, {len(names)} systems"))
        self.stdout.write(
            f"people ask at /arena/{study.name}/ (accounts: manage.py add_annotators --study {study.name} --count N); "
            f"the prompts are collected in {study.prompt_set.name}; the ranking is at /dashboard/{study.name}/"
        )
        if study.review_prompts:
            self.stdout.write(f"prompts wait for review at /arena/{study.name}/moderation/")
        self.stdout.write(
            "answers are written by a worker of the live queue: celery -A evalsite worker -Q live -P threads"
        )

"""``manage.py gold``: gold checks that stand on their own, on prompts outside the study."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evalsite.annotation.gold import add_labelled_gold, gold_sources
from evalsite.annotation.kinds import study_kind
from evalsite.annotation.models import Study
from evalsite.annotation.studies import StudyError
from evalsite.catalog.find import find_prompt_set
from evalsite.core.jobs import CannotStart
from evalsite.core.lookup import by_name
from evalsite.judging.judged_gold import add_judged_gold
from evalsite.judging.rating_kinds import SCORED


class Command(BaseCommand):
    help = (
        "Add gold checks to a study: staff-labelled pairs from a JSONL file (prompt, better, worse), or pairs of "
        "two systems' answers on another prompt set whose judge ratings are far apart. They replace the degraded "
        "copies of the candidate's answers no one was served yet."
    )

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True)
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--file", type=Path, help='JSONL: {"id", "prompt" or "messages", "better", "worse"}')
        source.add_argument("--judged-on", metavar="PROMPT_SET", help="a prompt set two or more systems were rated on")
        parser.add_argument("--kind", choices=SCORED, default="likert", help="which ratings (--judged-on)")
        parser.add_argument("--min-gap", type=float, default=2.0, help="rating gap of a pair: 2 on 1-6, or E vs F")

    def handle(self, *args, **opts):
        try:
            study = by_name(Study, opts["study"], CannotStart, "make one with manage.py create_study")
            if not study_kind(study).pairs:
                raise StudyError(f"study {study.name} is a {study.kind} study: gold pairs are for pairwise studies")
            if opts["file"]:
                added = add_labelled_gold(study, Path(opts["file"]))
            else:
                added = add_judged_gold(study, find_prompt_set(opts["judged_on"]), opts["min_gap"], opts["kind"])
        except (CannotStart, StudyError) as exc:
            raise CommandError(str(exc)) from exc
        sources = ", ".join(f"{n} {what}" for what, n in gold_sources(study).items() if n)
        self.stdout.write(self.style.SUCCESS(f"study {study.name}: {added} gold pairs added; its gold: {sources}"))

import json
import os
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evalsite.annotation.models import Study
from evalsite.dashboard.preferences import FORMATS, PreferenceError, preference_lines
from evalsite.judging.models import JudgeJob


class Command(BaseCommand):
    help = (
        "A study's preferences as JSON lines in the shape TRL's DPOTrainer reads (prompt, chosen, rejected): "
        "the people's majority on each comparison with all its votes, or a judge job's verdicts (--job). "
        'Ties are left out unless --keep-ties (then flagged "tie": true). Reads only.'
    )

    def add_arguments(self, parser):
        parser.add_argument("study")
        parser.add_argument("--job", type=int, help="a judge job of the study: its verdicts instead of the people's")
        parser.add_argument("--keep-ties", action="store_true", help='write ties too, flagged "tie": true')
        parser.add_argument("--format", choices=FORMATS, default="conversational")
        parser.add_argument("--out", help="the file to write (default: standard output)")

    def handle(self, *args, **opts):
        study = Study.objects.filter(name=opts["study"]).first()
        if study is None:
            raise CommandError(f"no study named {opts['study']!r}")
        job = None
        if opts["job"] is not None:
            job = JudgeJob.objects.filter(pk=opts["job"]).first()
            if job is None:
                raise CommandError(f"no judge job {opts['job']}")
        try:  # every line made before any is written: a bad one leaves no half-written file
            lines = [json.dumps(line, ensure_ascii=False) for line in preference_lines(
                study, job, opts["keep_ties"], opts["format"]
            )]  # fmt: skip
        except PreferenceError as exc:
            raise CommandError(str(exc)) from exc
        text = "".join(line + "\n" for line in lines)
        if not opts["out"]:
            self.stdout.write(text, ending="")
            return
        out = Path(opts["out"])
        with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False, suffix=".part", encoding="utf-8") as part:
            part.write(text)
        os.replace(part.name, out)
        who = f"judge job {job.pk}" if job else "the people"
        self.stderr.write(f"{len(lines)} preferences of {who} on study {study.name} written to {out}")

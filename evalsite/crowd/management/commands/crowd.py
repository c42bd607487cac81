from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from evalsite.annotation.models import Study
from evalsite.crowd import services
from evalsite.crowd.models import CrowdLink
from evalsite.crowd.platforms import PLATFORMS, PROLIFIC


class Command(BaseCommand):
    help = "A study's crowd link (Prolific or MTurk) and its participants' export."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        link = sub.add_parser("link", help="make (or change) the study's link and print the URL for the platform")
        link.add_argument("study")
        link.add_argument("--platform", choices=list(PLATFORMS), default=PROLIFIC.key)
        link.add_argument("--quota", type=int, default=20, help="items each participant judges (arena: battles)")
        link.add_argument("--screening", type=int, default=0, help="the first N items are gold checks")
        link.add_argument("--pass", dest="screening_pass", type=int, default=0, help="gold checks right to go on")
        link.add_argument("--completion-url", default="", help="where participants go at the end; {code} is replaced")
        link.add_argument("--completion-code", default="", help="the platform's code (default: one made here)")
        link.add_argument("--site", default=settings.SITE_URL, help="this site's public address (SITE_URL)")
        link.add_argument(
            "--only-verified",
            action="store_true",
            help="count a participant's votes only once the platform's submissions list shows them (crowd reconcile)",
        )
        export = sub.add_parser("export", help="one CSV row per participant (Prolific's participant id first)")
        export.add_argument("study")
        export.add_argument("--out", type=Path, help="a file (default: standard output)")
        returned = sub.add_parser(
            "returned", help="mark the participants the platform says returned or timed out (its submissions export)"
        )
        returned.add_argument("study")
        returned.add_argument(
            "--submissions", type=Path, required=True, help="Prolific's submissions CSV, or the API's JSON list"
        )
        reconcile = sub.add_parser(
            "reconcile",
            help="check the participants against the platform's submissions: ids it does not know are unverified "
            "and their votes leave the figures until staff accept them; returned and timed-out ones are marked",
        )
        reconcile.add_argument("study")
        reconcile.add_argument(
            "--submissions", type=Path, required=True, help="Prolific's submissions CSV, or the API's JSON list"
        )
        accept = sub.add_parser("accept", help="count an unverified participant's votes (checked by hand)")
        accept.add_argument("study")
        accept.add_argument("participant_id")

    def handle(self, *args, **opts):
        study = Study.objects.filter(name=opts["study"]).first()
        if study is None:
            raise CommandError(f"no study named {opts['study']!r}")
        if opts["action"] == "link":
            try:
                link = services.create_link(
                    study,
                    platform=opts["platform"],
                    quota=opts["quota"],
                    screening_items=opts["screening"],
                    screening_pass=opts["screening_pass"],
                    completion_url=opts["completion_url"],
                    completion_code=opts["completion_code"],
                    only_verified=opts["only_verified"],
                )
            except services.CrowdError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"study URL for {link.get_platform_display()}: {link.study_url(opts['site'])}")
            self.stdout.write(f"completion code: {link.completion_code}")
            if link.screening_items:
                self.stdout.write(f"screened-out code: {link.screened_out_code}")
            return
        link = CrowdLink.objects.filter(study=study).first()
        if link is None:
            raise CommandError(f"study {study.name} has no crowd link (manage.py crowd link {study.name})")
        if opts["action"] == "reconcile":
            try:
                result = services.reconcile(link, Path(opts["submissions"]))
            except services.CrowdError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(
                f"{result.known} participant(s) verified; {len(result.unknown)} unverified, their votes left out "
                f"until accepted (manage.py crowd accept {study.name} ID); {result.returned} marked returned"
            )
            for pid in result.unknown[:20]:
                self.stdout.write(f"  unverified: {pid}")
            if result.not_here:
                shown = ", ".join(result.not_here[:10]) + (" ..." if len(result.not_here) > 10 else "")
                self.stdout.write(f"{len(result.not_here)} id(s) in the file never arrived by this link: {shown}")
            return
        if opts["action"] == "accept":
            try:
                participant = services.accept(link, opts["participant_id"])
            except services.CrowdError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"{participant.external_id}: accepted; their votes count")
            return
        if opts["action"] == "returned":
            try:
                marked, unknown = services.mark_returned(link, Path(opts["submissions"]))
            except services.CrowdError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"{marked} participant(s) marked returned")
            if unknown:
                shown = ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
                self.stdout.write(f"{len(unknown)} id(s) in the file never arrived by this link: {shown}")
            return
        text = services.export_csv(link)
        if opts["out"]:
            opts["out"].write_text(text)
            self.stdout.write(f"{len(text.splitlines()) - 1} participant(s) written to {opts['out']}")
        else:
            self.stdout.write(text, ending="")

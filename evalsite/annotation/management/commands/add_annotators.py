from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from evalsite.annotation import members
from evalsite.annotation.models import Study


class Command(BaseCommand):
    help = "Create annotator accounts for a study and print each one's password and one-time login link, once."

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True)
        parser.add_argument("--count", type=int, required=True)
        parser.add_argument("--prefix", default="annotator-")

    def handle(self, *args, **opts):
        try:
            study = Study.objects.get(name=opts["study"])
        except Study.DoesNotExist:
            raise CommandError(f"no study named {opts['study']!r}") from None
        if not 1 <= opts["count"] <= 1000:
            raise CommandError("--count must be between 1 and 1000")
        base = settings.SITE_URL.rstrip("/")
        for username in members.next_annotator_names(opts["prefix"], opts["count"]):
            user, password, token = members.add_annotator(study, username)
            link = base + reverse("annotation:token_login", args=[token])
            self.stdout.write(f"{user.username}  password: {password}  one-time login: {link}")
        self.stdout.write("(shown once: passwords and links are not stored in clear)")

from django.core.management.base import BaseCommand

from evalsite.core.accounts import ensure_staff_user


class Command(BaseCommand):
    help = "Create a staff superuser with a random password, printed once (does nothing if it exists)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--email", default="")

    def handle(self, *args, **opts):
        user, password = ensure_staff_user(opts["username"], opts["email"])
        if password:
            self.stdout.write(self.style.SUCCESS(f"staff user created: {user.username} / password: {password}"))
            self.stdout.write("  (shown once; change it with: manage.py changepassword " + user.username + ")")
        else:
            self.stdout.write(
                f"staff user {user.username} exists (reset its password: manage.py changepassword {user.username})"
            )

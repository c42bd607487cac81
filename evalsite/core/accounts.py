"""Accounts: staff see the dashboard and the admin; annotators (a group) see their own work."""

import secrets

from django.contrib.auth.models import Group, User
from django.db import transaction

ANNOTATORS_GROUP = "annotators"


def annotators_group() -> Group:
    return Group.objects.get_or_create(name=ANNOTATORS_GROUP)[0]


def new_password() -> str:
    return secrets.token_urlsafe(12)


@transaction.atomic
def ensure_staff_user(username: str, email: str = "") -> tuple[User, str | None]:
    """Create a superuser with a random password. Returns the password only when it was just
    created: it is printed once and stored nowhere in clear."""
    user = User.objects.filter(username=username).first()
    if user is not None:
        return user, None
    password = new_password()
    user = User.objects.create_superuser(username=username, email=email, password=password)
    return user, password

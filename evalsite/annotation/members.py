"""A study's annotators: accounts made or reused, invitations by mail, and one-time login links."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from evalsite.annotation.models import LoginToken, Study
from evalsite.core.accounts import annotators_group, new_password

LOGIN_TOKEN_DAYS = 7


def login_token_for(user: User) -> str:
    token = secrets.token_urlsafe(24)
    LoginToken.objects.create(
        user=user, token_hash=LoginToken.hash(token), expires_at=timezone.now() + timedelta(days=LOGIN_TOKEN_DAYS)
    )
    return token


def login_token_user(token: str) -> User | None:
    """The user a token would log in, if it is unused and unexpired; reads only (a mail filter's
    GET or HEAD of the link must not spend it)."""
    unused = LoginToken.objects.filter(used_at__isnull=True, expires_at__gt=timezone.now())
    row = unused.filter(token_hash=LoginToken.hash(token)).select_related("user").first()
    return row.user if row else None


def use_login_token(token: str) -> User | None:
    """The token's user, once: a second use, or a late one, gives None."""
    now = timezone.now()
    updated = LoginToken.objects.filter(
        token_hash=LoginToken.hash(token), used_at__isnull=True, expires_at__gt=now
    ).update(used_at=now)
    if not updated:
        return None
    return LoginToken.objects.select_related("user").get(token_hash=LoginToken.hash(token)).user


def add_annotator(study: Study, username: str, email: str = "") -> tuple[User, str | None, str]:
    """Create (or reuse) an annotator account, add it to the study; returns (user, password if
    just created, one-time login token)."""
    with transaction.atomic():
        user = User.objects.filter(username=username).first()
        password = None
        if user is None:
            password = new_password()
            user = User.objects.create_user(username=username, email=email, password=password)
        user.groups.add(annotators_group())
        study.annotators.add(user)
        token = login_token_for(user)
    return user, password, token


def invite_annotator(study: Study, email: str) -> User:
    """An account named after the address (rater@example.org: rater-example.org) joins the
    study, and the address gets a one-time login link."""
    local, _, domain = email.partition("@")
    user, _, token = add_annotator(study, f"{local[:100]}-{domain[:40]}", email)
    link = settings.SITE_URL.rstrip("/") + reverse("annotation:token_login", args=[token])
    send_mail(
        f"You are invited to annotate: {study.name}",
        f"Hello,\n\nyou have been invited to compare answers in the study {study.name}.\n"
        f"This link logs you in once (valid {LOGIN_TOKEN_DAYS} days): {link}\n",
        settings.DEFAULT_FROM_EMAIL,
        [email],
    )
    return user


def next_annotator_names(prefix: str, count: int) -> list[str]:
    taken = set(User.objects.filter(username__startswith=prefix).values_list("username", flat=True))
    names: list[str] = []
    i = 1
    while len(names) < count:
        name = f"{prefix}{i:03d}"
        if name not in taken:
            names.append(name)
        i += 1
    return names

"""Crowd platforms: a study's link that Prolific (or MTurk) participants arrive by, and the
participants it made. A participant is a user without a password, known by the platform's id."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models

from evalsite.annotation.models import Study
from evalsite.crowd.platforms import CHOICES as PLATFORM_CHOICES  # one object per platform
from evalsite.crowd.platforms import PROLIFIC, CrowdPlatform, platform


def new_token() -> str:
    return secrets.token_urlsafe(18)


def new_code() -> str:
    return secrets.token_hex(4).upper()


class CrowdLink(models.Model):
    """The study's address for a crowd platform and the rules a participant goes through."""

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="crowd_link")
    token = models.CharField(max_length=40, unique=True, default=new_token)
    platform = models.CharField(max_length=10, choices=PLATFORM_CHOICES, default=PROLIFIC.key)
    quota = models.PositiveSmallIntegerField(default=20, help_text="items each participant judges")
    screening_items = models.PositiveSmallIntegerField(
        default=0, help_text="the first N items are gold checks (0: no screening)"
    )
    screening_pass = models.PositiveSmallIntegerField(default=0, help_text="gold checks right to pass the screening")
    completion_code = models.CharField(max_length=40, default=new_code)
    screened_out_code = models.CharField(max_length=40, default=new_code)
    completion_url = models.CharField(
        max_length=300, blank=True, help_text="where a participant is sent at the end; {code} is replaced"
    )
    only_verified = models.BooleanField(
        default=False,
        help_text="a participant's votes count only once the platform's submissions list shows them (crowd reconcile)",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.get_platform_display()} link of {self.study}"

    @property
    def kind(self) -> CrowdPlatform:
        return platform(self.platform)

    def study_url(self, site: str) -> str:
        """The URL to paste into the platform (Prolific fills its {{%NAME%}} placeholders for each
        participant; MTurk adds its own parameters to an external question's URL)."""
        from django.urls import reverse

        return self.kind.study_url(site.rstrip("/") + reverse("crowd:arrive", args=[self.token]))

    def return_url(self, code: str) -> str:
        template = self.completion_url or self.kind.completion_url
        return template.replace("{code}", code) if template else ""


class Participant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "working"
        COMPLETED = "completed", "completed"
        SCREENED_OUT = "screened_out", "screened out"
        EXCLUDED = "excluded", "excluded"
        RETURNED = "returned", "returned"

    link = models.ForeignKey(CrowdLink, on_delete=models.CASCADE, related_name="participants")
    external_id = models.CharField(max_length=64)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="participant")
    platform_study = models.CharField(max_length=64, blank=True)
    session = models.CharField(max_length=64, blank=True)
    class PlatformCheck(models.TextChoices):
        PENDING = "pending", "not checked yet"
        KNOWN = "known", "on the platform's list"
        UNKNOWN = "unknown", "unverified: not on the platform's list"
        ACCEPTED = "accepted", "accepted by staff"

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    # what the platform's own submissions say of this id (crowd reconcile): anyone who sees the
    # link can make up a well-formed id, so an unknown one's votes are left out until staff accept it
    platform_check = models.CharField(max_length=8, choices=PlatformCheck.choices, default=PlatformCheck.PENDING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["link", "external_id"], name="participant_once_per_link")]

    def __str__(self) -> str:
        return f"{self.external_id} in {self.link.study}"

    @property
    def counts(self) -> bool:
        """Whether this participant's votes count, as far as the platform check goes: not if the
        platform does not know the id (until staff accept it), nor while unchecked on a link that
        counts only verified participants."""
        if self.platform_check == self.PlatformCheck.UNKNOWN:
            return False
        return not (self.platform_check == self.PlatformCheck.PENDING and self.link.only_verified)

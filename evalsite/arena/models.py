from django.conf import settings
from django.db import models

from evalsite.annotation.models import Comparison, Study
from evalsite.answering.models import Conversation
from evalsite.catalog.models import Prompt, System


class Battle(models.Model):
    """One person's prompt in an arena, answered by two of its systems (each in a conversation of
    its own, written by the live queue), and their vote. Which system is shown on the left is drawn
    per battle; the names reach the page only after the vote."""

    class Outcome(models.TextChoices):
        FIRST = "first", "the first system's answer is better"
        SECOND = "second", "the second system's answer is better"
        TIE = "tie", "neither is significantly better"
        BOTH_BAD = "both_bad", "both are bad (counted as a tie, reported apart)"

    class Review(models.TextChoices):
        NONE = "none", "counted without review"
        PENDING = "pending", "waiting for staff"
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="battles")
    person = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="battles")
    prompt = models.ForeignKey(Prompt, on_delete=models.SET_NULL, null=True, blank=True, related_name="battles")
    prompt_text = models.TextField(help_text="the person's first message, kept if staff reject the prompt")
    topic = models.CharField(max_length=50, blank=True)
    first_system = models.ForeignKey(System, on_delete=models.PROTECT, related_name="+")
    second_system = models.ForeignKey(System, on_delete=models.PROTECT, related_name="+")
    first_on_left = models.BooleanField()
    first_conversation = models.OneToOneField(Conversation, on_delete=models.PROTECT, related_name="+")
    second_conversation = models.OneToOneField(Conversation, on_delete=models.PROTECT, related_name="+")
    outcome = models.CharField(max_length=8, choices=Outcome.choices, blank=True)
    voted_at = models.DateTimeField(null=True, blank=True)
    review = models.CharField(max_length=8, choices=Review.choices, default=Review.NONE)
    comparison = models.OneToOneField(
        Comparison, on_delete=models.SET_NULL, null=True, blank=True, related_name="battle"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "person"], condition=models.Q(voted_at__isnull=True), name="one_open_battle"
            )
        ]

    def __str__(self) -> str:
        return f"{self.study} battle {self.pk}"

    @property
    def choice(self) -> str:
        """The vote as the person clicked it: a (the left answer), b, tie or both_bad; "" before."""
        if self.outcome in (self.Outcome.FIRST, self.Outcome.SECOND):
            return "a" if (self.outcome == self.Outcome.FIRST) == self.first_on_left else "b"
        return str(self.outcome)

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models

from evalsite.catalog.models import Prompt, PromptSet, Response, System
from evalsite.core.paper import LIMA_INSTRUCTIONS, Grade


class Outcome(models.TextChoices):
    CANDIDATE = "candidate", "candidate wins"
    BASELINE = "baseline", "baseline wins"
    TIE = "tie", "tie"


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "draft"
        OPEN = "open", "open"
        CLOSED = "closed", "closed"

    class AssignmentPolicy(models.TextChoices):
        UNIFORM = "uniform", "uniform: items in a random order"
        ADAPTIVE = "adaptive", "adaptive: the baseline known least well first"

    class Kind(models.TextChoices):
        PAIRWISE = "pairwise", "pairwise: the candidate beside a baseline (Figure 1)"
        RATING = "rating", "rating: one response at a time, Fail / Pass / Excellent (Figure 3)"
        RANKING = "ranking", "ranking: many systems in pairs on the same prompt, ranked with rank-sets"
        ARENA = "arena", "arena: people bring their own prompts, two anonymous systems answer, ranked"

    class RankingGoal(models.TextChoices):
        TOP = "top", "the top system"
        TOP2 = "top2", "the top two"
        TOP3 = "top3", "the top three"
        ORDER = "order", "the full order"

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.PAIRWISE)
    candidate = models.ForeignKey(System, on_delete=models.PROTECT, related_name="studies_as_candidate")
    baselines = models.ManyToManyField(System, related_name="studies_as_baseline")
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.PROTECT, related_name="studies")
    overlap = models.PositiveSmallIntegerField(default=1, help_text="annotators per comparison")
    gold_rate = models.FloatField(default=0.05, help_text="share of served items that are gold checks")
    instructions = models.TextField(default=LIMA_INSTRUCTIONS)
    claim_minutes = models.PositiveIntegerField(
        default=30, help_text="an unfinished claim returns to the pool after this"
    )
    too_fast_seconds = models.FloatField(default=8.0, help_text="judgments quicker than this are flagged")
    target_half_width = models.FloatField(
        null=True,
        blank=True,
        help_text="stop handing out items once every baseline's win share is known to +- this (anytime-valid)",
    )
    enough_at = models.DateTimeField(null=True, blank=True, help_text="when the study reached its target")
    # the judge job whose verdicts the stop rule reads, fixed when the target is set (or the first
    # finished job covering every comparison, recorded when it finishes), so that the rule is one
    # interval per baseline chosen before looking. An id, not a foreign key: judging sits above
    # this app (evalsite/dashboard/stopping.py resolves it).
    target_judge_job = models.PositiveIntegerField(
        null=True, blank=True, help_text="the judge job (id) the stop rule reads; empty: people alone"
    )
    assignment = models.CharField(
        max_length=10,
        choices=AssignmentPolicy.choices,
        default=AssignmentPolicy.UNIFORM,
        help_text="adaptive: each new item goes to the baseline whose win share is known least well",
    )
    sampling_rate = models.FloatField(
        null=True,
        blank=True,
        help_text="set by `study sample`: people vote on about this share of the comparisons, chosen where "
        "the judge is least sure and weighted back (active inference); empty: people may vote on every one",
    )
    review_prompts = models.BooleanField(
        default=False, help_text="an arena: a prompt counts only once staff approve it (the moderation queue)"
    )
    topics = models.JSONField(
        default=list, blank=True, help_text="an arena: the topics a person picks from (empty: any topic)"
    )
    ranking_goal = models.CharField(
        max_length=8,
        choices=RankingGoal.choices,
        blank=True,
        help_text="a ranking study: the question that stops it once its rank-sets settle it",
    )
    both_bad_choice = models.BooleanField(
        default=False,
        db_default=False,
        help_text="annotators get a fourth choice, 'both are bad': a tie, reported apart (an arena always has it)",
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    annotators = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="studies")
    excluded = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="excluded_from",
        help_text="their judgments are kept but left out of the results",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return self.name

    @property
    def offers_both_bad(self) -> bool:
        """Whether its annotators may answer "both are bad" (a tie marked so): an arena, or a study
        created with the choice."""
        return self.kind == self.Kind.ARENA or self.both_bad_choice


class Comparison(models.Model):
    """One prompt, the candidate's response and one baseline's (in a ranking study: any two of its
    systems' responses, the first named by first_system). Which is shown on the left is decided
    per assignment, not here."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="comparisons")
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="comparisons")
    baseline = models.ForeignKey(System, on_delete=models.PROTECT, related_name="+")
    candidate_response = models.ForeignKey(Response, on_delete=models.PROTECT, related_name="+")
    baseline_response = models.ForeignKey(Response, on_delete=models.PROTECT, related_name="+")
    is_gold = models.BooleanField(default=False)
    gold_better = models.CharField(max_length=10, choices=Outcome.choices, blank=True)
    slots_taken = models.PositiveSmallIntegerField(default=0, help_text="claimed or judged assignments")
    judgments_done = models.PositiveSmallIntegerField(default=0)
    # votes of annotators not excluded from the study, kept up to date by every judgment, so the
    # dashboard groups comparisons instead of scanning judgments
    votes_candidate = models.PositiveSmallIntegerField(default=0)
    votes_baseline = models.PositiveSmallIntegerField(default=0)
    votes_tie = models.PositiveSmallIntegerField(default=0)
    # every study walks its comparisons in one random order (draw_order, drawn when it starts), so
    # that what has been voted at any moment is a uniformly random part of each baseline's
    # comparisons, whatever order the prompt file came in. A sampled study (Study.sampling_rate)
    # also drew each for people's votes with probability sampling_probability (people_wanted),
    # fixed before the first vote; the others are known by the judge alone
    draw_order = models.PositiveIntegerField(null=True, blank=True)
    # when the comparison got the last of its ``study.overlap`` votes: only then does it count in
    # Figure 1, its intervals and the stop rule (a comparison counted at its first vote of three
    # would count two split votes as a tie), in this order
    completed_at = models.DateTimeField(null=True, blank=True)
    sampling_probability = models.FloatField(null=True, blank=True)
    people_wanted = models.BooleanField(default=True)
    # a ranking study's comparisons are pairs of any two of its systems: the first is the system of
    # candidate_response ("candidate" in the vote counters and the judge's verdicts means it);
    # empty in a pairwise study, where it is the study's candidate
    first_system = models.ForeignKey(System, on_delete=models.PROTECT, related_name="+", null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "prompt", "baseline"],
                condition=models.Q(first_system__isnull=True),
                name="comparison_unique",
            ),
            models.UniqueConstraint(
                fields=["study", "prompt", "first_system", "baseline"],
                condition=models.Q(first_system__isnull=False),
                name="ranking_pair_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["study", "is_gold", "slots_taken"]),
            models.Index(fields=["study", "draw_order"], name="comparison_draw_order"),
            models.Index(fields=["study", "completed_at"], name="comparison_completed"),
        ]

    def __str__(self) -> str:
        return f"{self.study} #{self.pk}"

    @property
    def complete(self) -> bool:
        return self.completed_at is not None


class Assignment(models.Model):
    class Status(models.TextChoices):
        CLAIMED = "claimed", "claimed"
        DONE = "done", "done"
        SKIPPED = "skipped", "skipped"
        FLAGGED = "flagged", "flagged"
        EXPIRED = "expired", "expired"

    class Flag(models.TextChoices):
        BROKEN = "broken", "broken (a response is empty, cut off or garbled)"
        UNSAFE = "unsafe", "unsafe or offensive content"

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments")
    # the comparison's study, kept here so that the database itself holds one open claim per
    # annotator and study (two tabs claiming at once get one item, not two)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    candidate_on_left = models.BooleanField(help_text="randomised per assignment and stored")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.CLAIMED)
    flag = models.CharField(max_length=8, choices=Flag.choices, blank=True)
    claimed_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    shown_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["comparison", "annotator"], name="assignment_once_per_annotator"),
            models.UniqueConstraint(
                fields=["study", "annotator"],
                condition=models.Q(status="claimed"),
                name="one_open_claim_per_annotator_and_study",
            ),
        ]
        indexes = [models.Index(fields=["annotator", "status"]), models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"assignment #{self.pk}"

    def outcome_for(self, choice: str) -> tuple[str, str]:
        """Map what the annotator clicked (a = left, b = right, tie) to (outcome, side picked)."""
        if choice == "tie":
            return Outcome.TIE, "none"
        left_wins = choice == "a"
        candidate_wins = left_wins == self.candidate_on_left
        return (Outcome.CANDIDATE if candidate_wins else Outcome.BASELINE), ("left" if left_wins else "right")


class HumanJudgment(models.Model):
    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="judgment")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="judgments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="judgments")
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    picked_side = models.CharField(max_length=5, help_text="left, right or none (tie)")
    reason = models.TextField(blank=True)
    seconds = models.FloatField(help_text="from the page being shown to the answer")
    # a database default too: the one-statement submit (answers.py) and the benches insert rows raw
    both_bad = models.BooleanField(
        default=False,
        db_default=False,
        help_text="a tie the person called 'both are bad' (an arena's fourth choice), reported apart",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["comparison", "outcome"]), models.Index(fields=["annotator"])]

    def __str__(self) -> str:
        return f"{self.annotator} on {self.comparison}: {self.outcome}"


class RatingItem(models.Model):
    """One response of a rating study's system, rated by ``study.overlap`` people, each of whom it
    was served to (a RatingClaim takes one of its ``overlap`` slots)."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="rating_items")
    response = models.ForeignKey(Response, on_delete=models.PROTECT, related_name="+")
    ratings_done = models.PositiveSmallIntegerField(default=0)
    slots_taken = models.PositiveSmallIntegerField(default=0, help_text="claimed or rated")

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["study", "response"], name="rating_item_once")]
        indexes = [models.Index(fields=["study", "ratings_done"])]

    def __str__(self) -> str:
        return f"{self.study} rating item #{self.pk}"


class RatingClaim(models.Model):
    """A rating item served to one person: only they may grade it, once, within the item's overlap."""

    class Status(models.TextChoices):
        CLAIMED = "claimed", "claimed"
        DONE = "done", "done"
        EXPIRED = "expired", "expired"

    item = models.ForeignKey(RatingItem, on_delete=models.CASCADE, related_name="claims")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rating_claims")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.CLAIMED)
    claimed_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "annotator"], name="rating_claim_once_per_annotator"),
            models.UniqueConstraint(
                fields=["study", "annotator"],
                condition=models.Q(status="claimed"),
                name="one_open_rating_claim_per_annotator",
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.annotator} on {self.item}: {self.status}"


class HumanRating(models.Model):
    item = models.ForeignKey(RatingItem, on_delete=models.CASCADE, related_name="ratings")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ratings")
    grade = models.CharField(max_length=10, choices=Grade.choices)
    safe = models.BooleanField(null=True, blank=True, help_text="prompts tagged safety: was the response safe")
    seconds = models.FloatField(help_text="from the page being shown to the answer")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "annotator"], name="one_rating_per_annotator")]

    def __str__(self) -> str:
        return f"{self.annotator} on {self.item}: {self.grade}"


class LoginToken(models.Model):
    """A one-time login link for an annotator (only its hash is stored)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="login_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"login link for {self.user}"

    @staticmethod
    def hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()


def studies_holding(response_ids: list[int]) -> dict[int, list[str]]:
    """Which of these responses are in a study that has opened (open or closed), and which."""
    held: dict[int, list[str]] = {}
    wanted = set(response_ids)
    rows = (
        Comparison.objects.filter(
            models.Q(candidate_response_id__in=response_ids) | models.Q(baseline_response_id__in=response_ids)
        )
        .exclude(study__status=Study.Status.DRAFT)
        .values_list("candidate_response_id", "baseline_response_id", "study__name", "study__status")
        .distinct()
    )
    for candidate, baseline, name, status in rows:
        for pk in (candidate, baseline):
            if pk in wanted:
                label = f"study {name} ({status})"
                if label not in held.setdefault(pk, []):
                    held[pk].append(label)
    return held

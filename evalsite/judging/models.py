from __future__ import annotations

import hashlib
import json
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from evalsite.annotation.models import Comparison, Outcome, Study
from evalsite.core.jobs import Job
from evalsite.judging.prompts import CONFIG_CHOICES
from evalsite.judging.rating_kinds import CHOICES as RATING_CHOICES
from generation.config import DIALECT_CHOICES


class JudgeConfig(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    model = models.CharField(max_length=200, default="gpt-4")
    base_url = models.CharField(max_length=300, default="https://api.openai.com/v1")
    api_key_env = models.CharField(
        max_length=100,
        blank=True,
        help_text="the variable holding the key; empty: no key, except OPENAI_API_KEY for OpenAI's own host",
    )
    dialect = models.CharField(
        max_length=10,
        choices=[(d, d) for d in DIALECT_CHOICES],
        default="auto",
        help_text="which request fields the server reads (auto: detected from base_url and /v1/models)",
    )
    template = models.CharField(max_length=10, choices=CONFIG_CHOICES, default="lima")
    temperature = models.FloatField(default=0.0)
    max_tokens = models.PositiveIntegerField(default=512)
    price_input_per_1k = models.DecimalField(max_digits=10, decimal_places=6, default=Decimal("0"))
    price_output_per_1k = models.DecimalField(max_digits=10, decimal_places=6, default=Decimal("0"))
    concurrency = models.PositiveSmallIntegerField(default=8)
    timeout = models.FloatField(default=120.0)
    max_retries = models.PositiveSmallIntegerField(default=5)
    is_local = models.BooleanField(
        default=False, help_text="a local model standing in for GPT-4: labelled 'local judge'"
    )

    class Method(models.TextChoices):
        TEXT = "text", "text: the judge writes its verdict, parsed strictly"
        LOGPROBS = "logprobs", "logprobs: the probabilities of a one-letter verdict (A / B / C)"
        SCORE = "score", "score: the same from a local model's one forward pass (serve_openai), no generation"

    method = models.CharField(max_length=8, choices=Method.choices, default=Method.TEXT)
    tie_margin = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="probability verdicts: a tie unless the winner leads the other answer by this much",
    )

    def __str__(self) -> str:
        return self.name

    @property
    def label(self) -> str:
        """How results are labelled: a local model is never called GPT-4."""
        return f"{self.name} (local judge)" if self.is_local else self.model

    @property
    def reads_probabilities(self) -> bool:
        return self.method != self.Method.TEXT

    @property
    def prompt_template(self) -> str:
        """The template a call renders: probability methods ask for one letter."""
        return "letter" if self.reads_probabilities else self.template

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        return (
            Decimal(input_tokens) * self.price_input_per_1k + Decimal(output_tokens) * self.price_output_per_1k
        ) / 1000


class JudgeCall(models.Model):
    """One judge call, cached: unique per (model, template, prompt, both answers in order,
    sampling). A row is reserved (pending) before the call is made, so two workers never pay
    for the same call twice."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        DONE = "done", "done"
        FAILED = "failed", "failed (API error)"

    key = models.CharField(max_length=64, unique=True)
    model = models.CharField(max_length=200)
    template = models.CharField(max_length=10)
    template_hash = models.CharField(max_length=16)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    reserved_at = models.DateTimeField()
    reserved_by = models.CharField(max_length=80, blank=True, help_text="job and attempt that reserved it")
    raw_output = models.TextField(blank=True)
    retry_output = models.TextField(blank=True, help_text="the answer after a format reminder, if one was needed")
    verdict = models.CharField(
        max_length=12, blank=True, help_text="first, second, tie; fail, pass, excellent; 1-6; empty: unreadable"
    )
    p_first = models.FloatField(null=True, blank=True, help_text="probability verdicts: P(the first answer)")
    p_second = models.FloatField(null=True, blank=True)
    p_tie = models.FloatField(null=True, blank=True)
    requests = models.PositiveIntegerField(
        default=0, help_text="HTTP requests that left for this call (retries and a crashed attempt's included)"
    )
    parse_error = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    latency_seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"judge call {self.key[:10]}"

    @staticmethod
    def make_key(
        config: JudgeConfig, template_hash: str, messages: list, first: str, second: str, template: str | None = None
    ) -> str:
        """Everything that changes the answer: the server (base_url) and what is sent to it (model,
        dialect, method, template and its text, sampling), both answers and their order."""
        payload = [
            config.base_url.rstrip("/"),
            config.model,
            config.dialect,
            config.method,
            template or config.prompt_template,
            template_hash,
            messages,
            first,
            second,
            config.temperature,
            config.max_tokens,
        ]
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class JudgeJob(Job):
    class Policy(models.TextChoices):
        TIE = "tie", "orders that disagree count as a tie"
        DROP = "drop", "orders that disagree are dropped"

    class OneOrder(models.TextChoices):
        DROP = "drop", "a comparison needs both orders readable"
        COUNT = "count", "one readable order decides alone"

    runner = "evalsite.judging.runner.run_judge_job"
    queue = "judge"
    progress_unit = "judgment"

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="judge_jobs")
    config = models.ForeignKey(JudgeConfig, on_delete=models.PROTECT, related_name="jobs")
    policy = models.CharField(max_length=4, choices=Policy.choices, default=Policy.TIE)
    one_order = models.CharField(max_length=5, choices=OneOrder.choices, default=OneOrder.DROP)
    jury = models.CharField(max_length=200, blank=True, help_text="the jury this job sits on (its members' names)")
    comparison_ids = models.JSONField(default=list, blank=True, help_text="a subset; empty means every comparison")
    budget = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    spend = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    estimate_tokens = models.PositiveBigIntegerField(default=0)
    estimate_cost = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    calls_made = models.PositiveIntegerField(default=0)
    cache_hits = models.PositiveIntegerField(default=0)
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)
    requests_sent = models.PositiveIntegerField(default=0, help_text="counted before each request leaves")
    requests_answered = models.PositiveIntegerField(default=0, help_text="counted when its answer is recorded")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"judge job #{self.pk}: {self.config} on {self.study}"

    def comparisons(self) -> models.QuerySet[Comparison]:
        rows = Comparison.objects.filter(study=self.study, is_gold=False)
        if self.comparison_ids:
            rows = rows.filter(pk__in=self.comparison_ids)
        return rows.select_related("prompt", "candidate_response", "baseline_response").order_by("pk")


class JudgeVerdict(models.Model):
    class Order(models.TextChoices):
        CANDIDATE_FIRST = "cand_first", "candidate shown as A"
        BASELINE_FIRST = "base_first", "baseline shown as A"

    job = models.ForeignKey(JudgeJob, on_delete=models.CASCADE, related_name="verdicts")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="judge_verdicts")
    order = models.CharField(max_length=10, choices=Order.choices)
    call = models.ForeignKey(JudgeCall, on_delete=models.PROTECT, related_name="verdicts")
    outcome = models.CharField(
        max_length=10, choices=Outcome.choices, blank=True, help_text="empty: unreadable or failed"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "comparison", "order"], name="verdict_once_per_order")]

    def __str__(self) -> str:
        return f"{self.job} {self.comparison} {self.order}: {self.outcome or 'failed'}"


LENGTH_BINS = (-500, -100, 100, 500)  # candidate minus baseline, in characters: five bins


def length_bin(candidate_text: str, baseline_text: str) -> int:
    difference = len(candidate_text) - len(baseline_text)
    return sum(difference > edge for edge in LENGTH_BINS)


class JudgeOutcome(models.Model):
    """Both orders of one comparison in one job, side by side, kept up to date as verdicts are
    recorded: the dashboard groups these rows instead of scanning every verdict and call."""

    job = models.ForeignKey(JudgeJob, on_delete=models.CASCADE, related_name="outcomes")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="+")
    baseline = models.ForeignKey("catalog.System", on_delete=models.CASCADE, related_name="+")
    length_bin = models.PositiveSmallIntegerField(help_text="0-4: candidate much shorter ... much longer")
    cand_first = models.CharField(max_length=10, blank=True, help_text="outcome when the candidate was shown first")
    base_first = models.CharField(max_length=10, blank=True, help_text="outcome when the baseline was shown first")
    cand_first_verdict = models.CharField(max_length=6, default="-", help_text="first/second/tie, '' unreadable, error")
    base_first_verdict = models.CharField(max_length=6, default="-", help_text="'-': not judged yet")
    # probability verdicts, per order: P(candidate better) and P(tie)
    cand_first_p_win = models.FloatField(null=True, blank=True)
    cand_first_p_tie = models.FloatField(null=True, blank=True)
    base_first_p_win = models.FloatField(null=True, blank=True)
    base_first_p_tie = models.FloatField(null=True, blank=True)
    # what the comparison counts as, by the job's rules (judging.combine): the figures group by it
    outcome = models.CharField(max_length=10, blank=True, help_text="candidate / baseline / tie; empty: not counted")
    dropped = models.CharField(max_length=40, blank=True, help_text="why it is not counted, if it is not")
    p_win = models.FloatField(null=True, blank=True, help_text="P(candidate better), averaged over both orders")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "comparison"], name="judge_outcome_once")]
        indexes = [models.Index(fields=["job", "baseline"])]

    def __str__(self) -> str:
        return f"{self.job} {self.comparison}: {self.cand_first or '-'} / {self.base_first or '-'}"


def outcome_of(verdict: str, order: str) -> str:
    """Map the judge's first/second/tie to candidate/baseline/tie given the order shown."""
    if verdict == "tie":
        return Outcome.TIE
    if verdict not in ("first", "second"):
        return ""
    first_is_candidate = order == JudgeVerdict.Order.CANDIDATE_FIRST
    return Outcome.CANDIDATE if (verdict == "first") == first_is_candidate else Outcome.BASELINE


class RatingJob(Job):
    """Absolute ratings of one system's responses by the judge: Fail / Pass / Excellent
    (Figures 3 and 7), the 1-6 helpfulness Likert score, n samples per response (Figures 5, 6), or
    safe / unsafe on the prompts tagged safety."""

    runner = "evalsite.judging.runner.run_rating_job"
    queue = "judge"
    progress_unit = "rating"

    config = models.ForeignKey(JudgeConfig, on_delete=models.PROTECT, related_name="rating_jobs")
    system = models.ForeignKey("catalog.System", on_delete=models.PROTECT, related_name="rating_jobs")
    prompt_set = models.ForeignKey("catalog.PromptSet", on_delete=models.PROTECT, related_name="rating_jobs")
    kind = models.CharField(max_length=6, choices=RATING_CHOICES, help_text="evalsite/judging/rating_kinds.py")
    samples = models.PositiveSmallIntegerField(default=1, help_text="ratings per response (the paper: 5 for Likert)")
    spend = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    calls_made = models.PositiveIntegerField(default=0)
    cache_hits = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"rating job #{self.pk}: {self.config} rates {self.system} ({self.kind})"


class Rating(models.Model):
    job = models.ForeignKey(RatingJob, on_delete=models.CASCADE, related_name="ratings")
    response = models.ForeignKey("catalog.Response", on_delete=models.CASCADE, related_name="ratings")
    sample = models.PositiveSmallIntegerField(default=0)
    call = models.ForeignKey(JudgeCall, on_delete=models.PROTECT, related_name="ratings")
    value = models.CharField(
        max_length=12, blank=True, help_text="fail/pass/excellent, 1-6 or safe/unsafe; empty: unreadable"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "response", "sample"], name="rating_once_per_sample")]

    def __str__(self) -> str:
        return f"{self.response} #{self.sample}: {self.value or 'failed'}"

from __future__ import annotations

import hashlib
import json

from django.core.exceptions import ValidationError
from django.db import models

from evalsite.core.safe_html import render_markdown
from generation import dialects
from generation.config import BACKENDS, ConfigError, SamplingConfig, validate_backend_config

KNOWN_TAGS = ("ood", "safety", "multi_turn")
ROLES = ("system", "user", "assistant")


def validate_messages(messages) -> None:
    """A prompt is a conversation that ends with the user's turn."""
    if not isinstance(messages, list) or not messages:
        raise ValidationError("messages must be a non-empty list of {role, content}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise ValidationError(f"messages[{i}] must be an object with exactly 'role' and 'content'")
        if message["role"] not in ROLES:
            raise ValidationError(f"messages[{i}].role must be one of {', '.join(ROLES)}")
        if not isinstance(message["content"], str) or not message["content"].strip():
            raise ValidationError(f"messages[{i}].content must be a non-empty string")
    if messages[-1]["role"] != "user":
        raise ValidationError("the last message must be the user's")


def messages_key(messages: list[dict]) -> str:
    return hashlib.sha1(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class PromptSet(models.Model):
    class Purpose(models.TextChoices):
        TEST = "test", "test"
        DEV = "dev", "dev"
        TRAIN = "train", "train (prompts with reference answers)"

    name = models.SlugField(max_length=100, unique=True)
    purpose = models.CharField(max_length=8, choices=Purpose.choices, default=Purpose.TEST)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Prompt(models.Model):
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.CASCADE, related_name="prompts")
    external_id = models.CharField(
        max_length=100, help_text="The id in the imported file, or a hash of the messages when it had none."
    )
    messages = models.JSONField(validators=[validate_messages])
    source = models.CharField(max_length=100, blank=True, db_index=True)
    tags = models.JSONField(default=list, blank=True)
    reference_answer = models.TextField(blank=True, help_text="An answer that came with the prompt, if any.")
    follow_ups = models.JSONField(
        default=list,
        blank=True,
        help_text="Later user turns (MT-bench's second question), each asked after the system's own answer.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["prompt_set", "id"]
        constraints = [
            models.UniqueConstraint(fields=["prompt_set", "external_id"], name="prompt_unique_external_id"),
        ]

    def __str__(self) -> str:
        return f"{self.prompt_set.name}/{self.external_id}"

    @property
    def text(self) -> str:
        """The user's last turn: what a prompt is matched on and shown as."""
        return self.messages[-1]["content"]

    @property
    def is_multi_turn(self) -> bool:
        return sum(1 for m in self.messages if m["role"] == "user") > 1


class System(models.Model):
    class Kind(models.TextChoices):
        CANDIDATE = "candidate", "candidate"
        BASELINE = "baseline", "baseline"

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.BASELINE)
    backend = models.CharField(max_length=20, choices=[(b, b) for b in BACKENDS])
    backend_config = models.JSONField(default=dict, blank=True)
    sampling = models.JSONField(default=dict, blank=True, help_text="Overrides of LIMA's decoding defaults.")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = {}
        try:
            # Paths are checked when a job starts (the web host may not hold the model files).
            self.backend_config = validate_backend_config(self.backend, self.backend_config, check_paths=False)
        except ConfigError as exc:
            errors["backend_config"] = str(exc)
        try:
            SamplingConfig.from_dict(self.sampling)
        except (ConfigError, TypeError) as exc:
            errors["sampling"] = str(exc)
        if errors:
            raise ValidationError(errors)

    @property
    def sampling_config(self) -> SamplingConfig:
        return SamplingConfig.from_dict(self.sampling)

    @property
    def dialect(self) -> str | None:
        """The server's dialect (openai_compat systems; 'auto' until detected), else None."""
        return self.backend_config.get("dialect", dialects.AUTO) if self.backend == "openai_compat" else None

    @property
    def sampling_notes(self) -> list[str]:
        """What of its sampling this system's server is not sent, or is sent under another name."""
        if self.dialect in (None, dialects.AUTO):
            return []
        return dialects.describe(str(self.dialect), self.sampling_config)


class Response(models.Model):
    system = models.ForeignKey(System, on_delete=models.CASCADE, related_name="responses")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="responses")
    sample_index = models.PositiveSmallIntegerField(default=0)
    text = models.TextField(blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    latency_seconds = models.FloatField(null=True, blank=True)
    finish_reason = models.CharField(max_length=40, blank=True, help_text="stop, length, error, imported, ...")
    error = models.TextField(blank=True)
    notes = models.TextField(blank=True, help_text="e.g. the history was trimmed to fit the context")
    metadata = models.JSONField(default=dict, blank=True)
    turns = models.JSONField(
        default=list,
        blank=True,
        help_text="the prompt's follow-ups asked after this answer, each after the system's own previous "
        "answer: [{user, assistant, finish_reason}, ...]",
    )
    # the text as sanitised HTML, rendered once (a long answer takes milliseconds to render, and
    # the comparison page shows each answer to several annotators); NULL until first needed
    html = models.TextField(null=True, blank=True, editable=False)
    # the answer's style (stats.evidence.STYLE_FEATURES), counted when its HTML is rendered, so that
    # style control reads four numbers instead of every answer's text: its length in tokens (the
    # completion's count, else characters / 4), Markdown headers, list items and bold spans
    style_length = models.PositiveIntegerField(null=True, blank=True, editable=False)
    style_headers = models.PositiveIntegerField(null=True, blank=True, editable=False)
    style_lists = models.PositiveIntegerField(null=True, blank=True, editable=False)
    style_bold = models.PositiveIntegerField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["prompt", "system", "sample_index"]
        constraints = [
            models.UniqueConstraint(fields=["system", "prompt", "sample_index"], name="response_unique_per_sample"),
        ]

    def __str__(self) -> str:
        return f"{self.system.name} on {self.prompt} #{self.sample_index}"

    @property
    def ok(self) -> bool:
        return not self.error

    def conversation(self) -> list[dict[str, str]]:
        """The whole conversation: the prompt, this answer, then each follow-up and its answer."""
        messages = [*self.prompt.messages, {"role": "assistant", "content": self.text}]
        for turn in self.turns:
            messages += [{"role": "user", "content": turn["user"]}, {"role": "assistant", "content": turn["assistant"]}]
        return messages

    def rendered_html(self) -> str:
        """The text as sanitised HTML; rendered and stored the first time it is asked for."""
        if self.html is None:
            self.render()
            Response.objects.filter(pk=self.pk).update(html=self.html, **{f: getattr(self, f) for f in STYLE_FIELDS})
        return self.html  # type: ignore[return-value]

    def render(self) -> None:
        """Its HTML and the style counted in it (not saved)."""
        self.html = render_markdown(self.text)
        self.style_length, self.style_headers, self.style_lists, self.style_bold = self.style()

    def style(self) -> tuple[int, int, int, int]:
        """Its STYLE_FEATURES as ``render`` counts them (from its HTML, rendered here if it has
        none yet; nothing is saved)."""
        html = self.html if self.html is not None else render_markdown(self.text)
        tokens = self.completion_tokens
        return (tokens if tokens is not None else len(self.text) // CHARS_PER_TOKEN, *style_counts(html))


CHARS_PER_TOKEN = 4  # a length in tokens estimated from characters, where the response has no count
STYLE_FIELDS = ("style_length", "style_headers", "style_lists", "style_bold")
STYLE_TAGS = (("h1", "h2", "h3", "h4", "h5", "h6"), ("li",), ("strong",))  # headers, list items, bold


def style_counts(html: str) -> tuple[int, int, int]:
    """How often the rendered HTML opens a header, a list item, a bold span."""
    return tuple(sum(html.count(f"<{tag}") for tag in tags) for tags in STYLE_TAGS)  # type: ignore[return-value]


def render_responses(responses: models.QuerySet[Response], batch: int = 500) -> int:
    """Render and store the HTML (and the style counted in it) of the responses that have none
    yet (a study does it for its responses when it opens, so no annotator waits for it). Returns
    how many were rendered."""
    done = 0
    pending = responses.filter(html__isnull=True).only("pk", "text", "completion_tokens").order_by("pk")
    while rows := list(pending[:batch]):
        for row in rows:
            row.render()
        Response.objects.bulk_update(rows, ["html", *STYLE_FIELDS])
        done += len(rows)
    return done

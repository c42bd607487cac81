from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from evalsite.judging.models import JudgeConfig
from evalsite.judging.prompts import CONFIG_CHOICES
from generation.config import DIALECT_CHOICES

# option -> model field; each option given to `add` or `edit` sets its field
FIELDS = {
    "model": "model",
    "base_url": "base_url",
    "api_key_env": "api_key_env",
    "dialect": "dialect",
    "template": "template",
    "max_tokens": "max_tokens",
    "price_in": "price_input_per_1k",
    "price_out": "price_output_per_1k",
    "concurrency": "concurrency",
    "method": "method",
    "tie_margin": "tie_margin",
    "local": "is_local",
}


def add_field_options(parser, *, defaults: bool) -> None:
    """The options of `add` (with their defaults) and of `edit` (none: only what is given changes)."""

    def default(value):
        return value if defaults else None

    parser.add_argument("--model", default=default("gpt-4"))
    parser.add_argument("--base-url", default=default("https://api.openai.com/v1"))
    parser.add_argument(
        "--api-key-env",
        default=default(""),
        help="the variable holding the key; without it no key is sent, except OPENAI_API_KEY to OpenAI's own host",
    )
    parser.add_argument("--dialect", choices=DIALECT_CHOICES, default=default("auto"))
    parser.add_argument("--template", choices=[name for name, _ in CONFIG_CHOICES], default=default("lima"))
    parser.add_argument("--max-tokens", type=int, default=default(512))
    parser.add_argument("--price-in", default=default("0"), help="price per 1K input tokens")
    parser.add_argument("--price-out", default=default("0"), help="price per 1K output tokens")
    parser.add_argument("--concurrency", type=int, default=default(8))
    parser.add_argument(
        "--method",
        choices=JudgeConfig.Method.values,
        default=default("text"),
        help="text: parse the judge's words; logprobs: the probabilities of a one-letter verdict (OpenAI, vLLM, "
        "llama.cpp); score: the same from serve_openai, which gives exactly the labels' probabilities",
    )
    parser.add_argument(
        "--tie-margin", type=float, default=default(0.1), help="probability verdicts: a tie unless one leads by this"
    )
    if defaults:
        parser.add_argument("--local", action="store_true", help="a local model: labelled 'local judge', never GPT-4")
    else:
        parser.add_argument("--local", action="store_true", default=None, help="label it 'local judge'")
        parser.add_argument("--not-local", dest="local", action="store_false", help="label it by its model")


class Command(BaseCommand):
    help = "Add, edit, remove or list judge configurations (model, base_url, key variable, dialect, prices)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="a new judge")
        add.add_argument("name")
        add_field_options(add, defaults=True)
        edit = sub.add_parser("edit", help="change the given fields of a judge")
        edit.add_argument("name")
        add_field_options(edit, defaults=False)
        remove = sub.add_parser("remove", help="remove a judge that has judged nothing")
        remove.add_argument("name")
        sub.add_parser("list")

    def handle(self, *args, **opts):
        getattr(self, f"handle_{opts['action']}")(opts)

    def handle_list(self, opts):
        for c in JudgeConfig.objects.order_by("name"):
            key = c.api_key_env or "-"
            self.stdout.write(
                f"{c.name:<24} {c.label:<32} {c.prompt_template:<8} {c.method:<8} {c.dialect:<9} "
                f"key:{key:<16} {c.base_url}"
            )

    def handle_add(self, opts):
        if JudgeConfig.objects.filter(name=opts["name"]).exists():
            raise CommandError(f"a judge config named {opts['name']!r} exists; change it with judge_config edit")
        config = self._apply(JudgeConfig(name=opts["name"]), opts)
        self.stdout.write(self.style.SUCCESS(f"added judge config {config.name} ({config.label})"))

    def handle_edit(self, opts):
        config = self._find(opts["name"])
        if all(opts[option] is None for option in FIELDS):
            raise CommandError("nothing to change: give at least one option (see judge_config edit --help)")
        config = self._apply(config, opts)
        self.stdout.write(self.style.SUCCESS(f"changed judge config {config.name} ({config.label})"))

    def handle_remove(self, opts):
        config = self._find(opts["name"])
        jobs = config.jobs.count()
        if jobs:
            raise CommandError(
                f"judge config {config.name} has {jobs} judge job(s); its verdicts refer to it, so it stays "
                "(edit it instead)"
            )
        if config.rating_jobs.exists():
            raise CommandError(f"judge config {config.name} has rating jobs; it stays (edit it instead)")
        config.delete()
        self.stdout.write(self.style.SUCCESS(f"removed judge config {opts['name']}"))

    def _find(self, name: str) -> JudgeConfig:
        try:
            return JudgeConfig.objects.get(name=name)
        except JudgeConfig.DoesNotExist:
            raise CommandError(f"no judge config named {name!r} (judge_config list shows them)") from None

    def _apply(self, config: JudgeConfig, opts) -> JudgeConfig:
        for option, field in FIELDS.items():
            value = opts[option]
            if value is None:
                continue
            if option in ("price_in", "price_out"):
                try:
                    value = Decimal(value)
                except InvalidOperation:
                    raise CommandError(f"--{option.replace('_', '-')} must be a number, not {value!r}") from None
            setattr(config, field, value)
        try:
            config.full_clean()
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        config.save()
        return config

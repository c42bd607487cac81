from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from evalsite.judging.models import JudgeConfig


class Command(BaseCommand):
    help = "Add or list judge configurations (model, base_url, key variable, template, prices)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add")
        add.add_argument("name")
        add.add_argument("--model", default="gpt-4")
        add.add_argument("--base-url", default="https://api.openai.com/v1")
        add.add_argument("--api-key-env", default="OPENAI_API_KEY")
        add.add_argument("--template", choices=JudgeConfig.Template.values, default="lima")
        add.add_argument("--max-tokens", type=int, default=512)
        add.add_argument("--price-in", default="0", help="price per 1K input tokens")
        add.add_argument("--price-out", default="0", help="price per 1K output tokens")
        add.add_argument("--concurrency", type=int, default=8)
        add.add_argument("--local", action="store_true", help="a local model: labelled 'local judge', never GPT-4")
        sub.add_parser("list")

    def handle(self, *args, **opts):
        if opts["action"] == "list":
            for c in JudgeConfig.objects.order_by("name"):
                self.stdout.write(f"{c.name:<24} {c.label:<32} {c.template:<8} {c.base_url}")
            return
        try:
            prices = Decimal(opts["price_in"]), Decimal(opts["price_out"])
        except InvalidOperation:
            raise CommandError("--price-in and --price-out must be numbers") from None
        config = JudgeConfig(
            name=opts["name"],
            model=opts["model"],
            base_url=opts["base_url"],
            api_key_env=opts["api_key_env"],
            template=opts["template"],
            max_tokens=opts["max_tokens"],
            price_input_per_1k=prices[0],
            price_output_per_1k=prices[1],
            concurrency=opts["concurrency"],
            is_local=opts["local"],
        )
        try:
            config.full_clean()
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        config.save()
        self.stdout.write(self.style.SUCCESS(f"added judge config {config.name} ({config.label})"))

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count

from evalsite.catalog.models import Response, System
from evalsite.generations.models import GenerationJob
from generation.backends import preflight
from generation.config import ConfigError


def parse_json(text: str | None, what: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{what} is not valid JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise CommandError(f"{what} must be a JSON object")
    return value


class Command(BaseCommand):
    help = "Register, list and inspect systems (the candidate and the baselines)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="register a system")
        add.add_argument("name")
        add.add_argument("--backend", choices=["hf_local", "openai_compat", "imported"], required=True)
        add.add_argument("--kind", choices=["candidate", "baseline"], default="baseline")
        add.add_argument("--model-path", help="hf_local: model folder, folder with a GGUF file, or a .gguf file")
        add.add_argument("--gguf-file", help="hf_local: the GGUF file's name inside --model-path")
        add.add_argument("--base-url", help="openai_compat: e.g. https://api.openai.com/v1")
        add.add_argument("--model", help="openai_compat: the model name the server expects")
        add.add_argument("--api", choices=["chat", "completions"], help="openai_compat: which API (default chat)")
        add.add_argument("--api-key-env", help="openai_compat: the environment variable holding the key")
        add.add_argument("--concurrency", type=int, help="openai_compat: requests in flight at once")
        add.add_argument("--config", help="more backend config as JSON (merged)")
        add.add_argument("--sampling", help="sampling overrides as JSON, e.g. '{\"temperature\": 0}'")
        add.add_argument("--description", default="")
        sub.add_parser("list", help="list systems")
        show = sub.add_parser("show", help="one system in full")
        show.add_argument("name")

    def handle(self, *args, **opts):
        getattr(self, f"handle_{opts['action']}")(opts)

    def handle_add(self, opts):
        if System.objects.filter(name=opts["name"]).exists():
            raise CommandError(f"a system named {opts['name']!r} exists; pick another name")
        config = parse_json(opts["config"], "--config")
        for flag, key in (
            ("model_path", "model_path"),
            ("gguf_file", "gguf_file"),
            ("base_url", "base_url"),
            ("model", "model"),
            ("api", "api"),
            ("api_key_env", "api_key_env"),
            ("concurrency", "concurrency"),
        ):
            if opts[flag] is not None:
                config[key] = opts[flag]
        system = System(
            name=opts["name"],
            kind=opts["kind"],
            backend=opts["backend"],
            backend_config=config,
            sampling=parse_json(opts["sampling"], "--sampling"),
            description=opts["description"],
        )
        try:
            system.full_clean()
            if system.backend != "imported":
                system.backend_config = preflight(system.backend, system.backend_config)
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
            raise CommandError(problems) from exc
        except ConfigError as exc:
            raise CommandError(str(exc)) from exc
        system.save()
        self.stdout.write(self.style.SUCCESS(f"added {system.kind} {system.name} ({system.backend})"))

    def handle_list(self, opts):
        systems = System.objects.annotate(n=Count("responses")).order_by("-kind", "name")
        if not systems:
            self.stdout.write("no systems yet: manage.py systems add NAME --backend ...")
            return
        self.stdout.write(f"{'name':<32} {'kind':<10} {'backend':<14} responses")
        for s in systems:
            self.stdout.write(f"{s.name:<32} {s.kind:<10} {s.backend:<14} {s.n}")

    def handle_show(self, opts):
        try:
            system = System.objects.get(name=opts["name"])
        except System.DoesNotExist:
            raise CommandError(f"no system named {opts['name']!r}") from None
        self.stdout.write(f"name:     {system.name}\nkind:     {system.kind}\nbackend:  {system.backend}")
        self.stdout.write(f"config:   {json.dumps(system.backend_config)}")
        self.stdout.write(f"sampling: {json.dumps(system.sampling_config.to_dict())}")
        if system.description:
            self.stdout.write(f"about:    {system.description}")
        per_set = (
            Response.objects.filter(system=system)
            .values("prompt__prompt_set__name")
            .annotate(n=Count("id"))
            .order_by("prompt__prompt_set__name")
        )
        for row in per_set:
            self.stdout.write(f"responses on {row['prompt__prompt_set__name']}: {row['n']}")
        for job in GenerationJob.objects.filter(system=system)[:5]:
            self.stdout.write(f"job #{job.pk} on {job.prompt_set}: {job.status} {job.status_detail}")

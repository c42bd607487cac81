import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count

from evalsite.answering.models import GenerationJob
from evalsite.catalog.models import Response, System
from generation.backends import preflight
from generation.config import DIALECT_CHOICES, WEIGHTS, ConfigError

# option -> backend_config key
CONFIG_OPTIONS = (
    ("model_path", "model_path"),
    ("gguf_file", "gguf_file"),
    ("weights", "weights"),
    ("base_url", "base_url"),
    ("model", "model"),
    ("api", "api"),
    ("api_key_env", "api_key_env"),
    ("dialect", "dialect"),
    ("concurrency", "concurrency"),
)


def add_config_options(parser) -> None:
    parser.add_argument("--model-path", help="hf_local: model folder, folder with a GGUF file, or a .gguf file")
    parser.add_argument("--gguf-file", help="hf_local: the GGUF file's name inside --model-path")
    parser.add_argument(
        "--weights", choices=WEIGHTS, help="hf_local: int4 keeps the linear layers at 4 bits on CPU (converted once)"
    )
    parser.add_argument("--base-url", help="openai_compat: e.g. https://api.openai.com/v1")
    parser.add_argument("--model", help="openai_compat: the model name the server expects")
    parser.add_argument("--api", choices=["chat", "completions"], help="openai_compat: which API (default chat)")
    parser.add_argument(
        "--api-key-env",
        help="openai_compat: the variable holding the key (without it no key is sent, except to OpenAI's own host)",
    )
    parser.add_argument(
        "--dialect",
        choices=DIALECT_CHOICES,
        help="openai_compat: which sampling fields the server reads (default auto: detected when added)",
    )
    parser.add_argument("--concurrency", type=int, help="openai_compat: requests in flight at once")
    parser.add_argument("--config", help="more backend config as JSON (merged)")
    parser.add_argument("--sampling", help="sampling overrides as JSON, e.g. '{\"temperature\": 0}'")


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
        add_config_options(add)
        add.add_argument("--description", default="")
        edit = sub.add_parser("edit", help="change the given settings of a system")
        edit.add_argument("name")
        edit.add_argument("--kind", choices=["candidate", "baseline"])
        add_config_options(edit)
        edit.add_argument("--description")
        sub.add_parser("list", help="list systems")
        show = sub.add_parser("show", help="one system in full")
        show.add_argument("name")

    def handle(self, *args, **opts):
        getattr(self, f"handle_{opts['action']}")(opts)

    def handle_add(self, opts):
        if System.objects.filter(name=opts["name"]).exists():
            raise CommandError(f"a system named {opts['name']!r} exists; pick another name")
        system = System(
            name=opts["name"],
            kind=opts["kind"],
            backend=opts["backend"],
            backend_config=self._config(parse_json(opts["config"], "--config"), opts),
            sampling=parse_json(opts["sampling"], "--sampling"),
            description=opts["description"],
        )
        self._check_and_save(system)
        self.stdout.write(self.style.SUCCESS(f"added {system.kind} {system.name} ({system.backend})"))
        self._write_notes(system)

    def handle_edit(self, opts):
        system = self._find(opts["name"])
        config = self._config({**system.backend_config, **parse_json(opts["config"], "--config")}, opts)
        changed = config != system.backend_config
        system.backend_config = config
        if opts["sampling"] is not None:
            system.sampling = {**system.sampling, **parse_json(opts["sampling"], "--sampling")}
            changed = True
        for field in ("kind", "description"):
            if opts[field] is not None:
                setattr(system, field, opts[field])
                changed = True
        if not changed:
            raise CommandError("nothing to change: give at least one option (see systems edit --help)")
        self._check_and_save(system)
        self.stdout.write(self.style.SUCCESS(f"changed {system.name}"))
        made = system.responses.count()
        if made:
            self.stdout.write(f"{made} response(s) were made with the earlier settings; they are kept as they are")
        self._write_notes(system)

    def _config(self, config: dict, opts) -> dict:
        for flag, key in CONFIG_OPTIONS:
            if opts[flag] is not None:
                config[key] = opts[flag]
        return config

    def _find(self, name: str) -> System:
        try:
            return System.objects.get(name=name)
        except System.DoesNotExist:
            raise CommandError(f"no system named {name!r}") from None

    def _write_notes(self, system: System) -> None:
        if system.dialect:
            self.stdout.write(f"dialect:  {system.dialect}")
        for note in system.sampling_notes:
            self.stdout.write(f"sampling: {note}")

    def _check_and_save(self, system: System) -> None:
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

    def handle_list(self, opts):
        systems = System.objects.annotate(n=Count("responses")).order_by("-kind", "name")
        if not systems:
            self.stdout.write("no systems yet: manage.py systems add NAME --backend ...")
            return
        self.stdout.write(f"{'name':<32} {'kind':<10} {'backend':<14} responses")
        for s in systems:
            self.stdout.write(f"{s.name:<32} {s.kind:<10} {s.backend:<14} {s.n}")

    def handle_show(self, opts):
        system = self._find(opts["name"])
        self.stdout.write(f"name:     {system.name}\nkind:     {system.kind}\nbackend:  {system.backend}")
        self.stdout.write(f"config:   {json.dumps(system.backend_config)}")
        self.stdout.write(f"sampling: {json.dumps(system.sampling_config.to_dict())}")
        self._write_notes(system)
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

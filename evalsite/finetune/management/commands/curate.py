from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evalsite.catalog.models import System
from evalsite.finetune.services import TrainingError, save_curation, table_1
from generation.bundled import BUNDLED_SYSTEM_NAME
from training.curation.curate import SourceSpec, curate
from training.curation.sources import REDDIT_SUBREDDITS, CurationError


def stack_spec(value: str) -> SourceSpec:
    """PATH:SITE[:stem|other]"""
    parts = value.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise CommandError(f"--stackexchange takes PATH:SITE[:stem|other], not {value!r}")
    return SourceSpec("stackexchange", (Path(parts[0]),), site=parts[1], group=parts[2] if len(parts) == 3 else "stem")


def quota(value: str) -> tuple[str, int]:
    source, _, n = value.partition("=")
    if not source or not n.isdigit():
        raise CommandError(f"--quota takes SOURCE=N (e.g. stackexchange_stem=200), not {value!r}")
    return source, int(n)


class Command(BaseCommand):
    help = (
        "Curate a LIMA-style training set from Stack Exchange dumps, wikiHow, Reddit, the LIMA JSONL or our JSONL, "
        "with the paper's filters, temperature sampling across exchanges and per-source quotas."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="the dataset's name")
        parser.add_argument("--description", default="")
        parser.add_argument("--stackexchange", action="append", default=[], metavar="POSTS.XML:SITE[:stem|other]")
        parser.add_argument("--wikihow", action="append", default=[], metavar="CSV")
        parser.add_argument(
            "--reddit",
            action="append",
            default=[],
            metavar="NDJSON",
            help="Pushshift / Arctic Shift submissions (RS) and comments (RC) files, plain, .zst or .gz",
        )
        parser.add_argument(
            "--subreddit",
            action="append",
            default=[],
            help=f"a subreddit to read (repeatable; default: {', '.join(REDDIT_SUBREDDITS)})",
        )
        parser.add_argument("--lima", action="append", default=[], metavar="JSONL", help="GAIR/lima train.jsonl")
        parser.add_argument("--jsonl", action="append", default=[], metavar="JSONL", help="our format")
        parser.add_argument("--quota", action="append", default=[], metavar="SOURCE=N")
        parser.add_argument("--temperature", type=float, default=3.0, help="sampling across exchanges (paper: 3)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--tokenizer", default=BUNDLED_SYSTEM_NAME, help="system whose tokenizer counts tokens")
        parser.add_argument("--replace", action="store_true", help="rebuild a dataset of that name")

    def handle(self, *args, **opts):
        specs = [stack_spec(v) for v in opts["stackexchange"]]
        specs += [SourceSpec("wikihow", (Path(p),)) for p in opts["wikihow"]]
        if opts["reddit"]:
            subreddits = tuple(opts["subreddit"]) or REDDIT_SUBREDDITS
            specs.append(SourceSpec("reddit", tuple(Path(p) for p in opts["reddit"]), subreddits=subreddits))
        elif opts["subreddit"]:
            raise CommandError("--subreddit applies to --reddit files; give those too")
        specs += [SourceSpec("lima", (Path(p),)) for p in opts["lima"]]
        specs += [SourceSpec("jsonl", (Path(p),)) for p in opts["jsonl"]]
        if not specs:
            raise CommandError("give at least one source (--stackexchange, --wikihow, --reddit, --lima or --jsonl)")
        quotas = dict(quota(v) for v in opts["quota"])
        try:
            result = curate(specs, quotas, opts["temperature"], opts["seed"])
        except CurationError as exc:
            raise CommandError(f"{exc} (nothing was saved)") from exc
        for line in result.describe():
            self.stdout.write(line)
        try:
            dataset = save_curation(
                opts["name"],
                result,
                description=opts["description"],
                inputs=[s.label for s in specs],
                settings_used={"temperature": opts["temperature"], "seed": opts["seed"], "quotas": quotas},
                tokenizer=System.objects.filter(name=opts["tokenizer"]).first(),
                replace=opts["replace"],
            )
        except TrainingError as exc:
            raise CommandError(f"{exc} (nothing was saved)") from exc
        self.stdout.write(self.style.SUCCESS(f"dataset {dataset.name}: {len(result.kept)} examples"))
        self.stdout.write(
            f"{'source':28} {'read':>7} {'passed':>7} {'kept':>6} {'in':>7} {'out':>7}   paper (n/in/out)"
        )
        for row in table_1(dataset):
            if not row["examples"] and not row["read"]:
                continue
            paper = (
                f"{row['paper_examples']}/{row['paper_input']}/{row['paper_output']}" if row["paper_examples"] else "-"
            )
            self.stdout.write(
                f"{row['source']:28} {row['read'] or 0:>7} {row['passed'] or 0:>7} {row['examples']:>6} "
                f"{row['avg_input_tokens'] or 0:>7} {row['avg_output_tokens'] or 0:>7}   {paper}"
            )

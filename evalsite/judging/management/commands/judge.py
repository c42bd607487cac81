from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError

from evalsite.core import jobs
from evalsite.core.progress import run_or_follow
from evalsite.judging import services
from evalsite.judging.results import summary


class Command(BaseCommand):
    help = "Judge a study's comparisons with an LLM, both orders each, cached; asks before spending unless --yes."

    def add_arguments(self, parser):
        parser.add_argument("--study", help="the study whose comparisons are judged (required unless --reparse)")
        parser.add_argument("--config", default=services.LOCAL_JUDGE, help="judge config name (default: local-judge)")
        parser.add_argument("--budget", help="stop the job when this much money is spent")
        parser.add_argument("--policy", choices=["tie", "drop"], default="tie", help="when the two orders disagree")
        parser.add_argument("--comparisons", help="a subset: comma-separated comparison ids")
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        parser.add_argument("--wait", action="store_true", help="show a progress bar until the job ends")
        parser.add_argument("--foreground", action="store_true", help="run here, without a worker")
        parser.add_argument(
            "--reparse", type=int, metavar="JOB", help="parse a job's stored outputs again (no API call)"
        )

    def handle(self, *args, **opts):
        if opts["reparse"]:
            return self.reparse(opts["reparse"])
        if not opts["study"]:
            raise CommandError("--study is required")
        try:
            budget = Decimal(opts["budget"]) if opts["budget"] else None
            ids = [int(x) for x in opts["comparisons"].split(",")] if opts["comparisons"] else None
        except (InvalidOperation, ValueError):
            raise CommandError("--budget must be a number and --comparisons a list of ids") from None
        try:
            study = services.find_study(opts["study"])
            config = services.find_config(opts["config"])
            estimate = services.plan(study, config, ids)
        except services.CannotJudge as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"{estimate['calls']} judge calls ({estimate['comparisons']} comparisons x 2 orders) with {config.label}: "
            f"about {estimate['tokens_in']:,} input + {estimate['tokens_out']:,} output tokens, "
            f"about {estimate['cost']:.4f} (cached calls cost nothing)"
            + (f"; budget {budget}" if budget is not None else "")
        )
        if not opts["yes"] and estimate["cost"] > 0 and input("Start? [y/N] ").strip().lower() not in ("y", "yes"):
            raise CommandError("not started")
        try:
            job, created = services.start_judge_job(
                study, config, budget=budget, policy=opts["policy"], comparison_ids=ids, enqueue=not opts["foreground"]
            )
        except services.CannotJudge as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{'started' if created else 'already running'}: {job}")
        finished = run_or_follow(job, created, opts["foreground"], opts["wait"])
        if finished is not None:
            self.report(finished)

    def report(self, job) -> None:
        s = summary(job)
        consistency = f"{s['consistency']:.0%}" if s["consistency"] is not None else "-"
        self.stdout.write(f"{job}: {job.status} {job.status_detail}")
        self.stdout.write(
            f"verdicts {s['verdicts']}, consistency across orders {consistency}, parse failures "
            f"{s['parse_failures']}, API failures {s['api_failures']}, calls {job.calls_made}, cache hits "
            f"{job.cache_hits}, tokens {s['tokens_in']}+{s['tokens_out']}, cost {s['cost']:.4f}"
        )
        for baseline, counts in s["per_baseline"].items():
            self.stdout.write(f"  vs {baseline}: {counts}")
        if job.status == jobs.JobStatus.FAILED:
            raise CommandError(f"job failed: {job.error}")

    def reparse(self, pk: int) -> None:
        from evalsite.judging.models import JudgeJob

        try:
            job = JudgeJob.objects.get(pk=pk)
        except JudgeJob.DoesNotExist:
            raise CommandError(f"no judge job #{pk}") from None
        self.stdout.write(f"{services.reparse(job)} verdict(s) changed")

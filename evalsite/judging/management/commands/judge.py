from decimal import Decimal, InvalidOperation

from django.core.management.base import CommandError

from evalsite.core import jobs
from evalsite.core.commands import JobCommand
from evalsite.judging import services
from evalsite.judging.models import JudgeJob
from evalsite.judging.results import judge_summary, jury_summary


def pct(value) -> str:
    return "-" if value is None else f"{value:.0%}"


class Command(JobCommand):
    help = (
        "Judge a study's comparisons with an LLM (or a jury of several), both orders each, cached; "
        "asks before spending unless --yes."
    )

    def add_job_arguments(self, parser):
        parser.add_argument("--study", help="the study whose comparisons are judged (required unless --reparse)")
        parser.add_argument(
            "--config",
            default=services.LOCAL_JUDGE,
            help="judge config name (default: local-judge); several, comma-separated, sit as a jury",
        )
        parser.add_argument("--budget", help="stop each job when this much money is spent")
        parser.add_argument("--policy", choices=["tie", "drop"], default="tie", help="when the two orders disagree")
        parser.add_argument(
            "--one-order",
            choices=["drop", "count"],
            default="drop",
            help="when only one order is readable: drop the comparison (default) or let that order decide",
        )
        parser.add_argument("--comparisons", help="a subset: comma-separated comparison ids")
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
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
        names = [n.strip() for n in opts["config"].split(",") if n.strip()]
        if len(set(names)) != len(names):
            raise CommandError(f"--config names a judge twice: {opts['config']}")
        try:
            study = services.find_study(opts["study"])
            configs = [services.find_config(name) for name in names]
            estimates = [services.plan(study, config, ids) for config in configs]
        except services.CannotJudge as exc:
            raise CommandError(str(exc)) from exc
        for config, estimate in zip(configs, estimates, strict=True):
            self.stdout.write(
                f"{estimate['calls']} judge calls ({estimate['comparisons']} comparisons x 2 orders) with "
                f"{config.label} ({config.method}): about {estimate['tokens_in']:,} input + "
                f"{estimate['tokens_out']:,} output tokens, about {estimate['cost']:.4f} (cached calls cost nothing)"
                + (f"; budget {budget}" if budget is not None else "")
            )
        cost = sum(e["cost"] for e in estimates)
        if not opts["yes"] and cost > 0 and input("Start? [y/N] ").strip().lower() not in ("y", "yes"):
            raise CommandError("not started")
        jury = "+".join(names) if len(names) > 1 else ""
        finished = []
        for config in configs:
            try:
                job, created = services.start_judge_job(
                    study,
                    config,
                    budget=budget,
                    policy=opts["policy"],
                    one_order=opts["one_order"],
                    jury=jury,
                    comparison_ids=ids,
                    enqueue=not opts["foreground"],
                )
            except services.CannotJudge as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(self.started(job, created))
            done = self.follow(job, created, opts)
            if done is not None:
                self.report(done)
                finished.append(done)
        if len(finished) > 1:
            self.report_jury(finished)
        for job in finished:
            if job.status == jobs.JobStatus.FAILED:
                raise CommandError(f"{job} failed: {job.error}")

    def report(self, job: JudgeJob) -> None:  # type: ignore[override]
        s = judge_summary(job)
        money = s["money"]
        self.stdout.write(f"{job}: {job.status} {job.status_detail}")
        self.stdout.write(
            f"  method {s['method']}; orders that disagree: {job.get_policy_display()}; "
            f"one readable order: {job.get_one_order_display()}"
        )
        header = f"  {'baseline':<24} {'n':>5} {'wins':>6} {'tie':>6} {'loses':>6} {'expected':>9}  not counted"
        self.stdout.write(header)
        for r in s["per_baseline"]:
            dropped = ", ".join(f"{n} {why}" for why, n in r["dropped"].items()) or "-"
            self.stdout.write(
                f"  {r['baseline']:<24} {r['n']:>5} {pct(r['win']):>6} {pct(r['tie']):>6} {pct(r['loss']):>6} "
                f"{pct(r['expected_win_rate']):>9}  {dropped}"
            )
        self.stdout.write(
            f"  consistency across orders {pct(s['consistency'])} ({s['pairs_with_both_orders']} comparisons); "
            f"first-shown answer won {s['first_wins']}, second {s['second_wins']}, ties {s['ties']}; "
            f"unreadable {s['parse_failures']} of {s['verdicts']}; API failures {s['api_failures']}"
        )
        self.stdout.write(
            f"  spent by this job {money['spent_by_job']:.4f}; cost of these verdicts {money['cost_of_verdicts']:.4f}; "
            f"requests sent {money['requests_sent']} ({money['requests_unanswered']} without an answer), "
            f"calls {money['calls_made']}, cache hits {money['cache_hits']}"
        )
        for warning in s["warnings"]:
            self.stdout.write(self.style.WARNING(f"  warning: {warning}"))

    def report_jury(self, jobs_: list[JudgeJob]) -> None:
        j = jury_summary(jobs_)
        self.stdout.write(f"jury {jobs_[0].jury}: agreement with the people's majority (tie-discounted)")
        for m in j["members"]:
            self.stdout.write(
                f"  {m['label']:<32} {pct(m['agreement']):>5} over {m['n']} comparisons; "
                f"position bias {pct(m['position_bias'])}"
            )
        self.stdout.write(f"  {'the jury (majority)':<32} {pct(j['jury']['agreement']):>5} over {j['jury']['n']}")
        longer = j["longer_answer"]
        self.stdout.write(f"  {'always the longer answer':<32} {pct(longer['agreement']):>5} over {longer['n']}")
        for p in j["pairwise"]:
            self.stdout.write(f"  {p['a']} with {p['b']}: {pct(p['agreement'])} over {p['n']}")

    def reparse(self, pk: int) -> None:
        try:
            job = JudgeJob.objects.get(pk=pk)
        except JudgeJob.DoesNotExist:
            raise CommandError(f"no judge job #{pk}") from None
        self.stdout.write(f"{services.reparse(job)} verdict(s) changed")
        self.report(job)

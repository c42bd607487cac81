import random

from django.core.management.base import BaseCommand, CommandError

from evalsite.annotation.blinding import blinding_warnings
from evalsite.annotation.models import Study
from evalsite.annotation.studies import StudyError, plan_sampling
from evalsite.core.figures import few_votes
from evalsite.dashboard import ranking
from evalsite.dashboard.estimates import study_status, uncertainty_by_comparison, usable
from evalsite.dashboard.stopping import decide, set_target
from evalsite.judging.models import JudgeJob
from evalsite.judging.results import default_judge_job, judge_summary


class Command(BaseCommand):
    help = (
        "A study's precision so far (anytime-valid intervals), and its target: `study status S` (reads only), "
        "`study target S 0.05`, `study decide S` (stops the study if it has enough, as the periodic check does); "
        "`study sample S --rate 0.4`: people vote where the judge is least sure, weighted back."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        status = sub.add_parser("status", help="each baseline's win share, its interval, and whether it has enough")
        status.add_argument("study")
        decide_ = sub.add_parser(
            "decide", help="decide now, as the periodic check does: stop the study if every baseline is within target"
        )
        decide_.add_argument("study")
        target = sub.add_parser("target", help="stop handing out items at +- this half-width ('none': never)")
        target.add_argument("study")
        target.add_argument("half_width")
        sample = sub.add_parser(
            "sample",
            help="before the first vote: people vote on about --rate of the comparisons, chosen where the judge is "
            "least sure (active inference; the dashboard weights the votes back)",
        )
        sample.add_argument("study")
        sample.add_argument("--rate", type=float, default=0.5, help="share of comparisons people vote on (0-1]")
        sample.add_argument("--judge", type=int, help="the judge job whose verdicts decide (default: the study's)")
        sample.add_argument("--seed", type=int, help="for a reproducible draw")

    def handle(self, *args, **opts):
        try:
            study = Study.objects.get(name=opts["study"])
        except Study.DoesNotExist:
            raise CommandError(f"no study named {opts['study']!r}") from None
        if study.kind == Study.Kind.RANKING:
            return self.ranking(study, opts["action"])
        if opts["action"] == "target":
            return self.set_target(study, opts["half_width"])
        if opts["action"] == "sample":
            return self.sample(study, opts)
        if opts["action"] == "decide":
            s = decide(study)
            self.report(study, s)
            self.stdout.write("decided: " + ("stopped" if s["enough"] else "not yet, the study goes on"))
            return
        self.report(study, study_status(study))

    def ranking(self, study: Study, action: str) -> None:
        """A ranking study: its rank-sets and its question's answer (status), or the stop decided
        now (decide); its stop is its question, so no target and no sampling."""
        if action in ("target", "sample"):
            raise CommandError(
                f"{study.name} is a ranking study: it stops once its rank-sets settle its question "
                f"({study.get_ranking_goal_display()}), and its pairs are chosen as it goes; no {action}"
            )
        result = ranking.decide(study) if action == "decide" else ranking.ranking(study)
        judge = f"people + judge job {result.job.pk} ({result.job.config.label})" if result.job else "people alone"
        self.stdout.write(
            f"ranking study {study.name} ({study.status}): {result.main.votes} complete comparisons of "
            f"{result.comparisons}; rank-sets (95%, every look) from {judge}"
        )
        columns = [("main", judge.split(" (")[0]), ("people", "people alone"), ("judge", "the judge alone")]
        shown = [(key, label) for key, label in columns if key != "judge" or result.judge is not None]
        if result.combined is None:
            shown = [c for c in shown if c[0] != "people"]
        self.stdout.write("  " + f"{'system':<24}" + "".join(f" {label:>22}" for _, label in shown))
        for row in result.rows():
            self.stdout.write("  " + f"{row['system']:<24}" + "".join(f" {row[key]['set']:>22}" for key, _ in shown))
        if result.judge_worth is not None:
            self.stdout.write(f"the judge's verdicts were worth about {result.judge_worth} more people's votes")
        style = self.style.SUCCESS if result.settled else self.style.NOTICE
        self.stdout.write(style(result.answer))
        if action == "decide":
            self.stdout.write("decided: " + ("stopped" if study.enough_at else "not yet, the study goes on"))

    def report(self, study: Study, s: dict) -> None:
        if study.sampling_rate is not None:
            self.stdout.write(
                f"sampled: people vote on about {study.sampling_rate:.0%} of the comparisons, where the judge was "
                "least sure; their votes are weighted back (active inference)"
            )
        if s["judge"]:
            self.stdout.write(
                f"the stop rule reads judge job {s['judge'].pk} ({s['judge'].config.label}; PPI++), "
                "fixed with the target"
            )
        elif study.target_half_width:
            self.stdout.write(
                "the stop rule reads people's votes alone (no judge job over every comparison had finished)"
            )
        self.stdout.write(
            f"study {study.name} ({study.status}); target: "
            + (f"+-{s['target'] * 100:.1f} points" if s["target"] else "none (manage.py study target S 0.05)")
        )
        self.stdout.write(
            f"  {'baseline':<24} {'complete':>13} {'partial':>8} {'wins':>6} {'95% (anytime)':>15} {'more':>6}"
        )
        for r in s["rows"]:
            win = "-" if r["win"] is None else f"{r['win']:.0%}"
            interval = "-" if r["low"] is None else f"{r['low'] * 100:.0f}-{r['high'] * 100:.0f}%"
            more = "-" if r["more"] is None else str(r["more"])
            self.stdout.write(
                f"  {r['baseline']:<24} {r['n']:>6} of {r['comparisons']:<5} {r['partial']:>8} {win:>6} {interval:>15}"
                f" {more:>6}"
            )
        self.stdout.write(
            "  complete: comparisons with all their votes, the only ones counted; "
            "partial: some votes in, not counted yet"
        )
        if s["enough_at"]:
            self.stdout.write(
                self.style.SUCCESS(
                    f"enough: every baseline is within the target (since {s['enough_at']:%Y-%m-%d %H:%M}); "
                    "no new comparison is started, the started ones are finished"
                )
            )
        elif s["enough"]:
            self.stdout.write(
                f"every baseline is within the target now; the periodic check (or manage.py study decide "
                f"{study.name}) stops the study"
            )
        elif s["target"]:
            self.stdout.write(f"not yet: about {s['more_votes']} more voted comparisons on the widest baseline")
        # what the dashboard's figures carry, said here too: what could unblind the people, and the
        # rule's judge's own warnings
        caveats = blinding_warnings(study) + (judge_summary(s["judge"])["warnings"] if s["judge"] else [])
        for r in s["rows"]:  # and the bars too thin to read (at the anytime-valid intervals above)
            bounds = None if r["low"] is None else (r["low"], r["high"])
            if note := few_votes(r["baseline"], r["n"], bounds, "win share", "complete comparisons"):
                caveats.append(note)
        if caveats:
            self.stdout.write(self.style.WARNING("read with care:"))
            for caveat in caveats:
                self.stdout.write(self.style.WARNING(f"  {caveat}"))

    def set_target(self, study: Study, text: str) -> None:
        if text == "none":
            set_target(study, None)
            self.stdout.write(f"study {study.name}: no target; items are handed out until all are done")
            return
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 < value < 0.5:
            raise CommandError("the target is a half-width between 0 and 0.5 (0.05: +-5 points), or none")
        set_target(study, value)
        judge = (
            f"judge job {study.target_judge_job}"
            if study.target_judge_job
            else "people's votes alone until a judge job over every comparison finishes"
        )
        s = decide(study)
        self.stdout.write(
            f"study {study.name}: target +-{value * 100:.1f} points, read from {judge}; decided: "
            + ("enough already" if s["enough"] else "not yet")
        )

    def sample(self, study: Study, opts: dict) -> None:
        if opts["judge"] is not None:
            job = JudgeJob.objects.filter(pk=opts["judge"], study=study).first()
            if job is None:
                raise CommandError(f"no judge job {opts['judge']} on study {study.name}")
        else:
            job = default_judge_job(study)
            if job is None:
                raise CommandError(f"study {study.name} has no judge job: run `judge` on it first (--judge J)")
        uncertainty = uncertainty_by_comparison(job)
        try:
            summary = plan_sampling(study, uncertainty, opts["rate"], random.Random(opts["seed"]))
        except StudyError as e:
            raise CommandError(str(e)) from None
        if usable(job) and study.target_judge_job is None:
            # the judge that chose the chances is the one the estimates read, fixed before any vote
            Study.objects.filter(pk=study.pk).update(target_judge_job=job.pk)
        self.stdout.write(
            f"study {study.name}: people vote on about {opts['rate']:.0%} of the comparisons, where judge job "
            f"{job.pk} ({len(uncertainty)} verdicts) is least sure; assignment is now adaptive"
        )
        for name, (drawn, total) in summary.items():
            self.stdout.write(f"  {name:<24} {drawn:>5} of {total} drawn for people")

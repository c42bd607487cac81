import random

from django.core.management.base import BaseCommand, CommandError

from evalsite.annotation.models import Study
from evalsite.annotation.services import StudyError, plan_sampling
from evalsite.dashboard.evidence import study_status, uncertainty_by_comparison
from evalsite.judging.models import JudgeJob
from evalsite.judging.results import default_judge_job


class Command(BaseCommand):
    help = (
        "A study's precision so far (anytime-valid intervals), and its target: `study status S`, "
        "`study target S 0.05`; `study sample S --rate 0.4`: people vote where the judge is least sure, "
        "weighted back."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        status = sub.add_parser("status", help="each baseline's win share, its interval, and whether it has enough")
        status.add_argument("study")
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
        if opts["action"] == "target":
            return self.set_target(study, opts["half_width"])
        if opts["action"] == "sample":
            return self.sample(study, opts)
        s = study_status(study)
        if study.sampling_rate is not None:
            self.stdout.write(
                f"sampled: people vote on about {study.sampling_rate:.0%} of the comparisons, where the judge was "
                "least sure; their votes are weighted back (active inference)"
            )
        if s["judge"]:
            self.stdout.write(f"with the judge's help: {s['judge'].config.label}, job {s['judge'].pk} (PPI++)")
        self.stdout.write(
            f"study {study.name} ({study.status}); target: "
            + (f"+-{s['target'] * 100:.1f} points" if s["target"] else "none (manage.py study target S 0.05)")
        )
        self.stdout.write(f"  {'baseline':<24} {'voted':>11} {'wins':>6} {'95% (anytime)':>15} {'more':>6}")
        for r in s["rows"]:
            win = "-" if r["win"] is None else f"{r['win']:.0%}"
            interval = "-" if r["low"] is None else f"{r['low'] * 100:.0f}-{r['high'] * 100:.0f}%"
            more = "-" if r["more"] is None else str(r["more"])
            self.stdout.write(
                f"  {r['baseline']:<24} {r['n']:>5} of {r['comparisons']:<4} {win:>6} {interval:>15} {more:>6}"
            )
        if s["enough"]:
            self.stdout.write(
                self.style.SUCCESS(
                    f"enough: every baseline is within the target (since {s['enough_at']:%Y-%m-%d %H:%M}); "
                    "no new items are handed out"
                )
            )
        elif s["target"]:
            self.stdout.write(f"not yet: about {s['more_votes']} more voted comparisons on the widest baseline")

    def set_target(self, study: Study, text: str) -> None:
        if text == "none":
            Study.objects.filter(pk=study.pk).update(target_half_width=None, enough_at=None)
            self.stdout.write(f"study {study.name}: no target; items are handed out until all are done")
            return
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 < value < 0.5:
            raise CommandError("the target is a half-width between 0 and 0.5 (0.05: +-5 points), or none")
        Study.objects.filter(pk=study.pk).update(target_half_width=value, enough_at=None)
        study.refresh_from_db()
        s = study_status(study)
        self.stdout.write(
            f"study {study.name}: target +-{value * 100:.1f} points; "
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
        self.stdout.write(
            f"study {study.name}: people vote on about {opts['rate']:.0%} of the comparisons, where judge job "
            f"{job.pk} ({len(uncertainty)} verdicts) is least sure; assignment is now adaptive"
        )
        for name, (drawn, total) in summary.items():
            self.stdout.write(f"  {name:<24} {drawn:>5} of {total} drawn for people")

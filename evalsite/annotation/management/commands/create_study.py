from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.text import slugify

from evalsite.annotation import rating, studies
from evalsite.annotation.blinding import blinding_warnings
from evalsite.annotation.forms import PlanForm, first_error
from evalsite.annotation.models import Study
from evalsite.catalog.find import find_prompt_set, find_system
from evalsite.catalog.models import PromptSet
from evalsite.core.jobs import CannotStart


class Command(BaseCommand):
    help = (
        "Create a study (a candidate against baselines over a prompt set, or a ranking of many systems) "
        "and open it for annotators."
    )

    def add_arguments(self, parser):
        parser.add_argument("--candidate", help="the system studied (pairwise and rating studies)")
        parser.add_argument("--baselines", default="", help="comma-separated system names (pairwise studies)")
        parser.add_argument("--systems", default="", help="comma-separated system names (ranking studies: 3 or more)")
        parser.add_argument(
            "--goal",
            choices=Study.RankingGoal.values,
            default=Study.RankingGoal.TOP,
            help="a ranking study stops once its rank-sets settle this: the top system, the top 2 or 3, the full order",
        )
        parser.add_argument(
            "--kind",
            choices=Study.Kind.values,
            default=Study.Kind.PAIRWISE,
            help="pairwise (Figure 1), rating: the candidate's answers graded Fail / Pass / Excellent (Figure 3), "
            "or ranking: --systems in pairs on each prompt, ranked with rank-sets",
        )
        parser.add_argument(
            "--both-bad",
            action="store_true",
            help="a ranking study: annotators get a fourth choice, 'both are bad' (a tie, reported apart)",
        )
        parser.add_argument("--prompts", help="prompt set name")
        parser.add_argument("--name", help="default: CANDIDATE-vs-BASELINES-on-SET")
        parser.add_argument("--overlap", type=int, default=1, help="annotators per comparison")
        parser.add_argument("--gold-rate", type=float, default=0.05, help="share of items that are gold checks")
        parser.add_argument("--draft", action="store_true", help="create it without opening it")
        parser.add_argument(
            "--assignment",
            choices=Study.AssignmentPolicy.values,
            help="uniform (items in a random order) or adaptive (the baseline known least well first; a ranking "
            "study's default: the pairs that can still change its answer first)",
        )
        plan = parser.add_argument_group("--plan: the votes a target precision needs (nothing is created)")
        plan.add_argument("--plan", action="store_true", help="print the votes, hours and money needed, then stop")
        plan.add_argument("--expected", default="0.5,0.2,0.3", help="expected win,tie,loss shares")
        plan.add_argument(
            "--target",
            type=float,
            help="half-width wanted on each win share (e.g. 0.05); the study stops handing out items there",
        )
        plan.add_argument("--judge-agreement", type=float, help="the judge's agreement with people (earlier study)")
        plan.add_argument("--seconds-per-vote", type=float, default=60.0)
        plan.add_argument("--pay-per-hour", type=float, default=12.0)

    def handle(self, *args, **opts):
        names = [n.strip() for n in opts["baselines"].split(",") if n.strip()]
        if opts["plan"]:
            return self.plan(len(names), opts)
        if opts["kind"] == Study.Kind.ARENA:
            raise CommandError("an arena collects its prompts from people: manage.py create_arena --systems A,B[,...]")
        if not opts["prompts"]:
            raise CommandError("--prompts is required (the prompt set the study compares on)")
        if opts["kind"] == Study.Kind.RANKING:
            return self.ranking(opts)
        if opts["both_bad"]:  # a pairwise study's figures are the paper's, with its three choices
            raise CommandError(
                "--both-bad is a ranking study's (an arena always has it): a pairwise study keeps the paper's three"
            )
        if not opts["candidate"]:
            raise CommandError(f"a {opts['kind']} study needs --candidate")
        if opts["kind"] == Study.Kind.RATING:
            return self.rating(opts)
        name = opts["name"] or slugify(f"{opts['candidate']}-vs-{'-'.join(names)}-on-{opts['prompts']}")[:100]
        try:
            candidate = find_system(opts["candidate"])
            baselines = [find_system(n) for n in names]
            prompt_set = find_prompt_set(opts["prompts"])
            with transaction.atomic():  # a study that cannot start is not left behind
                if opts["target"] is not None and not 0 < opts["target"] < 0.5:
                    raise studies.StudyError("--target is a half-width between 0 and 0.5, e.g. 0.05")
                study = studies.create_study(
                    name,
                    candidate,
                    baselines,
                    prompt_set,
                    overlap=opts["overlap"],
                    gold_rate=opts["gold_rate"],
                    assignment=opts["assignment"],
                )
                if opts["target"] is not None:
                    Study.objects.filter(pk=study.pk).update(target_half_width=opts["target"])
                n = 0 if opts["draft"] else studies.start_study(study)
        except (CannotStart, studies.StudyError) as exc:
            raise CommandError(str(exc)) from exc
        state = "draft" if opts["draft"] else f"open with {n} comparisons"
        self.stdout.write(self.style.SUCCESS(f"study {study.name}: {state}"))
        for warning in blinding_warnings(study):
            self.stdout.write(self.style.WARNING(f"blinding: {warning}"))

    def ranking(self, opts: dict) -> None:
        names = [n.strip() for n in opts["systems"].split(",") if n.strip()]
        if opts["candidate"] or opts["baselines"]:
            raise CommandError("a ranking study takes --systems A,B,C (no candidate or baselines)")
        name = opts["name"] or slugify(f"ranking-{'-'.join(names)}-on-{opts['prompts']}")[:100]
        try:
            with transaction.atomic():
                study = studies.create_ranking_study(
                    name,
                    [find_system(n) for n in names],
                    find_prompt_set(opts["prompts"]),
                    goal=opts["goal"],
                    overlap=opts["overlap"],
                    gold_rate=opts["gold_rate"],
                    assignment=opts["assignment"] or Study.AssignmentPolicy.ADAPTIVE,
                    both_bad=opts["both_bad"],
                )
                n = 0 if opts["draft"] else studies.start_study(study)
        except (CannotStart, studies.StudyError) as exc:
            raise CommandError(str(exc)) from exc
        state = "draft" if opts["draft"] else f"open with {n} comparisons"
        pairs = len(names) * (len(names) - 1) // 2
        self.stdout.write(
            self.style.SUCCESS(f"ranking study {study.name}: {state} ({pairs} pairs of {len(names)} systems)")
        )
        self.stdout.write(f"it stops once its rank-sets settle {Study.RankingGoal(opts['goal']).label}")

    def rating(self, opts: dict) -> None:
        name = opts["name"] or slugify(f"{opts['candidate']}-rated-on-{opts['prompts']}")[:100]
        try:
            with transaction.atomic():
                study = rating.create_rating_study(
                    name, find_system(opts["candidate"]), find_prompt_set(opts["prompts"]), opts["overlap"]
                )
                n = 0 if opts["draft"] else studies.start_study(study)
        except (CannotStart, studies.StudyError) as exc:
            raise CommandError(str(exc)) from exc
        state = "draft" if opts["draft"] else f"open with {n} responses to rate"
        self.stdout.write(self.style.SUCCESS(f"rating study {study.name}: {state}"))

    def plan(self, baselines: int, opts: dict) -> None:
        try:
            shares = [float(x) for x in opts["expected"].split(",")]
        except ValueError:
            raise CommandError("--expected takes three shares, e.g. 0.5,0.2,0.3") from None
        if len(shares) != 3 or abs(sum(shares) - 1) > 0.01 or min(shares) < 0:
            raise CommandError("--expected takes three shares that add up to 1, e.g. 0.5,0.2,0.3")
        data = {
            "baselines": baselines,
            "win": shares[0],
            "tie": shares[1],
            "target": opts["target"] or 0.05,
            "agreement": opts["judge_agreement"],
            "seconds_per_vote": opts["seconds_per_vote"],
            "pay_per_hour": opts["pay_per_hour"],
        }
        form = PlanForm({k: v for k, v in data.items() if v is not None})
        if not form.is_valid():
            raise CommandError(first_error(form))
        self.stdout.write(
            f"{baselines} baseline(s), each win share near {shares[0]:.0%} to +-{data['target'] * 100:.0f} points, "
            f"{opts['seconds_per_vote']:.0f} s a vote, {opts['pay_per_hour']:.2f} an hour:"
        )
        plans = form.plans()
        for label, p in plans:
            self.stdout.write(
                f"  {label:<44} {p.per_baseline:>6,} votes a baseline, {p.votes:>7,} in all, "
                f"{p.hours:>7.1f} annotator-hours, {p.cost:>9.2f}"
            )
        # each prompt gives a baseline one comparison: a set smaller than the plan cannot reach the target
        prompt_set = PromptSet.objects.filter(name=opts["prompts"]).first()
        if prompt_set is not None:
            supply = prompt_set.prompts.count()
            short = [label for label, p in plans if p.per_baseline > supply]
            if short:
                self.stdout.write(
                    self.style.WARNING(
                        f"{prompt_set.name} has {supply} prompts, so at most {supply} comparisons a baseline: too few "
                        f"for +-{data['target'] * 100:.0f} points ({'; '.join(short)}); add prompts, widen the "
                        "target, or expect the study to end before it"
                    )
                )

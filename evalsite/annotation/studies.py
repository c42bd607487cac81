"""A study's life before its votes: created with its systems and prompts, expanded into comparisons
in one random order (with its gold checks), sampled for people where the judge is least sure, and
its vote counters recounted when an annotator is left out. The annotator's loop is in claims.py
(taking an item) and answers.py (answering, skipping); their accounts and one-time links in
members.py."""

from __future__ import annotations

import random

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Count, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce

from evalsite.annotation.decoys import decoy
from evalsite.annotation.models import Comparison, HumanJudgment, Outcome, Study, studies_holding
from evalsite.catalog.models import Prompt, PromptSet, Response, System, render_responses
from stats.evidence import sampling_probabilities


class StudyError(Exception):
    """A user's request about a study cannot be done; the message says why and what to do."""


VOTE_FIELD: dict[str, str] = {
    Outcome.CANDIDATE: "votes_candidate",
    Outcome.BASELINE: "votes_baseline",
    Outcome.TIE: "votes_tie",
}


def recount_votes(study: Study, user: User | None = None) -> int:
    """Recompute the comparisons' vote counters (after an annotator is excluded or included)."""
    comparisons = Comparison.objects.filter(study=study)
    if user is not None:
        comparisons = comparisons.filter(judgments__annotator=user)
    excluded = study.excluded.values("pk")
    updates = {}
    for outcome, field in VOTE_FIELD.items():
        counted = (
            HumanJudgment.objects.filter(comparison=OuterRef("pk"), outcome=outcome)
            .exclude(annotator__in=excluded)
            .values("comparison")
            .annotate(n=Count("id"))
            .values("n")
        )
        updates[field] = Coalesce(Subquery(counted), Value(0))
    return Comparison.objects.filter(pk__in=comparisons.values("pk")).update(**updates)


def set_excluded(study: Study, user: User, excluded: bool) -> None:
    """Leave an annotator out of the study's results (their judgments are kept), or back in."""
    with transaction.atomic():
        if excluded:
            study.excluded.add(user)
        else:
            study.excluded.remove(user)
        recount_votes(study, user)


def create_study(
    name: str,
    candidate: System,
    baselines: list[System],
    prompt_set: PromptSet,
    *,
    overlap: int = 1,
    gold_rate: float = 0.05,
    instructions: str | None = None,
    assignment: str | None = None,
) -> Study:
    if Study.objects.filter(name=name).exists():
        raise StudyError(f"a study named {name!r} exists")
    if not baselines:
        raise StudyError("a study needs at least one baseline")
    if candidate in baselines:
        raise StudyError(f"{candidate.name} cannot be both the candidate and a baseline")
    if overlap < 1:
        raise StudyError("overlap must be at least 1")
    if not 0 <= gold_rate < 1:
        raise StudyError("gold rate must be in [0, 1)")
    assignment = assignment or settings.STUDY_DEFAULT_ASSIGNMENT
    if assignment not in Study.AssignmentPolicy.values:
        raise StudyError(f"assignment must be one of {', '.join(Study.AssignmentPolicy.values)}")
    with transaction.atomic():
        extra = {"instructions": instructions} if instructions else {}
        study = Study.objects.create(
            name=name,
            candidate=candidate,
            prompt_set=prompt_set,
            overlap=overlap,
            gold_rate=gold_rate,
            assignment=assignment,
            **extra,
        )
        study.baselines.set(baselines)
    return study


def create_ranking_study(
    name: str,
    systems: list[System],
    prompt_set: PromptSet,
    *,
    goal: str = Study.RankingGoal.TOP,
    overlap: int = 1,
    gold_rate: float = 0.05,
    assignment: str = Study.AssignmentPolicy.ADAPTIVE,
    at_least: int = 3,
    both_bad: bool = False,
) -> Study:
    """A ranking study: every pair of ``systems`` on each prompt, people voting with the paper's
    three choices; ranked with rank-sets (evalsite/dashboard/ranking.py) until ``goal`` is settled.
    The first system holds the study's candidate field (its gold checks are its answers against
    decoys); adaptive assignment draws the pairs that can still change the answer to ``goal``.
    ``at_least``: the fewest systems (checkpoint selection ranks two as well). ``both_bad``: a
    fourth choice, "both are bad", counted as a tie and reported apart."""
    if len(systems) < at_least:
        fewest = {2: "two", 3: "three"}.get(at_least, str(at_least))
        hint = " (two: a pairwise study)" if at_least == 3 else ""
        raise StudyError(f"a ranking needs {fewest} systems or more, got {len(systems)}{hint}")
    if len({s.pk for s in systems}) != len(systems):
        raise StudyError("a system is named twice")
    if goal not in Study.RankingGoal.values:
        raise StudyError(f"goal must be one of {', '.join(Study.RankingGoal.values)}, not {goal!r}")
    if goal.startswith("top") and goal != "top" and int(goal[3:]) >= len(systems):
        raise StudyError(f"goal {goal} needs more than {goal[3:]} systems")
    with transaction.atomic():
        study = create_study(
            name, systems[0], systems[1:], prompt_set, overlap=overlap, gold_rate=gold_rate, assignment=assignment
        )
        Study.objects.filter(pk=study.pk).update(kind=Study.Kind.RANKING, ranking_goal=goal, both_bad_choice=both_bad)
    study.kind, study.ranking_goal, study.both_bad_choice = Study.Kind.RANKING, goal, both_bad
    return study


def ranked_systems(study: Study) -> list[System]:
    """A ranking study's systems in their fixed order (the first, then the rest by name): pair
    (i, j) with i before j has the i-th system's answer as its comparisons' first."""
    return [study.candidate, *study.baselines.order_by("name")]


def _ranking_rows(study: Study, prompts: list[Prompt], responses: dict) -> list[Comparison]:
    systems = ranked_systems(study)
    return [
        Comparison(
            study=study,
            prompt=p,
            first_system=a,
            baseline=b,
            candidate_response=responses[(a.pk, p.pk)],
            baseline_response=responses[(b.pk, p.pk)],
        )
        for i, a in enumerate(systems)
        for b in systems[i + 1 :]
        for p in prompts
    ]


def missing_responses(study: Study) -> list[tuple[str, str]]:
    """(system, prompt id) pairs that lack a usable response (sample 0 without an error). An empty
    answer is usable: it is what the system said, and annotators judge it like any other."""
    systems = [study.candidate, *study.baselines.order_by("name")]
    prompts = list(study.prompt_set.prompts.order_by("id"))
    have = set(
        Response.objects.filter(system__in=systems, prompt__in=prompts, sample_index=0, error="").values_list(
            "system_id", "prompt_id"
        )
    )
    return [(s.name, p.external_id) for s in systems for p in prompts if (s.pk, p.pk) not in have]


GOLD_PREFIX = "gold-degraded-"  # the scrambled copies studies made before decoys (gold_sources names them)
DECOY_PREFIX = "gold-decoy-"
STAFF_BETTER, STAFF_WORSE = "gold-staff-better", "gold-staff-worse"  # staff-labelled gold pairs (gold.py)


def comparable_systems():
    """The systems a study may compare: not those that only hold gold checks' answers (decoys,
    degraded copies, staff-labelled pairs), which the new-study form used to offer as baselines."""
    gold = Q(name__startswith=DECOY_PREFIX) | Q(name__startswith=GOLD_PREFIX) | Q(name__in=[STAFF_BETTER, STAFF_WORSE])
    return System.objects.exclude(gold)


def _decoy_system(candidate: System) -> System:
    return System.objects.get_or_create(
        name=(DECOY_PREFIX + candidate.name)[:100],
        defaults={
            "backend": "imported",
            "description": f"Decoys for gold checks: {candidate.name}'s answers to other prompts "
            "(annotation/decoys.py).",
        },
    )[0]


def _gold_rows(study: Study, prompts: list[Prompt], responses: dict, rng: random.Random) -> list[Comparison]:
    """The study's default gold checks: on a random ``gold_rate`` share of its prompts, the
    candidate's answer beside a decoy (evalsite/annotation/decoys.py: the candidate's answer to
    another of the study's prompts that looks like it on the page), the candidate's the better."""
    n_gold = round(study.gold_rate * len(prompts)) if study.gold_rate else 0
    if not n_gold:
        return []
    system = _decoy_system(study.candidate)
    answers = {p.pk: responses[(study.candidate.pk, p.pk)] for p in prompts}
    rows = []
    for p in rng.sample(prompts, min(max(1, n_gold), len(prompts))):
        good = answers[p.pk]
        donors = [r.text for pk, r in answers.items() if pk != p.pk]
        text = decoy(good.text, p.text, donors, rng)
        bad, created = Response.objects.get_or_create(
            system=system, prompt=p, sample_index=0, defaults={"text": text, "finish_reason": "imported"}
        )
        if not created and bad.text != text and not studies_holding([bad.pk]):
            Response.objects.filter(pk=bad.pk).update(text=text, html=None)  # no open study shows it: made anew
            bad.text = text
        rows.append(
            Comparison(
                study=study,
                prompt=p,
                baseline=system,
                candidate_response=good,
                baseline_response=bad,
                is_gold=True,
                gold_better=Outcome.CANDIDATE,
            )
        )
    return rows


def start_study(study: Study, rng: random.Random | None = None) -> int:
    """Expand the study into comparisons and open it. Refuses while responses are missing."""
    rng = rng or random.Random()
    if study.status != Study.Status.DRAFT:
        raise StudyError(f"study {study.name} is already {study.status}")
    if study.kind == Study.Kind.RATING:  # its items were made with it (annotation.rating)
        Study.objects.filter(pk=study.pk).update(status=Study.Status.OPEN)
        study.status = Study.Status.OPEN
        return study.rating_items.count()
    missing = missing_responses(study)
    if missing:
        shown = ", ".join(f"{s}/{p}" for s, p in missing[:15]) + (" ..." if len(missing) > 15 else "")
        raise StudyError(f"{len(missing)} response(s) missing; generate or import them first: {shown}")
    prompts = list(study.prompt_set.prompts.order_by("id"))
    systems = [study.candidate, *study.baselines.all()]
    responses = {
        (r.system_id, r.prompt_id): r
        for r in Response.objects.filter(system__in=systems, prompt__in=prompts, sample_index=0)
    }
    with transaction.atomic():
        if study.kind == Study.Kind.RANKING:
            rows = _ranking_rows(study, prompts, responses)
        else:
            rows = [
                Comparison(
                    study=study,
                    prompt=p,
                    baseline=b,
                    candidate_response=responses[(study.candidate.pk, p.pk)],
                    baseline_response=responses[(b.pk, p.pk)],
                )
                for b in study.baselines.order_by("name")
                for p in prompts
            ]
        draw_order(rows, rng)
        rows += _gold_rows(study, prompts, responses, rng)
        Comparison.objects.bulk_create(rows)
        study.status = Study.Status.OPEN
        study.save(update_fields=["status"])
    # every answer rendered now, so that no annotator waits for Markdown to be rendered
    comparisons = Comparison.objects.filter(study=study)
    render_responses(
        Response.objects.filter(
            Q(pk__in=comparisons.values("candidate_response")) | Q(pk__in=comparisons.values("baseline_response"))
        )
    )
    if connection.vendor == "postgresql":
        # fresh statistics: planned with the empty table's, the claim's pool query sorts the whole
        # study instead of walking the primary key from its random start (measured 3-5 ms vs 0.1 ms)
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Comparison._meta.db_table}")
    return len(rows)


def draw_order(comparisons: list[Comparison], rng: random.Random) -> None:
    """Give the comparisons one uniformly random order, which every claim walks (see _claim_new):
    prompt files come grouped by source, and a study filled in file order would have voted one
    source first and stopped with it over-represented."""
    order = list(range(1, len(comparisons) + 1))
    rng.shuffle(order)
    for comparison, position in zip(comparisons, order, strict=True):
        comparison.draw_order = position


def plan_sampling(
    study: Study, uncertainty: dict[int, float | None], rate: float, rng: random.Random | None = None
) -> dict[str, tuple[int, int]]:
    """Make an open study ask people about a ``rate`` share of its comparisons, chosen where the
    judge is least sure (``uncertainty`` per comparison id: the judge's expected squared error,
    p (1 - p) of its soft verdict; None where it gave none, taken as the most uncertain), and walked
    in one random order; the dashboard weights the votes back (stats.evidence.sampled_terms).
    Only before the study's first vote: the chances must not depend on what people said. The
    comparisons keep the study's random order, which the walk follows.
    Returns, per baseline, (comparisons drawn for people, comparisons)."""
    rng = rng or random.Random()
    if study.status != Study.Status.OPEN:
        raise StudyError(f"study {study.name} is {study.status}: sample an open study before its first vote")
    if not 0 < rate <= 1:
        raise StudyError(f"--rate must be above 0 and at most 1, got {rate}")
    comparisons = list(Comparison.objects.filter(study=study, is_gold=False).select_related("baseline"))
    known = {c.pk for c in comparisons}
    unknown = [pk for pk in uncertainty if pk not in known]
    if unknown:
        raise StudyError(f"comparison(s) not in study {study.name}: {', '.join(map(str, unknown[:10]))}")
    summary: dict[str, tuple[int, int]] = {}
    by_baseline: dict[str, list[Comparison]] = {}
    for comparison in comparisons:
        by_baseline.setdefault(comparison.baseline.name, []).append(comparison)
    for name, group in sorted(by_baseline.items()):
        u = [uncertainty.get(c.pk) for c in group]
        chances = sampling_probabilities([0.25 if v is None else v for v in u], rate)
        for comparison, pi in zip(group, chances, strict=True):
            comparison.sampling_probability = float(pi)
            comparison.people_wanted = rng.random() < pi
        summary[name] = (sum(c.people_wanted for c in group), len(group))
    if any(c.draw_order is None for c in comparisons):  # a study older than its random order
        draw_order(comparisons, rng)
    with transaction.atomic():
        started = Q(slots_taken__gt=0) | Q(judgments_done__gt=0)
        if Comparison.objects.filter(started, study=study, is_gold=False).exists():
            raise StudyError(f"study {study.name} has claims or votes already: sampling is fixed before the first one")
        Comparison.objects.bulk_update(
            comparisons, ["sampling_probability", "people_wanted", "draw_order"], batch_size=1000
        )
        Study.objects.filter(pk=study.pk).update(sampling_rate=rate, assignment=Study.AssignmentPolicy.ADAPTIVE)
    study.sampling_rate, study.assignment = rate, Study.AssignmentPolicy.ADAPTIVE
    return summary

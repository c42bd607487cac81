"""Every judge statistic, read from one place: the JudgeOutcome rows (one per comparison, both
orders and what the comparison counts as, kept by the runner's one recording path). The judge
command, the job page, the dashboard, the report and the exports all call ``judge_summary``, so
they cannot disagree. Aggregated in the database (GROUP BY), finished by the pure stats/ functions."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.db.models.functions import Length

from evalsite.annotation.models import Comparison, Study
from evalsite.core.lookup import fetch_rows
from evalsite.judging.models import JudgeCall, JudgeJob, JudgeOutcome, JudgeVerdict
from evalsite.judging.rating_kinds import rating_kind
from stats.agreement import tie_discounted_score
from stats.judge import longer_answer
from stats.outcomes import LOSS, TIE, WIN, majority, win_tie_loss

# Every count the summary and the scorecard need, in one pass over the job's outcomes (two passes
# cost twice at a million verdicts): per baseline, outcome, reason not counted, both orders'
# outcomes and verdicts and length bin, how many, and the sum and count of the win probabilities.
OUTCOME_GROUPS = """
SELECT s.name, o.outcome, o.dropped, o.cand_first, o.base_first, o.cand_first_verdict, o.base_first_verdict,
       o.length_bin, COUNT(*), SUM(o.p_win), COUNT(o.p_win)
FROM judging_judgeoutcome o JOIN catalog_system s ON s.id = o.baseline_id
WHERE o.job_id = %s
GROUP BY s.name, o.outcome, o.dropped, o.cand_first, o.base_first, o.cand_first_verdict, o.base_first_verdict,
         o.length_bin
"""

LENGTH_LABELS = [
    "candidate shorter by 500+",
    "shorter by 100-500",
    "within 100 characters",
    "longer by 100-500",
    "candidate longer by 500+",
]
ONE_VOTE = {WIN: (1, 0, 0), LOSS: (0, 1, 0), TIE: (0, 0, 1)}


def judge_summary(job: JudgeJob, verdict_cost: bool = True) -> dict:
    """The judge's results: per baseline the counted outcomes (win / tie / loss shares with 95%
    intervals, and the expected win rate of probability verdicts), the comparisons not counted
    and why, order consistency, position bias, unreadable and failed verdicts, the money (spent by
    this job, and the cost of these verdicts whoever paid), and the warnings that say when the
    judge is not worth reading. Without ``verdict_cost`` the cost of the verdicts is None: it joins
    every verdict to its call (0.6 s at a million verdicts), which the study page's first request
    leaves to the job's own page."""
    patterns: dict[str, Counter] = defaultdict(Counter)
    dropped: Counter = Counter()
    dropped_per: dict[str, Counter] = defaultdict(Counter)
    soft: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    groups = fetch_rows(OUTCOME_GROUPS, [job.pk])
    for baseline, outcome, why, *_, n, p_sum, p_n in groups:
        if outcome:
            patterns[baseline][ONE_VOTE[outcome]] += n
            soft[baseline][0] += p_sum or 0.0
            soft[baseline][1] += p_n
        else:
            dropped[why] += n
            dropped_per[baseline][why] += n
    per_baseline: list[dict[str, Any]] = []
    for name in sorted(set(patterns) | set(dropped_per)):
        shares = win_tie_loss(patterns[name], "majority").as_dict()
        total, counted = soft[name]
        per_baseline.append(
            {
                "baseline": name,
                **shares,
                "counts": {o: patterns[name][ONE_VOTE[o]] for o in (WIN, TIE, LOSS)},
                "dropped": dict(dropped_per[name]),
                "expected_win_rate": total / counted if counted else None,
            }
        )
    per_baseline.sort(key=lambda r: (-r["win"], r["baseline"]))
    card = scorecard(job, groups)
    cost = None
    if verdict_cost:
        behind = JudgeVerdict.objects.filter(job=job).values("call_id")  # a semi-join: each call once
        cost = JudgeCall.objects.filter(pk__in=behind).aggregate(cost=Sum("cost"))["cost"] or 0
    summary = {
        "job": job,
        "label": job.config.label,
        "method": job.config.method,
        "policy": job.policy,
        "one_order": job.one_order,
        "per_baseline": per_baseline,
        "counted": sum(sum(p.values()) for p in patterns.values()),
        "dropped": dict(dropped),
        **card,
        "money": {
            "spent_by_job": job.spend,
            "cost_of_verdicts": cost,
            "requests_sent": job.requests_sent,
            "requests_unanswered": max(0, job.requests_sent - job.requests_answered),
            "calls_made": job.calls_made,
            "cache_hits": job.cache_hits,
            "tokens_in": job.tokens_in,
            "tokens_out": job.tokens_out,
        },
    }
    summary["warnings"] = warnings(summary)
    return summary


def scorecard(job: JudgeJob, groups: list[tuple] | None = None) -> dict:
    """Consistency across orders, position bias, win rate by length difference, unreadable and
    failed verdicts: from the per-order verdicts of the JudgeOutcome rows (``groups``: the job's
    OUTCOME_GROUPS, already read)."""
    position: Counter = Counter()
    bins: dict[int, Counter] = defaultdict(Counter)
    parse_failures = api_failures = verdicts = both = agree = 0
    rows = groups if groups is not None else fetch_rows(OUTCOME_GROUPS, [job.pk])
    for *_, cf, bf, cfv, bfv, length, n, _p_sum, _p_n in rows:
        if cf and bf:
            both += n
            agree += n if cf == bf else 0
        for verdict, outcome in ((cfv, cf), (bfv, bf)):
            if verdict == "-":
                continue  # not judged yet
            verdicts += n
            if verdict == "error":
                api_failures += n
            elif verdict == "":
                parse_failures += n
            else:
                position[verdict] += n
                bins[length][outcome] += n
    first, second = position["first"], position["second"]
    length_rows = []
    for k, label in enumerate(LENGTH_LABELS):
        decided = sum(bins[k].values())
        length_rows.append({"bin": label, "n": decided, "win_rate": bins[k][WIN] / decided if decided else None})
    return {
        "verdicts": verdicts,
        "pairs_with_both_orders": both,
        "consistency": agree / both if both else None,
        "first_wins": first,
        "second_wins": second,
        "ties": position["tie"],
        "position_bias": first / (first + second) if first + second else None,
        "length": length_rows,
        "parse_failures": parse_failures,
        "api_failures": api_failures,
        "unreadable_share": parse_failures / verdicts if verdicts else None,
    }


def warnings(summary: dict) -> list[str]:
    """Plain sentences, with the numbers, when the judge is not worth reading (thresholds are
    settings: JUDGE_WARN_CONSISTENCY, JUDGE_WARN_POSITION_BIAS, JUDGE_WARN_UNREADABLE)."""
    out = []
    consistency, bias, unreadable = summary["consistency"], summary["position_bias"], summary["unreadable_share"]
    if consistency is not None and consistency < settings.JUDGE_WARN_CONSISTENCY:
        out.append(
            f"The judge's two orders agreed on {consistency:.0%} of {summary['pairs_with_both_orders']} comparisons "
            f"(a warning below {settings.JUDGE_WARN_CONSISTENCY:.0%}): its verdicts depend on where an answer stands."
        )
    decided = summary["first_wins"] + summary["second_wins"]
    if bias is not None and abs(bias - 0.5) > settings.JUDGE_WARN_POSITION_BIAS - 0.5:
        side = "first" if bias > 0.5 else "second"
        wins = summary["first_wins"] if bias > 0.5 else summary["second_wins"]
        out.append(f"The {side}-shown answer won {wins} of {decided} decided verdicts: a strong position bias.")
    if unreadable is not None and unreadable > settings.JUDGE_WARN_UNREADABLE:
        out.append(
            f"{summary['parse_failures']} of {summary['verdicts']} verdicts ({unreadable:.0%}) could not be read "
            f"(a warning above {settings.JUDGE_WARN_UNREADABLE:.0%}); a probability method (logprobs, score) reads all."
        )
    if summary["dropped"]:
        reasons = ", ".join(f"{why}: {n}" for why, n in sorted(summary["dropped"].items()))
        total = sum(summary["dropped"].values())
        out.append(f"{total} comparison{'s are' if total != 1 else ' is'} not counted ({reasons}).")
    return out


def jury_summary(jobs: list[JudgeJob]) -> dict:
    """Several judges over one study: the jury's verdict per comparison is the majority of its
    members' counted outcomes (a draw is a tie). Beside it, as AlpacaEval's evaluator table
    does: each member's and the jury's agreement with the people's majority (tie-discounted, as
    the paper measures people against each other), the members' agreement with each other, their
    position bias, and the agreement of a judge that always picks the longer answer."""
    study = jobs[0].study
    members = {job.pk: job.config.name for job in jobs}
    votes: dict[int, dict[str, str]] = defaultdict(dict)
    counted = JudgeOutcome.objects.filter(job__in=jobs).exclude(outcome="")
    for job_id, comparison_id, outcome in counted.values_list("job_id", "comparison_id", "outcome"):
        votes[comparison_id][members[job_id]] = outcome
    jury = {cid: _jury_vote(list(v.values())) for cid, v in votes.items() if v}
    people: dict[int, str] = {}
    longer: dict[int, str] = {}
    baseline_of: dict[int, str] = {}
    comparisons = (
        Comparison.objects.filter(study=study, is_gold=False)
        .annotate(cand_len=Length("candidate_response__text"), base_len=Length("baseline_response__text"))
        .values_list("pk", "votes_candidate", "votes_baseline", "votes_tie", "baseline__name", "cand_len", "base_len")
    )
    for pk, c, b, t, baseline, cand_len, base_len in comparisons:
        baseline_of[pk] = baseline
        longer[pk] = longer_answer(cand_len, base_len)
        if c + b + t:
            people[pk] = majority((c, b, t))

    def agreement(a: dict[int, str], b: dict[int, str]) -> dict:
        shared = [k for k in a if k in b]
        score = sum(tie_discounted_score(a[k], b[k]) for k in shared)
        return {"agreement": score / len(shared) if shared else None, "n": len(shared)}

    member_votes = {name: {cid: v[name] for cid, v in votes.items() if name in v} for name in members.values()}
    per_member = []
    for job in jobs:
        card = scorecard(job)
        per_member.append(
            {
                "judge": job.config.name,
                "label": job.config.label,
                **agreement(member_votes[job.config.name], people),
                "position_bias": card["position_bias"],
                "consistency": card["consistency"],
            }
        )
    names = list(member_votes)
    pairwise = [
        {"a": x, "b": y, **agreement(member_votes[x], member_votes[y])}
        for i, x in enumerate(names)
        for y in names[i + 1 :]
    ]
    patterns: dict[str, Counter] = defaultdict(Counter)
    for cid, outcome in jury.items():
        patterns[baseline_of.get(cid, "?")][ONE_VOTE[outcome]] += 1
    return {
        "members": per_member,
        "jury": agreement(jury, people),
        "longer_answer": agreement(longer, people),
        "pairwise": pairwise,
        "figure": sorted(
            ({"baseline": name, **win_tie_loss(p, "majority").as_dict()} for name, p in patterns.items()),
            key=lambda r: (-r["win"], r["baseline"]),
        ),
    }


def _jury_vote(outcomes: list[str]) -> str:
    counts = Counter(outcomes).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return TIE
    return counts[0][0]


def rating_job_summary(job) -> dict:
    """A rating job's numbers, as its kind summarises them (evalsite.judging.rating_kinds): Fail /
    Pass / Excellent shares, the Likert mean with a 95% interval over prompts, or the safe share."""
    values = list(job.ratings.values_list("response__prompt_id", "value"))
    readable = [(p, v) for p, v in values if v]
    out: dict = {"ratings": len(values), "unreadable": len(values) - len(readable), "label": job.config.label}
    return {**out, **rating_kind(job.kind).summarise(readable)}


def default_judge_job(study: Study) -> JudgeJob | None:
    """The job a figure shows when none is picked: the largest finished job on the study (most
    comparisons counted), not the latest, which may be a six-comparison trial; the latest running
    one when none has finished."""
    finished = (
        study.judge_jobs.filter(status__in=["done", "stopped"])
        .annotate(counted=Count("outcomes", filter=~Q(outcomes__outcome="")))
        .order_by("-counted", "-created_at")
        .first()
    )
    return finished or study.judge_jobs.filter(status="running").order_by("-created_at").first()

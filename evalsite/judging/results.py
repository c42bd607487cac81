"""A judge job's results: one outcome per comparison from its two orders (by the job's policy),
the consistency across orders, parse failures, tokens and cost."""

from __future__ import annotations

from collections import Counter, defaultdict

from django.db.models import Count, Q, Sum

from evalsite.judging.models import JudgeCall, JudgeJob, JudgeVerdict
from stats.outcomes import combine_orders


def summary(job: JudgeJob) -> dict:
    by_comparison: dict[int, dict[str, str]] = defaultdict(dict)
    for comparison_id, order, outcome in job.verdicts.values_list("comparison_id", "order", "outcome"):
        by_comparison[comparison_id][order] = outcome
    both = [o for o in by_comparison.values() if all(o.get(k) for k in JudgeVerdict.Order.values)]
    consistent = sum(1 for o in both if len(set(o.values())) == 1)
    calls = JudgeCall.objects.filter(verdicts__job=job).distinct()
    totals = calls.aggregate(tokens_in=Sum("input_tokens"), tokens_out=Sum("output_tokens"), cost=Sum("cost"))
    counts = job.verdicts.aggregate(
        parse_failures=Count("id", filter=Q(outcome="", call__error="")),
        api_failures=Count("id", filter=~Q(call__error="")),
        first_wins=Count("id", filter=Q(call__verdict="first")),
        second_wins=Count("id", filter=Q(call__verdict="second")),
        ties=Count("id", filter=Q(call__verdict="tie")),
    )
    per_baseline: dict[str, Counter] = defaultdict(Counter)
    baselines = dict(job.comparisons().values_list("pk", "baseline__name"))
    for comparison_id, orders in by_comparison.items():
        combined = combine_orders(
            orders.get(JudgeVerdict.Order.CANDIDATE_FIRST, ""),
            orders.get(JudgeVerdict.Order.BASELINE_FIRST, ""),
            job.policy,
        )
        if combined:
            per_baseline[baselines.get(comparison_id, "?")][combined] += 1
    return {
        "label": job.config.label,
        "verdicts": job.verdicts.count(),
        "consistency": consistent / len(both) if both else None,
        "pairs_with_both_orders": len(both),
        **counts,
        "tokens_in": totals["tokens_in"] or 0,
        "tokens_out": totals["tokens_out"] or 0,
        "cost": totals["cost"] or 0,
        "per_baseline": {name: dict(c) for name, c in sorted(per_baseline.items())},
    }


def rating_summary(job) -> dict:
    """Fail / Pass / Excellent shares, or the Likert mean with a 95% interval over prompts."""
    from statistics import mean, stdev

    values = list(job.ratings.values_list("response__prompt_id", "value"))
    readable = [(p, v) for p, v in values if v]
    out: dict = {"ratings": len(values), "unreadable": len(values) - len(readable), "label": job.config.label}
    if job.kind == "fpe":
        counts = Counter(v for _, v in readable)
        n = max(1, len(readable))
        out["shares"] = {grade: counts[grade] / n for grade in ("excellent", "pass", "fail")}
        out["counts"] = {grade: counts[grade] for grade in ("excellent", "pass", "fail")}
        return out
    per_prompt: dict[int, list[int]] = defaultdict(list)
    for prompt_id, value in readable:
        per_prompt[prompt_id].append(int(value))
    means = [mean(v) for v in per_prompt.values()]
    out["prompts"] = len(means)
    out["mean"] = mean(means) if means else None
    half = 1.96 * stdev(means) / len(means) ** 0.5 if len(means) > 1 else None
    out["ci95"] = (out["mean"] - half, out["mean"] + half) if half is not None else None
    return out

"""The dashboard's numbers, aggregated in the database (GROUP BY), then finished by the pure
functions of stats/. Vote patterns per comparison are grouped again in SQL, so the rows that
reach Python are a handful per baseline, however many judgments there are."""

from __future__ import annotations

from collections import Counter, defaultdict

from django.db import connection

from evalsite.annotation.models import Study
from evalsite.judging.models import JudgeJob
from stats.outcomes import (
    LOSS,
    TIE,
    WIN,
    Pattern,
    combine_orders,
    fleiss_from_patterns,
    tie_discounted_from_patterns,
    win_tie_loss,
)

# The paper's Figure 1 (people) and Figure 2 (GPT-4), % of 300 prompts: LIMA wins / tie / loses.
PAPER = {
    "human": {
        "Alpaca 65B": (53, 21, 26),
        "DaVinci003": (44, 21, 35),
        "Bard": (33, 25, 42),
        "Claude": (24, 22, 54),
        "GPT-4": (18, 25, 57),
    },
    "gpt4": {
        "Alpaca 65B": (64, 19, 17),
        "DaVinci003": (54, 23, 23),
        "Bard": (27, 26, 47),
        "Claude": (14, 23, 63),
        "GPT-4": (19, 15, 66),
    },
}
PAPER_AGREEMENT = {
    "crowd-crowd": 0.82,
    "crowd-author": 0.81,
    "author-author": 0.78,
    "crowd-GPT-4": 0.78,
    "author-GPT-4": 0.79,
}


def _rows(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


HUMAN_PATTERNS = """
SELECT baseline, c, b, t, COUNT(*) FROM (
  SELECT s.name AS baseline,
         SUM(CASE WHEN j.outcome = 'candidate' THEN 1 ELSE 0 END) AS c,
         SUM(CASE WHEN j.outcome = 'baseline' THEN 1 ELSE 0 END) AS b,
         SUM(CASE WHEN j.outcome = 'tie' THEN 1 ELSE 0 END) AS t
  FROM annotation_humanjudgment j
  JOIN annotation_comparison cmp ON cmp.id = j.comparison_id
  JOIN catalog_system s ON s.id = cmp.baseline_id
  WHERE cmp.study_id = %s AND NOT cmp.is_gold
    AND j.annotator_id NOT IN (SELECT user_id FROM annotation_study_excluded WHERE study_id = %s)
  GROUP BY cmp.id, s.name
) per_comparison GROUP BY baseline, c, b, t
"""

JUDGE_PATTERNS = """
SELECT baseline, cf, bf, COUNT(*) FROM (
  SELECT s.name AS baseline,
         MAX(CASE WHEN v."order" = 'cand_first' THEN v.outcome ELSE '' END) AS cf,
         MAX(CASE WHEN v."order" = 'base_first' THEN v.outcome ELSE '' END) AS bf
  FROM judging_judgeverdict v
  JOIN annotation_comparison cmp ON cmp.id = v.comparison_id
  JOIN catalog_system s ON s.id = cmp.baseline_id
  WHERE v.job_id = %s
  GROUP BY cmp.id, s.name
) per_comparison GROUP BY baseline, cf, bf
"""

PERSON_JUDGE = """
SELECT j.outcome, x.cf, x.bf, COUNT(*) FROM annotation_humanjudgment j
JOIN (
  SELECT v.comparison_id,
         MAX(CASE WHEN v."order" = 'cand_first' THEN v.outcome ELSE '' END) AS cf,
         MAX(CASE WHEN v."order" = 'base_first' THEN v.outcome ELSE '' END) AS bf
  FROM judging_judgeverdict v WHERE v.job_id = %s GROUP BY v.comparison_id
) x ON x.comparison_id = j.comparison_id
WHERE j.annotator_id NOT IN (SELECT user_id FROM annotation_study_excluded WHERE study_id = %s)
GROUP BY j.outcome, x.cf, x.bf
"""

PER_ANNOTATOR = """
SELECT u.username,
       SUM(CASE WHEN j1.outcome = j2.outcome THEN 1.0
                WHEN (j1.outcome = 'tie') <> (j2.outcome = 'tie') THEN 0.5 ELSE 0.0 END),
       COUNT(*)
FROM annotation_humanjudgment j1
JOIN annotation_humanjudgment j2 ON j2.comparison_id = j1.comparison_id AND j2.annotator_id <> j1.annotator_id
JOIN annotation_comparison cmp ON cmp.id = j1.comparison_id
JOIN auth_user u ON u.id = j1.annotator_id
WHERE cmp.study_id = %s AND NOT cmp.is_gold
GROUP BY u.username ORDER BY u.username
"""

POSITION = """
SELECT c.verdict, COUNT(*) FROM judging_judgeverdict v JOIN judging_judgecall c ON c.id = v.call_id
WHERE v.job_id = %s GROUP BY c.verdict
"""

LENGTH_BINS = [
    (-(10**9), -500, "candidate shorter by 500+"),
    (-500, -100, "shorter by 100-500"),
    (-100, 100, "within 100 characters"),
    (100, 500, "longer by 100-500"),
    (500, 10**9, "candidate longer by 500+"),
]
LENGTH = """
SELECT CASE WHEN d < -500 THEN 0 WHEN d < -100 THEN 1 WHEN d <= 100 THEN 2 WHEN d <= 500 THEN 3 ELSE 4 END,
       outcome, COUNT(*)
FROM (SELECT LENGTH(rc.text) - LENGTH(rb.text) AS d, v.outcome AS outcome FROM judging_judgeverdict v
      JOIN annotation_comparison cmp ON cmp.id = v.comparison_id
      JOIN catalog_response rc ON rc.id = cmp.candidate_response_id
      JOIN catalog_response rb ON rb.id = cmp.baseline_response_id
      WHERE v.job_id = %s) lengths
GROUP BY 1, outcome
"""

COSTS = """
SELECT COUNT(*), SUM(CASE WHEN v.outcome = '' AND c.error = '' THEN 1 ELSE 0 END),
       SUM(CASE WHEN c.error <> '' THEN 1 ELSE 0 END)
FROM judging_judgeverdict v JOIN judging_judgecall c ON c.id = v.call_id WHERE v.job_id = %s
"""
CALL_TOTALS = """
SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cost), 0) FROM judging_judgecall
WHERE id IN (SELECT call_id FROM judging_judgeverdict WHERE job_id = %s)
"""


def human_patterns(study: Study) -> dict[str, dict[Pattern, int]]:
    out: dict[str, dict[Pattern, int]] = defaultdict(dict)
    for baseline, c, b, t, n in _rows(HUMAN_PATTERNS, [study.pk, study.pk]):
        out[baseline][(int(c), int(b), int(t))] = int(n)
    return out


def judge_patterns(job: JudgeJob) -> tuple[dict[str, dict[Pattern, int]], dict]:
    """Per baseline, one combined outcome per comparison as a one-vote pattern; and the
    consistency of the two orders."""
    out: dict[str, Counter] = defaultdict(Counter)
    both = agree = 0
    for baseline, cf, bf, n in _rows(JUDGE_PATTERNS, [job.pk]):
        if cf and bf:
            both += n
            agree += n if cf == bf else 0
        combined = combine_orders(cf, bf, job.policy)
        if combined:
            out[baseline][{WIN: (1, 0, 0), LOSS: (0, 1, 0), TIE: (0, 0, 1)}[combined]] += n
    return {k: dict(v) for k, v in out.items()}, {"pairs": both, "consistency": agree / both if both else None}


def figure(patterns: dict[str, dict[Pattern, int]], rule: str = "majority") -> list[dict]:
    """One bar per baseline, ordered as in the paper: the candidate's best result on top."""
    rows = [{"baseline": name, **win_tie_loss(p, rule).as_dict()} for name, p in patterns.items()]
    return sorted(rows, key=lambda r: (-r["win"], r["baseline"]))


def person_person(study: Study) -> dict:
    merged: Counter = Counter()
    for patterns in human_patterns(study).values():
        merged.update(patterns)
    accuracy, pairs = tie_discounted_from_patterns(merged)
    per_annotator = [
        {"annotator": name, "pairs": int(n), "tie_discounted_accuracy": float(score) / n if n else None}
        for name, score, n in _rows(PER_ANNOTATOR, [study.pk])
    ]
    return {
        "tie_discounted_accuracy": accuracy,
        "pairs": pairs,
        "fleiss_kappa": fleiss_from_patterns(merged),
        "per_annotator": per_annotator,
    }


def person_judge(job: JudgeJob, study: Study) -> dict:
    score = n = 0.0
    confusion: Counter = Counter()
    for human, cf, bf, count in _rows(PERSON_JUDGE, [job.pk, study.pk]):
        judge = combine_orders(cf, bf, job.policy)
        if not judge:
            continue
        confusion[(human, judge)] += count
        score += count * (1.0 if human == judge else 0.5 if (human == TIE) != (judge == TIE) else 0.0)
        n += count
    labels = [WIN, TIE, LOSS]
    total = sum(confusion.values())
    kappa = None
    if total:
        observed = sum(confusion[(x, x)] for x in labels) / total
        expected = (
            sum(sum(confusion[(x, y)] for y in labels) * sum(confusion[(y, x)] for y in labels) for x in labels)
            / total**2
        )
        kappa = (observed - expected) / (1 - expected) if expected < 1 else None
    return {"tie_discounted_accuracy": score / n if n else None, "pairs": int(n), "cohen_kappa": kappa}


def scorecard(job: JudgeJob) -> dict:
    position = dict(_rows(POSITION, [job.pk]))
    first, second = position.get("first", 0), position.get("second", 0)
    bins: dict[int, Counter] = defaultdict(Counter)
    for k, outcome, n in _rows(LENGTH, [job.pk]):
        bins[int(k)][outcome] += n
    length = []
    for k, (_, _, label) in enumerate(LENGTH_BINS):
        decided = bins[k][WIN] + bins[k][LOSS] + bins[k][TIE]
        length.append({"bin": label, "n": decided, "win_rate": bins[k][WIN] / decided if decided else None})
    verdicts, parse_failures, api_failures = _rows(COSTS, [job.pk])[0]
    tokens_in, tokens_out, cost = _rows(CALL_TOTALS, [job.pk])[0]
    return {
        "first_wins": first,
        "second_wins": second,
        "ties": position.get("tie", 0),
        "position_bias": first / (first + second) if first + second else None,
        "length": length,
        "verdicts": verdicts,
        "parse_failures": parse_failures or 0,
        "api_failures": api_failures or 0,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost": cost,
    }


def dashboard(study: Study, rule: str = "majority", job: JudgeJob | None = None) -> dict:
    human = human_patterns(study)
    data: dict = {
        "study": study,
        "rule": rule,
        "human": figure(human, rule),
        "person_person": person_person(study),
        "judge": None,
    }
    job = job or study.judge_jobs.filter(status__in=["done", "stopped", "running"]).order_by("-created_at").first()
    if job:
        patterns, consistency = judge_patterns(job)
        data["judge"] = {
            "job": job,
            "label": job.config.label,
            "figure": figure(patterns, "majority"),
            "consistency": consistency,
            "scorecard": scorecard(job),
            "person_judge": person_judge(job, study),
        }
    return data

"""The dashboard's numbers, aggregated in the database (GROUP BY), then finished by the pure
functions of stats/. Vote patterns per comparison are grouped again in SQL, so the rows that
reach Python are a handful per baseline, however many judgments there are."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from django.db import connection

from evalsite.annotation.blinding import blinding_warnings
from evalsite.annotation.models import Comparison, HumanJudgment, Study
from evalsite.annotation.quality import annotator_reliability
from evalsite.core.lookup import fetch_rows
from evalsite.core.side_by_side import side_by_side
from evalsite.dashboard.estimates import Rows, evidence, evidence_details, study_rows
from evalsite.dashboard.payloads import (
    AnnotatorAgreement,
    Breakdowns,
    Dashboard,
    DrillRow,
    JudgePanel,
    LeaderRow,
    PersonJudge,
    PersonPerson,
    ShareRow,
    Verdict,
    Vote,
    share_row,
)
from evalsite.judging.models import JudgeJob, JudgeVerdict, RatingJob
from evalsite.judging.results import default_judge_job, judge_summary, jury_summary, rating_job_summary
from stats.agreement import tie_discounted_score
from stats.outcomes import (
    LOSS,
    TIE,
    WIN,
    JudgePattern,
    Pattern,
    SharesDict,
    bradley_terry_from_counts,
    fleiss_from_patterns,
    fleiss_interval,
    judge_kappa_from_patterns,
    judge_kappa_interval,
    shares_of_rows,
    tie_discounted_from_patterns,
    win_tie_loss,
)
from stats.ranking import bradley_terry_from_shares, pair_shares, rank_sets

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


# Vote patterns come from the comparisons' own counters (kept up to date at every judgment and on
# exclusion; vote_patterns, from the rows the page reads), and the judge's from JudgeOutcome (one
# row per comparison, both orders): never a scan of judgments, verdicts or calls. The people's
# figures count the comparisons with all their votes only (completed_at; see
# annotation/precision.py): what counts is fixed before looking, and two split votes of three are
# not a tie.
PERSON_JUDGE = """
SELECT c.votes_candidate, c.votes_baseline, c.votes_tie, o.outcome, COUNT(*)
FROM judging_judgeoutcome o JOIN annotation_comparison c ON c.id = o.comparison_id
WHERE o.job_id = %s AND o.outcome <> '' AND c.completed_at IS NOT NULL
GROUP BY c.votes_candidate, c.votes_baseline, c.votes_tie, o.outcome
"""

# Each annotator against the others on the same comparisons, from the counters: with the
# annotator's own vote v on a comparison counted (c, b, t), the others agree count[v] - 1 times.
PER_ANNOTATOR = """
SELECT u.username, j.outcome, c.votes_candidate, c.votes_baseline, c.votes_tie, COUNT(*)
FROM annotation_humanjudgment j
JOIN annotation_comparison c ON c.id = j.comparison_id
JOIN auth_user u ON u.id = j.annotator_id
WHERE c.study_id = %s AND NOT c.is_gold AND c.votes_candidate + c.votes_baseline + c.votes_tie > 1
  AND j.annotator_id NOT IN (SELECT user_id FROM annotation_study_excluded WHERE study_id = %s)
GROUP BY u.username, j.outcome, c.votes_candidate, c.votes_baseline, c.votes_tie
"""


def vote_patterns(per: dict[str, Rows]) -> dict[str, dict[Pattern, int]]:
    """From rows already read (estimates.study_rows): per baseline, how many of its complete
    comparisons have each count of (candidate, baseline, tie) votes."""
    out: dict[str, dict[Pattern, int]] = {}
    for name, rows in per.items():
        complete = ~np.isnan(rows.completed)
        if not complete.any():
            continue
        c, b, t = rows.counts[complete].astype(np.int64).T
        codes, n = np.unique((c << 40) | (b << 20) | t, return_counts=True)  # one number a pattern: fast
        out[name] = {
            (int(code >> 40), int((code >> 20) & 0xFFFFF), int(code & 0xFFFFF)): int(k)
            for code, k in zip(codes, n, strict=True)
        }
    return out


def figure(patterns: dict[str, dict[Pattern, int]], rule: str = "majority") -> list[ShareRow]:
    """One bar per baseline, ordered as in the paper: the candidate's best result on top."""
    rows = [share_row(name, win_tie_loss(p, rule).as_dict()) for name, p in patterns.items()]
    return sorted(rows, key=lambda r: (-r["win"], r["baseline"]))


def person_person(study: Study, patterns: dict[str, dict[Pattern, int]], per_annotator: bool = True) -> PersonPerson:
    merged: Counter = Counter()
    for p in patterns.values():
        merged.update(p)
    accuracy, pairs = tie_discounted_from_patterns(merged)
    result: PersonPerson = {
        "tie_discounted_accuracy": accuracy,
        "pairs": pairs,
        "fleiss_kappa": fleiss_from_patterns(merged),
        "fleiss_kappa_ci": fleiss_interval(merged),
        "per_annotator": None,
    }
    if per_annotator:
        result["per_annotator"] = annotator_agreement(study)
    return result


def annotator_agreement(study: Study) -> list[AnnotatorAgreement]:
    per: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for name, own, c, b, t, n in fetch_rows(PER_ANNOTATOR, [study.pk, study.pk]):
        votes = {WIN: c, LOSS: b, TIE: t}
        votes[own] -= 1  # the others
        per[name][0] += n * sum(count * tie_discounted_score(own, other) for other, count in votes.items())
        per[name][1] += n * sum(votes.values())
    return [
        {"annotator": name, "pairs": int(p), "tie_discounted_accuracy": s / p if p else None}
        for name, (s, p) in sorted(per.items())
    ]


def person_judge(job: JudgeJob, study: Study) -> PersonJudge:
    """Each person's vote against the judge's counted outcome on the same comparison: raw agreement
    (tie-discounted, the paper's measure) and Cohen's kappa, chance-corrected, with a 95% interval
    that resamples comparisons (a comparison's votes move together)."""
    score = n = 0.0
    patterns: dict[JudgePattern, int] = {}
    for c, b, t, judge, count in fetch_rows(PERSON_JUDGE, [job.pk]):
        patterns[(int(c), int(b), int(t), judge)] = int(count)
        for human, votes in ((WIN, c), (LOSS, b), (TIE, t)):
            score += votes * count * tie_discounted_score(human, judge)
            n += votes * count
    return {
        "tie_discounted_accuracy": score / n if n else None,
        "pairs": int(n),
        "cohen_kappa": judge_kappa_from_patterns(patterns),
        "cohen_kappa_ci": judge_kappa_interval(patterns),
        "comparisons": sum(patterns.values()),
    }


KAPPA_SLIGHT = 0.2  # Landis and Koch's "slight" agreement: below it, little beyond chance


def judge_flags(judge: JudgePanel | None) -> list[str]:
    """What the agreement card says about the judge before any number: its agreement with the
    people beyond chance (kappa, not the raw share, which a judge that always says "tie" or always
    picks one side can make look good), and its own warnings (orders that disagree, position bias)."""
    if not judge:
        return []
    flags = []
    pj = judge.get("person_judge")
    if pj is not None:
        kappa, ci = pj["cohen_kappa"], pj["cohen_kappa_ci"]
        label = judge.get("label", "the judge")
        if kappa is None:
            flags.append(f"{label} and the people share no counted comparison yet: its agreement is unknown.")
        elif kappa < KAPPA_SLIGHT or (ci is not None and ci[0] <= 0):
            interval = f" (95% interval {ci[0]:.2f} to {ci[1]:.2f})" if ci else ""
            flags.append(
                f"{label} agrees with the people little beyond chance: Cohen's kappa {kappa:.2f}{interval} over "
                f"{pj['comparisons']} comparisons. Its raw agreement says little here; read Figure 2 with care."
            )
    return flags + list(judge.get("warnings") or [])


OUTCOME_COLUMN = {WIN: 0, TIE: 1, LOSS: 2}


def counting(rule: str) -> str:
    """How the parts of the page other than Figure 1 count votes under a rule: reliability weights
    are Figure 1's; elsewhere every vote counts."""
    return "all" if rule == "reliability" else rule


def reliability_figure(study: Study) -> tuple[list[ShareRow], dict[str, float]] | None:
    """Figure 1 with every vote weighted by its annotator's Dawid-Skene reliability (fitted on
    this study's votes): each comparison counts once, as its weighted vote shares; an annotator
    who shares no comparison with anyone weighs the fitted annotators' mean. None where no
    comparison has two votes (nothing to fit reliabilities on)."""
    votes = list(
        HumanJudgment.objects.filter(
            comparison__study=study, comparison__is_gold=False, comparison__completed_at__isnull=False
        )
        .exclude(annotator__in=study.excluded.all())
        .values_list("comparison_id", "annotator__username", "outcome", "comparison__baseline__name")
    )
    weights = annotator_reliability([(c, a, o) for c, a, o, _ in votes])
    if not weights:
        return None
    fallback = sum(weights.values()) / len(weights)
    per: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
    counted: Counter = Counter()
    for comparison, annotator, outcome, baseline in votes:
        row = per[baseline].setdefault(comparison, np.zeros(3))
        row[OUTCOME_COLUMN[outcome]] += weights.get(annotator, fallback)
        counted[baseline] += 1
    rows = []
    for baseline, by_comparison in per.items():
        matrix = np.array(list(by_comparison.values()))
        matrix = matrix / matrix.sum(1, keepdims=True)
        rows.append(share_row(baseline, shares_of_rows(matrix, votes=counted[baseline]).as_dict()))
    return sorted(rows, key=lambda r: (-r["win"], r["baseline"])), weights


def dashboard(study: Study, rule: str = "majority", job: JudgeJob | None = None, details: bool = True) -> Dashboard:
    """Everything the page shows. Without `details`, the two agreement tables that scan every
    judgment (per annotator, person-judge) are left out: the page loads them in a second request.
    Rule "reliability" weighs each vote by its annotator's reliability in Figure 1 (the rest of
    the page counts every vote, as rule "all")."""
    job = job or default_judge_job(study)
    # every comparison's counters read once: Figure 1's vote patterns and the evidence both use
    # them; the judge's panel (a GROUP BY over its outcomes) is read at the same time
    majority, panel = side_by_side(
        lambda: study_rows(study, job, "majority", style=details),
        lambda: judge_panel(job, study, details) if job else None,
    )
    human = vote_patterns(majority)
    data: Dashboard = {
        "study": study,
        "rule": rule,
        "human": figure(human, counting(rule)),
        "person_person": person_person(study, human, per_annotator=details),
        "judge": None,
        "reliability": None,
    }
    if rule == "reliability":
        reweighted = reliability_figure(study)
        if reweighted is not None:
            data["human"], data["reliability"] = reweighted
        rule = counting(rule)
    data["judge"] = panel
    data["evidence"] = evidence(study, job, rule, details=details, majority=majority)
    for row in data["human"]:
        row["assisted"] = data["evidence"]["assisted"].get(row["baseline"])
        if weighted := data["evidence"]["people_weighted"].get(row["baseline"]):
            # a sampled study: its votes went where the judge was unsure, so they are weighted back
            row["win"], row["tie"], row["loss"] = weighted["win"], weighted["tie"], weighted["loss"]
            row["win_ci"], row["loss_ci"], row["weighted"] = weighted["win_ci"], weighted["loss_ci"], True
    return data


def agreement(study: Study, rule: str = "majority", job: JudgeJob | None = None) -> dict:
    """The page's second request, alone (not the figures and the evidence again): the judge's
    agreement with the people and its flags, each annotator's agreement with the others, and the
    breakdowns by prompt source and tag; the tables that scan every judgment."""
    job = job or default_judge_job(study)
    # its card shows the judge's agreement and warnings, no money: the verdicts' cost (a join of
    # every verdict to its call, 0.6 s of 2.5 at a million verdicts) is the job page's
    judge = judge_panel(job, study, details=True, verdict_cost=False) if job else None
    return {
        "judge": judge,
        "judge_flags": judge_flags(judge),
        "person_person": {"per_annotator": annotator_agreement(study)},
        "breakdowns": breakdowns(study, counting(rule)),
        "paper_agreement": PAPER_AGREEMENT,
    }


def evidence_panel(study: Study, rule: str = "majority", job: JudgeJob | None = None) -> dict:
    """The page's other second request, what reads every answer: whether annotators can tell the
    systems apart (the blinding checks, which every other form of Figure 1 carries in its notes),
    the judge's calibration against the people and the win rates controlled for length and style."""
    return {
        "blinding": blinding_warnings(study),
        "evidence": evidence_details(study, job or default_judge_job(study), counting(rule)),
    }


def judge_panel(job: JudgeJob, study: Study, details: bool = True, verdict_cost: bool | None = None) -> JudgePanel:
    """What the page, the report and the exports show of the judge: judge_summary's numbers.
    ``verdict_cost`` (default: with the details) joins every verdict to its call for what the calls
    behind them cost; the agreement panel shows no money and leaves it out."""
    summary = judge_summary(job, verdict_cost=details if verdict_cost is None else verdict_cost)
    return {  # judge_summary's other keys pass through
        **summary,
        "figure": summary["per_baseline"],
        "scorecard": {
            key: summary[key]
            for key in (
                "first_wins",
                "second_wins",
                "ties",
                "position_bias",
                "length",
                "verdicts",
                "parse_failures",
                "api_failures",
                "unreadable_share",
            )
        }
        | {"tokens_in": job.tokens_in, "tokens_out": job.tokens_out, **summary["money"]},
        "person_judge": person_judge(job, study) if details else None,
        "jury_panel": jury_panel(job),
    }


def jury_panel(job: JudgeJob) -> dict | None:
    """When the job sits on a jury: the jury's and each member's agreement with the people."""
    if not job.jury:
        return None
    members = list(JudgeJob.objects.filter(study=job.study, jury=job.jury).select_related("config", "study"))
    return jury_summary(members) if len(members) > 1 else None


BY_SOURCE = """
SELECT p.source, c.votes_candidate, c.votes_baseline, c.votes_tie, COUNT(*)
FROM annotation_comparison c JOIN catalog_prompt p ON p.id = c.prompt_id
WHERE c.study_id = %s AND NOT c.is_gold AND c.completed_at IS NOT NULL
GROUP BY p.source, c.votes_candidate, c.votes_baseline, c.votes_tie
"""


def _tag_condition() -> str:
    if connection.vendor == "postgresql":
        return "p.tags @> jsonb_build_array(%s::text)"
    return "EXISTS (SELECT 1 FROM json_each(p.tags) WHERE json_each.value = %s)"


def breakdowns(
    study: Study, rule: str = "majority", tags: tuple[str, ...] = ("ood", "safety", "multi_turn")
) -> Breakdowns:
    """Win / tie / loss by prompt source and by tag (all baselines together)."""
    by_source: dict[str, Counter] = defaultdict(Counter)
    for source, c, b, t, n in fetch_rows(BY_SOURCE, [study.pk]):
        by_source[source or "(none)"][(int(c), int(b), int(t))] += int(n)
    by_tag: dict[str, SharesDict] = {}
    for tag in tags:
        sql = f"""SELECT c.votes_candidate, c.votes_baseline, c.votes_tie, COUNT(*)
                  FROM annotation_comparison c JOIN catalog_prompt p ON p.id = c.prompt_id
                  WHERE c.study_id = %s AND NOT c.is_gold AND c.completed_at IS NOT NULL
                    AND {_tag_condition()}
                  GROUP BY c.votes_candidate, c.votes_baseline, c.votes_tie"""
        patterns = {(int(c), int(b), int(t)): int(n) for c, b, t, n in fetch_rows(sql, [study.pk, tag])}
        if patterns:
            by_tag[tag] = win_tie_loss(patterns, rule).as_dict()
    return {
        "source": {k: win_tie_loss(v, rule).as_dict() for k, v in sorted(by_source.items())},
        "tag": by_tag,
    }


MAJORITY_SQL = """CASE WHEN c.votes_candidate > c.votes_baseline AND c.votes_candidate > c.votes_tie THEN 'candidate'
                       WHEN c.votes_baseline > c.votes_candidate AND c.votes_baseline > c.votes_tie THEN 'baseline'
                       ELSE 'tie' END"""


def drill_down(
    study: Study, baseline: str, outcome: str, limit: int = 200, job: JudgeJob | None = None
) -> list[DrillRow]:
    """The comparisons behind one bar segment (the people's majority outcome, or with ``job`` the
    judge's counted one: Figure 2's bars), with both responses, every vote and every verdict of
    the study's judge jobs."""
    if job is not None:
        ids = list(
            job.outcomes.filter(baseline__name=baseline, outcome=outcome, comparison__is_gold=False)
            .order_by("comparison_id")
            .values_list("comparison_id", flat=True)[:limit]
        )
    else:
        ids = [
            row[0]
            for row in fetch_rows(
                f"""SELECT c.id FROM annotation_comparison c JOIN catalog_system s ON s.id = c.baseline_id
                WHERE c.study_id = %s AND NOT c.is_gold AND s.name = %s
                  AND c.completed_at IS NOT NULL AND {MAJORITY_SQL} = %s
                ORDER BY c.id LIMIT %s""",
                [study.pk, baseline, outcome, limit],
            )
        ]
    comparisons = (
        Comparison.objects.filter(pk__in=ids)
        .select_related("prompt", "candidate_response", "baseline_response")
        .order_by("pk")
    )
    votes: dict[int, list[Vote]] = defaultdict(list)
    for cid, name, o, reason in HumanJudgment.objects.filter(comparison__in=ids).values_list(
        "comparison_id", "annotator__username", "outcome", "reason"
    ):
        votes[cid].append({"annotator": name, "outcome": o, "reason": reason})
    verdicts: dict[int, list[Verdict]] = defaultdict(list)
    for cid, job_id, order, o, raw in JudgeVerdict.objects.filter(comparison__in=ids).values_list(
        "comparison_id", "job_id", "order", "outcome", "call__raw_output"
    ):
        verdicts[cid].append({"job": job_id, "order": order, "outcome": o, "raw": raw})
    return [{"comparison": c, "votes": votes[c.pk], "verdicts": verdicts[c.pk]} for c in comparisons]


LEADERBOARD = f"""
SELECT cand.name, base.name, {MAJORITY_SQL}, COUNT(*)
FROM annotation_comparison c
JOIN annotation_study st ON st.id = c.study_id
JOIN catalog_system cand ON cand.id = st.candidate_id
JOIN catalog_system base ON base.id = c.baseline_id
WHERE NOT c.is_gold AND c.completed_at IS NOT NULL
GROUP BY cand.name, base.name, {MAJORITY_SQL}
"""


def leaderboard(bootstrap: int = 200) -> list[LeaderRow]:
    """Bradley-Terry strengths of every system across every study (people's majority outcome per
    comparison), with bootstrap intervals; the first system is the strongest."""
    cells: dict[tuple[str, str, str], int] = {}
    games: Counter = Counter()
    for cand, base, outcome, n in fetch_rows(LEADERBOARD, []):
        cells[(cand, base, {WIN: "win", LOSS: "loss", TIE: "tie"}[outcome])] = int(n)
        games[cand] += int(n)
        games[base] += int(n)
    strengths = bradley_terry_from_counts(cells, bootstrap=bootstrap)
    ranks = leaderboard_rank_sets(cells)
    rows: list[LeaderRow] = [
        {
            "system": name,
            "strength": s,
            "low": lo,
            "high": hi,
            "comparisons": games[name],
            "rank_low": ranks[name][0],
            "rank_high": ranks[name][1],
        }
        for name, (s, lo, hi) in strengths.items()
    ]
    return sorted(rows, key=lambda r: -r["strength"])


def leaderboard_rank_sets(cells: dict[tuple[str, str, str], int]) -> dict[str, tuple[int, int]]:
    """Each system's rank-set (the ranks it may hold; 1 the strongest) from the same outcomes
    (stats.ranking: the people's share per pair, Bradley-Terry, intervals on every difference that
    hold for every pair at once and at every look, tuned for the studies' comparisons)."""
    names = sorted({name for a, b, _ in cells for name in (a, b)})
    if len(names) < 2:
        return dict.fromkeys(names, (1, 1))
    index = {name: k for k, name in enumerate(names)}
    keys = [key for key, n in cells.items() if n > 0]
    counts = [cells[key] for key in keys]
    first = np.repeat([index[a] for a, _, _ in keys], counts)
    second = np.repeat([index[b] for _, b, _ in keys], counts)
    y = np.repeat([{"win": 1.0, "tie": 0.5, "loss": 0.0}[o] for _, _, o in keys], counts)
    shares = pair_shares(len(names), (first, second, y, np.zeros(len(y))))
    planned = Comparison.objects.filter(is_gold=False).count()  # the studies' size, fixed by their design
    sets = rank_sets(bradley_terry_from_shares(len(names), shares), len(y), planned_n=max(planned, len(y)))
    return {name: (int(sets.low[k]), int(sets.high[k])) for name, k in index.items()}


def absolute_ratings() -> list[dict]:
    """Every finished rating job: Fail / Pass / Excellent shares, the Likert mean or the safe share (95% CI)."""
    out = []
    for job in RatingJob.objects.filter(status__in=["done", "stopped"]).select_related(
        "system", "prompt_set", "config"
    ):
        out.append({"job": job, **rating_job_summary(job)})
    return out

"""What the judge adds to the people's numbers of one study (stats/evidence.py on its rows): the
people's shares estimated with the judge's help (PPI++), win rates controlled for answer length,
the judge's calibration against this study's people, and each baseline's anytime-valid interval
(``study_status``, which pages read and evalsite/dashboard/stopping.py decides with).

What each number estimates: the people's share (win / tie / loss by each comparison's majority) over
the study's comparisons, as if every comparison had all its votes. The sample: the comparisons with
all their votes (``Comparison.completed_at``), a uniformly random part of each baseline's, since
claims walk one random order per study; in a sampled study, the walked prefix of that order. The
judge's verdicts enter only from a finished job that judged every comparison (its mean over all of
them must be known); a comparison it could not judge takes its mean for that baseline, which is a
prediction like any other, so the estimate stays unbiased.

One row per comparison is read (votes counters, the judge's outcome and probability, both answers'
lengths): a few hundred to a few thousand rows per study, never a scan of judgments or calls."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import NamedTuple, TypedDict

import numpy as np

from evalsite.annotation import precision
from evalsite.annotation.models import Study
from evalsite.core.lookup import fetch_rows
from evalsite.dashboard.payloads import Assisted, Evidence, StudyStatus, Weighted
from evalsite.judging.models import JudgeJob
from stats.evidence import (
    STYLE_FEATURES,
    assisted_sequence,
    classical_mean,
    cs_planned_n,
    length_controlled_win_rate,
    ppi_mean,
    sampled_sequence,
    sampled_terms,
    style_controlled_win_rate,
    walked,
)
from stats.outcomes import LOSS, TIE, WIN

OUTCOMES = (WIN, TIE, LOSS)
CHARS_PER_TOKEN = 4  # lengths in tokens, estimated from characters when the response has no count


def _count(column: str, *tags: str) -> str:
    """SQL (PostgreSQL and SQLite alike) for how often the rendered HTML in ``column`` opens one of
    ``tags``: its length less its length with the tag taken out, over the tag's length."""
    return " + ".join(
        f"(LENGTH(COALESCE({column}, '')) - LENGTH(REPLACE(COALESCE({column}, ''), '<{t}', ''))) / {len(t) + 1}"
        for t in tags
    )


def _style(alias: str) -> str:
    """One response's style features, in STYLE_FEATURES' order (length in tokens)."""
    return ", ".join(
        [
            f"COALESCE({alias}.completion_tokens, LENGTH({alias}.text) / {CHARS_PER_TOKEN})",
            _count(f"{alias}.html", "h1", "h2", "h3", "h4", "h5", "h6"),
            _count(f"{alias}.html", "li"),
            _count(f"{alias}.html", "strong"),
        ]
    )


ROWS = f"""
SELECT s.name, c.votes_candidate, c.votes_baseline, c.votes_tie, o.outcome, o.p_win,
       o.cand_first_p_tie, o.base_first_p_tie,
       c.draw_order, c.sampling_probability, c.people_wanted, c.completed_at, c.id,
       {_style("cr")}, {_style("br")}
FROM annotation_comparison c
JOIN catalog_system s ON s.id = c.baseline_id
JOIN catalog_response cr ON cr.id = c.candidate_response_id
JOIN catalog_response br ON br.id = c.baseline_response_id
LEFT JOIN judging_judgeoutcome o ON o.comparison_id = c.id AND o.job_id = %s
WHERE c.study_id = %s AND NOT c.is_gold
ORDER BY c.draw_order, c.id
"""


def _fixed(*shares: float) -> np.ndarray:
    array = np.array(shares)
    array.flags.writeable = False  # shared by every row with this outcome: read only
    return array


# one comparison's outcome as shares of (win, tie, loss), made once: a study of 500,000
# comparisons reads a million of them per page
AS_WIN, AS_TIE, AS_LOSS = _fixed(1.0, 0.0, 0.0), _fixed(0.0, 1.0, 0.0), _fixed(0.0, 0.0, 1.0)
AS_SHARES = {"candidate": AS_WIN, "tie": AS_TIE, "baseline": AS_LOSS}


def _people(c: int, b: int, t: int, rule: str) -> np.ndarray | None:
    """The people's outcome of one comparison as shares of (win, tie, loss): the majority (a
    draw is a tie) or, with rule "all", the vote shares."""
    total = c + b + t
    if not total:
        return None
    if rule == "all":
        return np.array([c, t, b], dtype=float) / total
    if c > b and c > t:
        return AS_WIN
    if b > c and b > t:
        return AS_LOSS
    return AS_TIE


def _judge(outcome: str | None, p_win, p_ties: list) -> np.ndarray | None:
    """The judge's view of one comparison as (win, tie, loss): its probabilities where it gave
    them, else its counted verdict."""
    if p_win is not None:
        ties = [p for p in p_ties if p is not None]
        tie = min(float(np.mean(ties)) if ties else 0.0, 1.0 - p_win)
        return np.array([p_win, tie, 1.0 - p_win - tie])
    if outcome:
        return AS_SHARES[outcome]
    return None


class Row(NamedTuple):
    """One comparison: the people's shares (None until it has all its votes), the judge's (None:
    not judged), the candidate's length minus the baseline's (tokens), its place in the study's
    random order, in a sampled study its chance of being asked of people and whether it was, and
    when it got its last vote."""

    people: np.ndarray | None
    judge: np.ndarray | None
    length: float
    order: int | None = None
    pi: float | None = None
    wanted: bool = True
    style: tuple = ()  # STYLE_FEATURES of the candidate's answer, then of the baseline's
    completed: object = None  # a datetime; None: not complete
    pk: int = 0


def uncertainty_by_comparison(job: JudgeJob) -> dict[int, float | None]:
    """How unsure the judge is of each comparison it saw, as its expected squared error on the
    people's "candidate wins": p (1 - p) of its soft verdict; without one, a rough stand-in from its
    counted verdicts (0.1 when both orders agree on a winner, 0.25 otherwise)."""
    out: dict[int, float | None] = {}
    for pk, p_win, first, second in job.outcomes.values_list("comparison_id", "p_win", "cand_first", "base_first"):
        if p_win is not None:
            out[pk] = p_win * (1 - p_win)
        else:
            out[pk] = 0.1 if first and first == second and first != TIE else 0.25
    return out


def usable(job: JudgeJob | None) -> bool:
    """Whether the job's verdicts may enter the people's estimates: finished, over every
    comparison of the study (the judge's mean over all of them must be known). A running job has
    judged the first comparisons only; a stopped one (its budget) some."""
    return job is not None and job.status == "done" and not job.comparison_ids


def study_rows(study: Study, job: JudgeJob | None, rule: str) -> dict[str, list[Row]]:
    """Per baseline, its comparisons in the study's random order, with the judge's view where
    ``job`` gave one (any job: calibration and length control read the verdicts themselves)."""
    per: dict[str, list[Row]] = defaultdict(list)
    for name, c, b, t, outcome, p_win, p_tie_a, p_tie_b, order, pi, wanted, completed, pk, *style in fetch_rows(
        ROWS, [job.pk if job else -1, study.pk]
    ):
        people = _people(int(c), int(b), int(t), rule) if completed is not None else None
        judge = _judge(outcome, p_win, [p_tie_a, p_tie_b])
        features = tuple(float(v or 0) for v in style)
        length = features[0] - features[len(STYLE_FEATURES)]
        per[name].append(Row(people, judge, length, order, pi, bool(wanted), features, completed, pk))
    return per


def predicted(per: dict[str, list[Row]]) -> dict[str, list[Row]]:
    """The rows of a usable job with the judge's view as a prediction on every comparison: where
    the judge could not judge one, its mean over the baseline's others (a prediction like any
    other: the estimates stay unbiased, the judge's mean over every comparison known)."""
    out = {}
    for name, rows in per.items():
        seen = [r.judge for r in rows if r.judge is not None]
        mean = np.mean(seen, axis=0) if seen else np.full(3, 1 / 3)
        out[name] = [r if r.judge is not None else r._replace(judge=mean) for r in rows]
    return out


def _sampled(rows: list[Row]) -> bool:
    return bool(rows) and all(r.order is not None and r.pi is not None for r in rows)


def sampled_estimates(rows: list[Row], assisted: bool) -> tuple[list[np.ndarray], int, int, float]:
    """A sampled study's per-comparison terms of (win, tie, loss) over the walked prefix
    (stats.evidence.walked): with the judge's help where ``assisted`` (the rows carry a usable
    job's view), else people alone (Horvitz-Thompson). Returns the terms per outcome, the people's
    comparisons among them, the walked comparisons and the judge's weight on the win share."""
    kept = [rows[i] for i in _walk(rows)]
    with_judge = assisted and all(r.judge is not None for r in rows)
    drawn = [r.wanted and r.people is not None for r in kept]
    pi = [r.pi for r in kept]
    terms, lams = [], []
    for k in range(3):
        y = [r.people[k] if r.people is not None else 0.0 for r in kept]
        f = [r.judge[k] if with_judge and r.judge is not None else 0.0 for r in kept]
        f_mean = float(np.mean([r.judge[k] for r in rows if r.judge is not None])) if with_judge else None
        t, lam = sampled_terms(y, f, drawn, pi, None if with_judge else 0.0, f_mean)
        terms.append(t)
        lams.append(lam)
    return terms, sum(drawn), len(kept), lams[0]


def _walk(rows: list[Row]) -> np.ndarray:
    """The walked prefix of a sampled study: every comparison in its order up to the first one
    drawn for people that does not have all its votes yet."""
    return walked([r.order or 0 for r in rows], [r.wanted for r in rows], [r.people is not None for r in rows])


class _Estimated(TypedDict):
    win: float
    tie: float
    loss: float
    win_ci: tuple[float, float]
    loss_ci: tuple[float, float]
    lam: float


class _Worth(TypedDict):
    effective_n: float
    worth: int


def _share_row(estimates: list) -> _Estimated:
    win, tie, loss = estimates
    return {
        "win": win.value,
        "tie": tie.value,
        "loss": loss.value,
        "win_ci": (max(win.low, 0.0), min(win.high, 1.0)),
        "loss_ci": (max(loss.low, 0.0), min(loss.high, 1.0)),
        "lam": win.lam,
    }


def _worth(estimate, people: int) -> _Worth:
    """How many people's votes the judge was worth on the win share: the effective sample size of
    the judge-assisted estimate (the people-only votes that would have given its precision) less
    the people's votes it used; 0 when it was worth nothing (then the bar is the people's own)."""
    effective = estimate.effective_n if estimate.effective_n is not None else float(people)
    return {"effective_n": effective, "worth": max(round(effective - people), 0)}


def judge_assisted(per: dict[str, list[Row]]) -> dict[str, Assisted]:
    """Per baseline, the people's shares from their votes on the comparisons that have all of
    them and the judge's on the others (PPI++ per outcome; the weight on the judge chosen from the
    data), with intervals at one look that hold at any n (an exact binomial interval at the
    estimate's effective sample size). ``per``: a usable job's rows, ``predicted``.
    The comparisons people finished must be a random part of the study, as the study's random
    order makes them; a sampled study's are weighted back by their chances (active inference)."""
    out: dict[str, Assisted] = {}
    for name, rows in per.items():
        if not rows or any(r.judge is None for r in rows):
            continue
        if _sampled(rows):
            terms, n, walked_n, lam = sampled_estimates(rows, assisted=True)
            if n < 2 or walked_n < 2:
                continue
            estimates = [classical_mean(t, cap=walked_n) for t in terms]
            worth = _worth(estimates[0], n)
            out[name] = {**_share_row(estimates), "lam": lam, "n": n, "judge_only": walked_n - n, **worth}
            continue
        labelled = [(r.people, r.judge) for r in rows if r.people is not None]
        unlabelled = [r.judge for r in rows if r.people is None]
        if len(labelled) < 2 or not unlabelled:  # the judge adds nothing where people judged everything
            continue
        y = np.array([p for p, _ in labelled])
        f = np.array([j for _, j in labelled])
        fu = np.array(unlabelled).reshape(-1, 3)
        estimates = [ppi_mean(y[:, k], f[:, k], fu[:, k]) for k in range(3)]
        worth = _worth(estimates[0], len(labelled))
        out[name] = {**_share_row(estimates), "n": len(labelled), "judge_only": len(unlabelled), **worth}
    return out


def people_weighted(per: dict[str, list[Row]]) -> dict[str, Weighted]:
    """A sampled study's people-only shares: the votes weighted back by their chances over the
    walked prefix (Horvitz-Thompson). Counting the votes as they stand would report the comparisons
    where the judge was unsure, not the study."""
    out: dict[str, Weighted] = {}
    for name, rows in per.items():
        if not _sampled(rows):
            continue
        terms, n, walked_n, _ = sampled_estimates(rows, assisted=False)
        if n >= 2 and walked_n >= 2:
            estimates = [classical_mean(t, cap=walked_n) for t in terms]
            out[name] = {**_share_row(estimates), "n": n, "walked": walked_n}
    return out


def length_control(per: dict[str, list[Row]]) -> list[dict]:
    """Per baseline, people's and the judge's win rates (a tie is half) as counted and controlled
    for the length difference (AlpacaEval 2), with how much 100 more tokens move each."""
    rows = []
    for name, items in sorted(per.items()):
        row: dict = {"baseline": name}
        for who, index in (("people", 0), ("judge", 1)):
            kept = [(v[index], v.length) for v in items if v[index] is not None]
            if len(kept) < 5:
                row[who] = None
                continue
            outcomes = [float(o[0] + o[1] / 2) for o, _ in kept]  # type: ignore[index]
            lc = length_controlled_win_rate(outcomes, [length for _, length in kept])
            k = len(STYLE_FEATURES)
            styles = [v.style for v in items if v[index] is not None]
            sc = style_controlled_win_rate(
                outcomes,
                {feature: [f[i] for f in styles] for i, feature in enumerate(STYLE_FEATURES)},
                {feature: [f[k + i] for f in styles] for i, feature in enumerate(STYLE_FEATURES)},
            )
            row[who] = {
                "raw": lc.raw,
                "controlled": lc.controlled,
                "per_100_tokens": lc.per_100_tokens,
                "n": lc.n,
                "style_controlled": sc.controlled,
                # points (of 100) the win rate moves when the candidate has twice the baseline's feature
                "style_points": {
                    feature: 100 * sc.effects[feature][0] if feature in sc.effects else None
                    for feature in STYLE_FEATURES
                },
            }
        row["both"] = [row["people"], row["judge"]]
        rows.append(row)
    return rows


def calibration(per: dict[str, list[Row]]) -> dict | None:
    """The judge against this study's people, comparison by comparison (the people's majority,
    the judge's counted verdict): confusion matrix, agreement with and without ties, Cohen's kappa,
    and the same for "always the longer answer"."""
    confusion: Counter = Counter()
    longer_agrees = longer_n = 0
    for items in per.values():
        for people, judge, length, *_ in items:
            if people is None or judge is None:
                continue
            p, j = OUTCOMES[int(np.argmax(people))], OUTCOMES[int(np.argmax(judge))]
            confusion[(p, j)] += 1
            if length and p != TIE:
                longer_n += 1
                longer_agrees += (p == WIN) == (length > 0)
    total = sum(confusion.values())
    if not total:
        return None
    agree = sum(confusion[(x, x)] for x in OUTCOMES)
    no_ties = {k: v for k, v in confusion.items() if TIE not in k}
    expected = (
        sum(sum(confusion[(x, y)] for y in OUTCOMES) * sum(confusion[(y, x)] for y in OUTCOMES) for x in OUTCOMES)
        / total**2
    )
    return {
        "labels": ["candidate", "tie", "baseline"],
        "matrix": [[confusion[(p, j)] for j in OUTCOMES] for p in OUTCOMES],
        "n": total,
        "agreement": agree / total,
        "agreement_without_ties": (
            sum(v for (p, j), v in no_ties.items() if p == j) / sum(no_ties.values()) if no_ties else None
        ),
        "cohen_kappa": (agree / total - expected) / (1 - expected) if expected < 1 else None,
        "longer_answer_agreement": longer_agrees / longer_n if longer_n else None,
        "longer_answer_n": longer_n,
    }


def self_preference(study: Study, job: JudgeJob, per: dict[str, list[Row]]) -> list[dict]:
    """Where the judge's own model is one of the study's systems: how often the judge prefers it
    and how often people do, over the comparisons both judged (the judge's outcome, the people's
    majority)."""
    model = job.config.model
    own = [s for s in (study.candidate, *study.baselines.all()) if (s.backend_config or {}).get("model") == model]
    out = []
    for system in own:
        is_candidate = system.pk == study.candidate_id
        side = 0 if is_candidate else 2  # the candidate wins, or this baseline does
        rows = [r for name, items in per.items() if is_candidate or name == system.name for r in items]
        both = [(r.people, r.judge) for r in rows if r.people is not None and r.judge is not None]
        if not both:
            continue
        out.append(
            {
                "system": system.name,
                "role": "candidate" if is_candidate else "baseline",
                "judge": float(np.mean([j[side] for _, j in both])),
                "people": float(np.mean([p[side] for p, _ in both])),
                "n": len(both),
            }
        )
    return out


def evidence(study: Study, job: JudgeJob | None, rule: str = "majority") -> Evidence:
    """What the page shows beside Figures 1 and 2 for the judge job ``job`` (the one the page
    shows): the judge-assisted bars (only from a usable job), length control, calibration; and the
    study's own precision and stop state, which depend on the judge the study fixed for its stop
    rule, never on the job the page shows. Reads only."""
    per = study_rows(study, job, rule)
    majority = per if rule == "majority" else study_rows(study, job, "majority")
    result: Evidence = {
        "assisted": judge_assisted(predicted(per)) if usable(job) else {},
        "assisted_waits": _waits(study, job),
        "people_weighted": people_weighted(per) if study.sampling_rate is not None else {},
        "length_control": length_control(per),
        "calibration": calibration(majority) if job else None,
        "complete": _completeness(per),
        "status": study_status(study),
    }
    if result["calibration"] is not None and job is not None:
        result["calibration"]["self_preference"] = self_preference(study, job, majority)
    return result


def _waits(study: Study, job: JudgeJob | None) -> str:
    """Why there is no judge-assisted bar yet, in a sentence; '' when there is or can be one."""
    if job is None:
        return (
            "The judge-assisted bars appear once a judge job has judged every comparison: "
            f"manage.py judge --study {study.name}."
        )
    if usable(job):
        return ""
    if job.comparison_ids:
        return (
            f"Judge job {job.pk} judged a subset of the comparisons; "
            "the judge-assisted bars need a job over all of them."
        )
    if job.status in ("done", "stopped", "failed"):
        return (
            f"Judge job {job.pk} ended {job.status} before judging every comparison; "
            "the judge-assisted bars need one that did."
        )
    return (
        f"The judge-assisted bars appear when judge job {job.pk} finishes "
        f"({job.progress_done} of {job.progress_total} judged): its mean over every comparison must be known."
    )


def _completeness(per: dict[str, list[Row]]) -> dict:
    """How many comparisons count (all their votes in) of those voted at all, over the baselines."""
    complete = sum(r.people is not None for rows in per.values() for r in rows)
    return {"complete": complete}


def stop_judge(study: Study) -> JudgeJob | None:
    """The judge job the study's stop rule reads (fixed on the study: Study.target_judge_job), if
    it is usable; None: people alone."""
    if study.target_judge_job is None:
        return None
    job = JudgeJob.objects.filter(pk=study.target_judge_job, study=study).select_related("config").first()
    return job if usable(job) else None


def anytime_intervals(per: dict[str, list[Row]], level: float = 0.95) -> dict[str, dict]:
    """Per baseline, the anytime-valid interval of the candidate's win share (by the people's
    majority) with the judge's help when the rows carry a usable job's predictions: PPI++ terms
    y - lam f + lam * mean(f) over the complete comparisons in the order they were completed, lam
    chosen from the earlier ones only, in a betting confidence sequence (stats.evidence.
    assisted_sequence); a sampled study's active-inference terms over its walked prefix, with the
    judge when there is one, else Horvitz-Thompson (sampled_sequence). Valid whatever the judge: a
    useless one gets lam near 0, people alone."""
    out = {}
    alpha = 1 - level
    for name, rows in per.items():
        planned = cs_planned_n(len(rows))
        with_judge = bool(rows) and all(r.judge is not None for r in rows)
        if _sampled(rows):
            prefix = _walk(rows)
            kept = [rows[i] for i in prefix]
            drawn = [r.wanted and r.people is not None for r in kept]
            if sum(drawn) < 2:
                continue
            pi_min = min(r.pi for r in rows if r.pi)
            y = [r.people[0] if r.people is not None else 0.0 for r in kept]
            f = [r.judge[0] if with_judge and r.judge is not None else 0.0 for r in kept]
            f_mean = float(np.mean([r.judge[0] for r in rows if r.judge is not None])) if with_judge else None
            e = sampled_sequence(y, f, drawn, [r.pi for r in kept], pi_min, f_mean, planned, alpha)
            out[name] = {"estimate": e, "n": sum(drawn), "walked": len(kept), "judge": with_judge}
            continue
        if not with_judge:
            continue  # people alone: precision.baseline_precision's sequence
        done = sorted((r for r in rows if r.people is not None), key=lambda r: (r.completed, r.order or 0))
        if len(done) < 2:
            continue
        judged = [r.judge for r in rows if r.judge is not None]
        f_mean = float(np.mean([j[0] for j in judged]))
        people = [float(r.people[0]) for r in done if r.people is not None]
        judge = [float(r.judge[0]) for r in done if r.judge is not None]
        e = assisted_sequence(people, judge, f_mean, planned, alpha)
        out[name] = {"estimate": e, "n": len(done), "judge": True}
    return out


def study_status(study: Study) -> StudyStatus:
    """Whether the study knows each baseline's win share to its target, at every look (betting
    confidence sequences): with the judge's help when the study's stop rule has a usable judge job
    (Study.target_judge_job, fixed before looking: one interval per baseline, not the narrower of
    two), else from the people's votes alone; a sampled study always through its walked prefix.
    Reads only: the stop itself is decided in evalsite/dashboard/stopping.py."""
    rows = precision.baseline_precision(study)
    job = stop_judge(study)
    sampled = study.sampling_rate is not None
    helped: dict[str, dict] = {}
    if job or sampled:
        rows_now = study_rows(study, job, "majority")
        helped = anytime_intervals(predicted(rows_now) if job else rows_now)
    target = study.target_half_width
    for row in rows:
        row["more"] = None
        extra = helped.get(row["baseline"])
        row["judge_assisted"] = bool(extra and extra["judge"])
        if sampled and extra is None:  # too few votes in the walked prefix to say anything
            row["win"], row["half_width"], row["low"], row["high"] = None, float("inf"), None, None
        if extra is not None:
            e = extra["estimate"]
            row["win"], row["low"], row["high"] = e.value, e.low, e.high
            row["half_width"] = (e.high - e.low) / 2
        if target and row["win"] is not None and math.isfinite(row["half_width"]) and row["n"]:
            # the width shrinks about as 1 / sqrt(n): the complete comparisons still to come
            needed = math.ceil(row["n"] * (row["half_width"] / target) ** 2)
            row["more"] = max(needed - row["n"], 0)
    enough = bool(target and rows and all(r["half_width"] <= target for r in rows))
    more = [r["more"] for r in rows if r["more"] is not None]
    return {
        "rows": rows,
        "target": target,
        "judge": job,
        "enough": enough or study.enough_at is not None,
        "reached": enough,
        "enough_at": study.enough_at,
        "more_votes": 0 if enough else (max(more) if more else None),
        "partial": sum(r["partial"] for r in rows),
    }

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

One row per comparison is read (votes counters, the judge's outcome and probability, and where the
length and style controls need it both answers' stored style), as numpy columns
(evalsite/core/columns.py: one binary value on PostgreSQL, no Python object per row; 500,000
comparisons in about 0.9 s without the answers' style, 2.7-3.4 s with it, bench/dashboard.py),
never a scan of judgments or calls; every estimate works on the columns."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import TypedDict

import numpy as np

from evalsite.annotation import precision
from evalsite.annotation.models import Study
from evalsite.catalog.models import STYLE_FIELDS, Response, System
from evalsite.core.columns import epoch, fetch_columns
from evalsite.core.side_by_side import side_by_side
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


OUTCOME_CODES = {"candidate": 0, "tie": 1, "baseline": 2}

# One row per comparison, read as numpy columns (evalsite.core.columns): texts as codes, NULL NaN.
# The judge's outcomes are read apart and matched by comparison (two scans cost a third of a join
# that spills half a million rows to disk); a ranking (ranking.py), smaller, reads them in one join.
COMPARISONS_FROM = "FROM annotation_comparison c WHERE c.study_id = %s AND NOT c.is_gold"
# with both answers' stored style: a join of every answer (600,000 rows of texts at a million
# votes, most of the read's time), which only the length and style controls need
STYLED_FROM = """
FROM annotation_comparison c
JOIN catalog_response cr ON cr.id = c.candidate_response_id
JOIN catalog_response br ON br.id = c.baseline_response_id
WHERE c.study_id = %s AND NOT c.is_gold
"""
OUTCOMES_FROM = "FROM judging_judgeoutcome o WHERE o.job_id = %s"
# whole numbers that travel packed (evalsite.core.columns): votes (a comparison has at most its
# overlap, far below 65,535) and whether people were asked
SMALL = {"votes_candidate": 16, "votes_baseline": 16, "votes_tie": 16, "wanted": 2}


def _row_columns(style: bool = True) -> dict[str, str]:
    columns = {
        "baseline": "c.baseline_id",
        "votes_candidate": "c.votes_candidate",
        "votes_baseline": "c.votes_baseline",
        "votes_tie": "c.votes_tie",
        "order": "c.draw_order",
        "pi": "c.sampling_probability",
        "wanted": "CASE WHEN c.people_wanted THEN 1 ELSE 0 END",
        "completed": epoch("c.completed_at"),
        "pk": "c.id",
    }
    if style:
        columns |= {"cand_response": "c.candidate_response_id", "base_response": "c.baseline_response_id"}
        columns |= {f"cand_{i}": f"cr.{field}" for i, field in enumerate(STYLE_FIELDS)}
        columns |= {f"base_{i}": f"br.{field}" for i, field in enumerate(STYLE_FIELDS)}
    return columns


def judge_columns() -> dict[str, str]:
    """The judge's view of a comparison, from its JudgeOutcome ``o``: the counted outcome as a
    code (OUTCOME_CODES), its probability of a win, each order's probability of a tie."""
    outcome = " ".join(f"WHEN '{name}' THEN {code}" for name, code in OUTCOME_CODES.items())
    return {
        "outcome": f"CASE o.outcome {outcome} END",
        "p_win": "o.p_win",
        "p_tie_a": "o.cand_first_p_tie",
        "p_tie_b": "o.base_first_p_tie",
    }


def _judge_outcomes(job: JudgeJob | None) -> dict[str, np.ndarray] | None:
    """The job's outcomes, read alone (judge_columns and the comparison's id); its probabilities
    only where it gave any. None without a job."""
    if job is None:
        return None
    columns = judge_columns()
    if not job.outcomes.filter(p_win__isnull=False).exists():
        columns = {"outcome": columns["outcome"]}  # counted verdicts only: no probability to read
    return fetch_columns({"comparison": "o.comparison_id", **columns}, OUTCOMES_FROM, "", [job.pk])


def _judge_columns_of(found: dict[str, np.ndarray] | None, pk: np.ndarray) -> dict[str, np.ndarray]:
    """judge_columns for the comparisons ``pk`` (NaN where the job has no outcome): the outcomes
    ``found`` (_judge_outcomes) matched by comparison."""
    missing = {name: np.full(len(pk), np.nan) for name in judge_columns()}
    if found is None:
        return missing
    columns = [name for name in found if name != "comparison"]
    by_pk = np.argsort(pk)
    ordered = pk[by_pk]
    at = np.searchsorted(ordered, found["comparison"])
    hit = at < len(pk)
    hit[hit] = ordered[at[hit]] == found["comparison"][hit]  # an outcome of a comparison not read: none
    for name in columns:
        missing[name][by_pk[at[hit]]] = found[name][hit]
    return missing


def _fill_style(style: np.ndarray, responses: np.ndarray) -> None:
    """Where an answer's style was not stored (an answer never rendered, or rendered before its
    style was kept), count it here from the answer (Response.style; nothing is saved). The query
    never reads the answers' texts: a join that carries them holds a million texts in its hash."""
    missing = np.isnan(style)
    if not missing.any():
        return
    ids = {int(pk) for pk in responses[missing.any(axis=1)]}
    counted = {r.pk: r.style() for r in Response.objects.filter(pk__in=ids).only("text", "html", "completion_tokens")}
    for row in np.flatnonzero(missing.any(axis=1)):
        style[row] = counted[int(responses[row])]


def answer_styles(col: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Both answers' STYLE_FEATURES from columns read with ``_row_columns(style=True)``, one row a
    comparison (the candidate's, the baseline's); an answer whose style was never stored is
    counted from its text (``_fill_style``)."""
    k = len(STYLE_FEATURES)
    candidate = np.column_stack([col[f"cand_{i}"] for i in range(k)])
    baseline = np.column_stack([col[f"base_{i}"] for i in range(k)])
    _fill_style(candidate, col["cand_response"])
    _fill_style(baseline, col["base_response"])
    return candidate, baseline


@dataclass(frozen=True)
class Rows:
    """One baseline's comparisons as columns, in the study's random order: the people's shares of
    (win, tie, loss) (NaN until a comparison has all its votes), the judge's (NaN: not judged),
    the candidate's length minus the baseline's (tokens), its place in the random order (NaN:
    none), in a sampled study its chance of being asked of people (NaN: none) and whether it was,
    both answers' STYLE_FEATURES (the candidate's, then the baseline's), when it got its last vote
    (seconds; NaN: not complete), its id, its baseline's id and its votes for the candidate, the
    baseline and a tie."""

    people: np.ndarray  # (n, 3)
    judge: np.ndarray  # (n, 3)
    length: np.ndarray
    order: np.ndarray
    pi: np.ndarray
    wanted: np.ndarray  # bool
    style: np.ndarray  # (n, 2 * len(STYLE_FEATURES))
    completed: np.ndarray
    pk: np.ndarray  # int
    baseline: np.ndarray  # the baseline's id (the same on every row)
    counts: np.ndarray  # (n, 3): votes for the candidate, the baseline, a tie

    def __len__(self) -> int:
        return len(self.pk)

    @property
    def votes(self) -> np.ndarray:
        """The votes each comparison has, all outcomes."""
        return self.counts.sum(axis=1)

    @property
    def voted(self) -> np.ndarray:
        """Whether each comparison has all its votes (its people's shares are known)."""
        return ~np.isnan(self.people[:, 0])

    @property
    def judged(self) -> np.ndarray:
        return ~np.isnan(self.judge[:, 0])

    def take(self, index) -> Rows:
        return Rows(**{name: getattr(self, name)[index] for name in self.__dataclass_fields__})


def _people(c: np.ndarray, b: np.ndarray, t: np.ndarray, complete: np.ndarray, rule: str) -> np.ndarray:
    """The people's outcome of each comparison as shares of (win, tie, loss): the majority (a
    draw is a tie) or, with rule "all", the vote shares; NaN where not complete or unvoted."""
    total = c + b + t
    known = complete & (total > 0)
    if rule == "all":
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = np.column_stack([c, t, b]) / total[:, None]
    else:
        win, loss = (c > b) & (c > t), (b > c) & (b > t)
        shares = np.column_stack([win, ~win & ~loss, loss]).astype(float)
    shares[~known] = np.nan
    return shares


def _judge(outcome: np.ndarray, p_win: np.ndarray, p_ties: np.ndarray) -> np.ndarray:
    """The judge's view of each comparison as (win, tie, loss): its probabilities where it gave
    them (the tie's the mean of the orders' that have one, at most 1 - p_win), else its counted
    verdict; NaN where it has neither."""
    view = np.full((len(outcome), 3), np.nan)
    counted = ~np.isnan(outcome)
    view[counted] = np.eye(3)[outcome[counted].astype(int)]
    soft = ~np.isnan(p_win)
    if soft.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a row with no tie probability: nanmean of nothing
            tie = np.nan_to_num(np.nanmean(p_ties, axis=1), nan=0.0)
        tie = np.minimum(tie, 1.0 - p_win)
        view[soft] = np.column_stack([p_win, tie, 1.0 - p_win - tie])[soft]
    return view


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


def counted_as(per: dict[str, Rows], rule: str) -> dict[str, Rows]:
    """The same rows with the people's outcomes counted by ``rule``, from the vote counts they
    hold (no second read of the comparisons)."""
    out = {}
    for name, rows in per.items():
        c, b, t = rows.counts.T
        out[name] = replace(rows, people=_people(c, b, t, ~np.isnan(rows.completed), rule))
    return out


def study_rows(study: Study, job: JudgeJob | None, rule: str, style: bool = True) -> dict[str, Rows]:
    """Per baseline, its comparisons in the study's random order, with the judge's view where
    ``job`` gave one (any job: calibration and length control read the verdicts themselves).
    Without ``style`` the answers' style is not read (NaN, and so the length): what the page's
    first request shows needs none of it."""
    columns = _row_columns(style)
    if study.sampling_rate is None:
        columns.pop("pi")  # every comparison asked of people: no chance to read (each column costs time)
    col, outcomes = side_by_side(  # two scans of half a million rows at a million votes: at once
        lambda: fetch_columns(columns, STYLED_FROM if style else COMPARISONS_FROM, "", [study.pk], SMALL),
        lambda: _judge_outcomes(job),
    )
    col.setdefault("pi", np.full(len(col["pk"]), np.nan))
    col |= _judge_columns_of(outcomes, col["pk"])
    # each baseline's comparisons together, in the study's random order (the database need not
    # sort half a million rows: numpy does, once, and each baseline's rows are a slice of them)
    walk = np.lexsort((col["pk"], col["order"], col["baseline"]))
    col = {name: values[walk] for name, values in col.items()}
    k = len(STYLE_FEATURES)
    if style:
        style_columns = np.column_stack(answer_styles(col))
    else:
        style_columns = np.full((len(col["pk"]), 2 * k), np.nan)
    complete = ~np.isnan(col["completed"])
    rows = Rows(
        people=_people(col["votes_candidate"], col["votes_baseline"], col["votes_tie"], complete, rule),
        judge=_judge(col["outcome"], col["p_win"], np.column_stack([col["p_tie_a"], col["p_tie_b"]])),
        length=style_columns[:, 0] - style_columns[:, k],
        order=col["order"],
        pi=col["pi"],
        wanted=col["wanted"] == 1,
        style=style_columns,
        completed=col["completed"],
        pk=col["pk"].astype(np.int64),
        baseline=col["baseline"].astype(np.int64),
        counts=np.column_stack([col["votes_candidate"], col["votes_baseline"], col["votes_tie"]]),
    )
    ids, starts = np.unique(rows.baseline, return_index=True)
    ends = [*starts[1:], len(rows)]
    names_of = dict(System.objects.filter(pk__in=ids.tolist()).values_list("pk", "name"))
    parts = {names_of[int(pk)]: rows.take(slice(a, b)) for pk, a, b in zip(ids, starts, ends, strict=True)}
    return dict(sorted(parts.items()))


def predicted(per: dict[str, Rows]) -> dict[str, Rows]:
    """The rows of a usable job with the judge's view as a prediction on every comparison: where
    the judge could not judge one, its mean over the baseline's others (a prediction like any
    other: the estimates stay unbiased, the judge's mean over every comparison known)."""
    out = {}
    for name, rows in per.items():
        judged = rows.judged
        mean = rows.judge[judged].mean(axis=0) if judged.any() else np.full(3, 1 / 3)
        out[name] = replace(rows, judge=np.where(judged[:, None], rows.judge, mean))
    return out


def _sampled(rows: Rows) -> bool:
    return bool(len(rows)) and not np.isnan(rows.order).any() and not np.isnan(rows.pi).any()


def _judged_all(rows: Rows) -> bool:
    return bool(len(rows)) and bool(rows.judged.all())


def _sampled_parts(rows: Rows, k: int, with_judge: bool) -> tuple[Rows, np.ndarray, np.ndarray, float | None]:
    """A sampled study's walked prefix and, for outcome ``k``, the people's values there (0 where
    not drawn), the judge's (0 without one) and the judge's mean over every comparison."""
    kept = rows.take(_walk(rows))
    y = np.nan_to_num(kept.people[:, k])
    f = np.nan_to_num(kept.judge[:, k]) if with_judge else np.zeros(len(kept))
    f_mean = float(rows.judge[rows.judged, k].mean()) if with_judge else None
    return kept, y, f, f_mean


def sampled_estimates(rows: Rows, assisted: bool) -> tuple[list[np.ndarray], int, int, float]:
    """A sampled study's per-comparison terms of (win, tie, loss) over the walked prefix
    (stats.evidence.walked): with the judge's help where ``assisted`` (the rows carry a usable
    job's view), else people alone (Horvitz-Thompson). Returns the terms per outcome, the people's
    comparisons among them, the walked comparisons and the judge's weight on the win share."""
    with_judge = assisted and _judged_all(rows)
    terms, lams = [], []
    drawn = np.zeros(0, dtype=bool)
    walked_n = 0
    for k in range(3):
        kept, y, f, f_mean = _sampled_parts(rows, k, with_judge)
        drawn = kept.wanted & kept.voted
        t, lam = sampled_terms(y, f, drawn, kept.pi, None if with_judge else 0.0, f_mean)
        terms.append(t)
        lams.append(lam)
        walked_n = len(kept)
    return terms, int(drawn.sum()), walked_n, lams[0]


def _walk(rows: Rows) -> np.ndarray:
    """The walked prefix of a sampled study: every comparison in its order up to the first one
    drawn for people that does not have all its votes yet."""
    return walked(np.nan_to_num(rows.order), rows.wanted, rows.voted)


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


def judge_assisted(per: dict[str, Rows]) -> dict[str, Assisted]:
    """Per baseline, the people's shares from their votes on the comparisons that have all of
    them and the judge's on the others (PPI++ per outcome; the weight on the judge chosen from the
    data), with intervals at one look that hold at any n (an exact binomial interval at the
    estimate's effective sample size). ``per``: a usable job's rows, ``predicted``.
    The comparisons people finished must be a random part of the study, as the study's random
    order makes them; a sampled study's are weighted back by their chances (active inference)."""
    out: dict[str, Assisted] = {}
    for name, rows in per.items():
        if not _judged_all(rows):
            continue
        if _sampled(rows):
            terms, n, walked_n, lam = sampled_estimates(rows, assisted=True)
            if n < 2 or walked_n < 2:
                continue
            estimates = [classical_mean(t, cap=walked_n) for t in terms]
            worth = _worth(estimates[0], n)
            out[name] = {**_share_row(estimates), "lam": lam, "n": n, "judge_only": walked_n - n, **worth}
            continue
        voted = rows.voted
        n, others = int(voted.sum()), int((~voted).sum())
        if n < 2 or not others:  # the judge adds nothing where people judged everything
            continue
        y, f, fu = rows.people[voted], rows.judge[voted], rows.judge[~voted]
        estimates = [ppi_mean(y[:, k], f[:, k], fu[:, k]) for k in range(3)]
        worth = _worth(estimates[0], n)
        out[name] = {**_share_row(estimates), "n": n, "judge_only": others, **worth}
    return out


def people_weighted(per: dict[str, Rows]) -> dict[str, Weighted]:
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


def length_control(per: dict[str, Rows]) -> list[dict]:
    """Per baseline, people's and the judge's win rates (a tie is half) as counted and controlled
    for the length difference (AlpacaEval 2), with how much 100 more tokens move each."""
    out = []
    k = len(STYLE_FEATURES)
    for name, rows in sorted(per.items()):
        row: dict = {"baseline": name}
        for who, shares, known in (("people", rows.people, rows.voted), ("judge", rows.judge, rows.judged)):
            if known.sum() < 5:
                row[who] = None
                continue
            outcomes = shares[known, 0] + shares[known, 1] / 2
            lc = length_controlled_win_rate(outcomes, rows.length[known])
            styles = rows.style[known]
            sc = style_controlled_win_rate(
                outcomes,
                {feature: styles[:, i] for i, feature in enumerate(STYLE_FEATURES)},
                {feature: styles[:, k + i] for i, feature in enumerate(STYLE_FEATURES)},
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
        out.append(row)
    return out


def calibration(per: dict[str, Rows]) -> dict | None:
    """The judge against this study's people, comparison by comparison (the people's majority,
    the judge's counted verdict): confusion matrix, agreement with and without ties, Cohen's kappa,
    and the same for "always the longer answer"."""
    matrix = np.zeros((3, 3), dtype=np.int64)
    longer_agrees = longer_n = 0
    for rows in per.values():
        both = rows.voted & rows.judged
        p, j = rows.people[both].argmax(axis=1), rows.judge[both].argmax(axis=1)
        matrix += np.bincount(p * 3 + j, minlength=9).reshape(3, 3)
        length = rows.length[both]
        decided = (length != 0) & (p != OUTCOMES.index(TIE))
        longer_n += int(decided.sum())
        longer_agrees += int(((p[decided] == OUTCOMES.index(WIN)) == (length[decided] > 0)).sum())
    total = int(matrix.sum())
    if not total:
        return None
    agree = int(np.trace(matrix))
    tie = OUTCOMES.index(TIE)
    sides = [i for i in range(3) if i != tie]
    no_ties = matrix[np.ix_(sides, sides)]
    expected = float(matrix.sum(axis=1) @ matrix.sum(axis=0)) / total**2
    return {
        "labels": ["candidate", "tie", "baseline"],
        "matrix": matrix.tolist(),
        "n": total,
        "agreement": agree / total,
        "agreement_without_ties": float(np.trace(no_ties)) / int(no_ties.sum()) if no_ties.sum() else None,
        "cohen_kappa": (agree / total - expected) / (1 - expected) if expected < 1 else None,
        "longer_answer_agreement": longer_agrees / longer_n if longer_n else None,
        "longer_answer_n": longer_n,
    }


def self_preference(study: Study, job: JudgeJob, per: dict[str, Rows]) -> list[dict]:
    """Where the judge's own model is one of the study's systems: how often the judge prefers it
    and how often people do, over the comparisons both judged (the judge's outcome, the people's
    majority)."""
    model = job.config.model
    own = [s for s in (study.candidate, *study.baselines.all()) if (s.backend_config or {}).get("model") == model]
    out = []
    for system in own:
        is_candidate = system.pk == study.candidate_id
        side = 0 if is_candidate else 2  # the candidate wins, or this baseline does
        parts = [rows for name, rows in per.items() if is_candidate or name == system.name]
        people = np.concatenate([r.people[r.voted & r.judged, side] for r in parts]) if parts else np.zeros(0)
        judge = np.concatenate([r.judge[r.voted & r.judged, side] for r in parts]) if parts else np.zeros(0)
        if not len(people):
            continue
        out.append(
            {
                "system": system.name,
                "role": "candidate" if is_candidate else "baseline",
                "judge": float(judge.mean()),
                "people": float(people.mean()),
                "n": len(people),
            }
        )
    return out


def evidence(
    study: Study,
    job: JudgeJob | None,
    rule: str = "majority",
    details: bool = True,
    majority: dict[str, Rows] | None = None,
) -> Evidence:
    """What the page shows beside Figures 1 and 2 for the judge job ``job`` (the one the page
    shows): the judge-assisted bars (only from a usable job), length control, calibration; and the
    study's own precision and stop state, which depend on the judge the study fixed for its stop
    rule, never on the job the page shows. Without ``details``, no length control and no
    calibration (``evidence_details``: the page's second request), and the answers' style is not
    read. ``majority``: the study's rows by the people's majority, already read that way. Reads only."""
    if majority is None:
        majority = study_rows(study, job, "majority", style=details)
    per = counted_as(majority, rule)
    result: Evidence = {
        "assisted": judge_assisted(predicted(per)) if usable(job) else {},
        "assisted_waits": _waits(study, job),
        "people_weighted": people_weighted(per) if study.sampling_rate is not None else {},
        "length_control": [],
        "calibration": None,
        "complete": _completeness(per),
        "status": study_status(study, majority, job),
    }
    if details:
        result["length_control"], result["calibration"] = _details(study, job, per, majority)
    return result


def evidence_details(study: Study, job: JudgeJob | None, rule: str = "majority") -> dict:
    """The length and style controls and the judge's calibration alone (the page's second request)."""
    majority = study_rows(study, job, "majority")
    lengths, found = _details(study, job, counted_as(majority, rule), majority)
    return {"length_control": lengths, "calibration": found}


def _details(
    study: Study, job: JudgeJob | None, per: dict[str, Rows], majority: dict[str, Rows]
) -> tuple[list[dict], dict | None]:
    """Length and style control, and the judge's calibration (with its self-preference)."""
    found = calibration(majority) if job else None
    if found is not None and job is not None:
        found["self_preference"] = self_preference(study, job, majority)
    return length_control(per), found


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


def _completeness(per: dict[str, Rows]) -> dict:
    """How many comparisons count (all their votes in) of those voted at all, over the baselines."""
    return {"complete": sum(int(rows.voted.sum()) for rows in per.values())}


def stop_judge(study: Study) -> JudgeJob | None:
    """The judge job the study's stop rule reads (fixed on the study: Study.target_judge_job), if
    it is usable; None: people alone."""
    if study.target_judge_job is None:
        return None
    job = JudgeJob.objects.filter(pk=study.target_judge_job, study=study).select_related("config").first()
    return job if usable(job) else None


def anytime_intervals(per: dict[str, Rows], level: float = 0.95) -> dict[str, dict]:
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
        with_judge = _judged_all(rows)
        if _sampled(rows):
            kept, y, f, f_mean = _sampled_parts(rows, 0, with_judge)
            drawn = kept.wanted & kept.voted
            if drawn.sum() < 2:
                continue
            pi_min = float(rows.pi[rows.pi > 0].min())
            e = sampled_sequence(y, f, drawn, kept.pi, pi_min, f_mean, planned, alpha)
            out[name] = {"estimate": e, "n": int(drawn.sum()), "walked": len(kept), "judge": with_judge}
            continue
        if not with_judge:
            continue  # people alone: precision.baseline_precision's sequence
        voted = np.flatnonzero(rows.voted)
        if len(voted) < 2:
            continue
        # in the order the comparisons were completed (ties by the study's order)
        done = voted[np.lexsort((np.nan_to_num(rows.order[voted]), rows.completed[voted]))]
        f_mean = float(rows.judge[:, 0].mean())
        e = assisted_sequence(rows.people[done, 0], rows.judge[done, 0], f_mean, planned, alpha)
        out[name] = {"estimate": e, "n": len(done), "judge": True}
    return out


def people_precision(study: Study, majority: dict[str, Rows], level: float = 0.95) -> list[dict]:
    """precision.baseline_precision from rows already read (by the people's majority): the same
    counts and the same sequence (the complete comparisons in the order they were completed), so
    the page does not read every comparison twice."""
    out = []
    for name, rows in sorted(majority.items()):
        complete = np.flatnonzero(~np.isnan(rows.completed))
        order = complete[np.lexsort((rows.pk[complete], rows.completed[complete]))]
        won = np.nan_to_num(rows.people[order, 0]) == 1.0
        out.append(
            precision.precision_row(
                name, int(rows.baseline[0]), len(rows), int((rows.votes > 0).sum()), won.astype(float),
                int(won.sum()), len(order), level,
            )
        )  # fmt: skip
    return out


def study_status(
    study: Study, majority: dict[str, Rows] | None = None, majority_job: JudgeJob | None = None
) -> StudyStatus:
    """Whether the study knows each baseline's win share to its target, at every look (betting
    confidence sequences): with the judge's help when the study's stop rule has a usable judge job
    (Study.target_judge_job, fixed before looking: one interval per baseline, not the narrower of
    two), else from the people's votes alone; a sampled study always through its walked prefix.
    Reads only: the stop itself is decided in evalsite/dashboard/stopping.py. ``majority``: the
    study's rows by the people's majority already read with ``majority_job``'s verdicts (the page's),
    used instead of reading them again where that is the stop rule's judge too."""
    rows = people_precision(study, majority) if majority is not None else precision.baseline_precision(study)
    job = stop_judge(study)
    sampled = study.sampling_rate is not None
    helped: dict[str, dict] = {}
    if job or sampled:
        same_judge = (majority_job.pk if majority_job else None) == (job.pk if job else None)
        rows_now = majority if majority is not None and same_judge else study_rows(study, job, "majority", style=False)
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

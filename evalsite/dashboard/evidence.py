"""What the judge adds to the people's numbers of one study (stats/evidence.py on its rows): the
people's shares estimated with the judge's help (PPI++), win rates controlled for answer length,
and the judge's calibration against this study's people.

One row per comparison is read (votes counters, the judge's outcome and probability, both answers'
lengths): a few hundred to a few thousand rows per study, never a scan of judgments or calls."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from evalsite.annotation import precision
from evalsite.annotation.models import Study
from evalsite.core.lookup import fetch_rows
from evalsite.judging.models import JudgeJob
from evalsite.judging.results import default_judge_job
from stats.evidence import (
    confidence_sequence,
    cs_rho,
    judge_assisted_terms,
    length_controlled_win_rate,
    ppi_mean,
    votes_needed,
)
from stats.outcomes import LOSS, TIE, WIN

OUTCOMES = (WIN, TIE, LOSS)
CHARS_PER_TOKEN = 4  # lengths in tokens, estimated from characters when the response has no count

ROWS = """
SELECT s.name, c.votes_candidate, c.votes_baseline, c.votes_tie, o.outcome, o.p_win,
       o.cand_first_p_tie, o.base_first_p_tie,
       COALESCE(cr.completion_tokens, LENGTH(cr.text) / %s) - COALESCE(br.completion_tokens, LENGTH(br.text) / %s)
FROM annotation_comparison c
JOIN catalog_system s ON s.id = c.baseline_id
JOIN catalog_response cr ON cr.id = c.candidate_response_id
JOIN catalog_response br ON br.id = c.baseline_response_id
LEFT JOIN judging_judgeoutcome o ON o.comparison_id = c.id AND o.job_id = %s
WHERE c.study_id = %s AND NOT c.is_gold
"""


def _people(c: int, b: int, t: int, rule: str) -> np.ndarray | None:
    """The people's outcome of one comparison as shares of (win, tie, loss): the majority (a
    draw is a tie) or, with rule "all", the vote shares."""
    total = c + b + t
    if not total:
        return None
    if rule == "all":
        return np.array([c, t, b], dtype=float) / total
    if c > b and c > t:
        return np.array([1.0, 0.0, 0.0])
    if b > c and b > t:
        return np.array([0.0, 0.0, 1.0])
    return np.array([0.0, 1.0, 0.0])


def _judge(outcome: str | None, p_win, p_ties: list) -> np.ndarray | None:
    """The judge's view of one comparison as (win, tie, loss): its probabilities where it gave
    them, else its counted verdict."""
    if p_win is not None:
        ties = [p for p in p_ties if p is not None]
        tie = min(float(np.mean(ties)) if ties else 0.0, 1.0 - p_win)
        return np.array([p_win, tie, 1.0 - p_win - tie])
    if outcome:
        return np.array([outcome == "candidate", outcome == "tie", outcome == "baseline"], dtype=float)
    return None


def study_rows(study: Study, job: JudgeJob | None, rule: str) -> dict[str, list[tuple]]:
    per: dict[str, list[tuple]] = defaultdict(list)
    params = [CHARS_PER_TOKEN, CHARS_PER_TOKEN, job.pk if job else -1, study.pk]
    for name, c, b, t, outcome, p_win, p_tie_a, p_tie_b, length in fetch_rows(ROWS, params):
        people = _people(int(c), int(b), int(t), rule)
        judge = _judge(outcome, p_win, [p_tie_a, p_tie_b])
        per[name].append((people, judge, float(length or 0)))
    return per


def _share_row(estimates: list) -> dict:
    win, tie, loss = estimates
    return {
        "win": win.value,
        "tie": tie.value,
        "loss": loss.value,
        "win_ci": (max(win.low, 0.0), min(win.high, 1.0)),
        "loss_ci": (max(loss.low, 0.0), min(loss.high, 1.0)),
        "lam": win.lam,
    }


def judge_assisted(per: dict[str, list[tuple]]) -> dict[str, dict]:
    """Per baseline, the people's shares from their votes on the comparisons they judged and the
    judge's on the others (PPI++ per outcome; the weight on the judge chosen from the data). The
    comparisons people judged must be a random part of the study, as uniform assignment makes them."""
    out = {}
    for name, rows in per.items():
        labelled = [(p, j) for p, j, _ in rows if p is not None and j is not None]
        unlabelled = [j for p, j, _ in rows if p is None and j is not None]
        if len(labelled) < 2 or not unlabelled:  # the judge adds nothing where people judged everything
            continue
        y = np.array([p for p, _ in labelled])
        f = np.array([j for _, j in labelled])
        fu = np.array(unlabelled).reshape(-1, 3)
        estimates = [ppi_mean(y[:, k], f[:, k], fu[:, k]) for k in range(3)]
        out[name] = {**_share_row(estimates), "n": len(labelled), "judge_only": len(unlabelled)}
    return out


def length_control(per: dict[str, list[tuple]]) -> list[dict]:
    """Per baseline, people's and the judge's win rates (a tie is half) as counted and controlled
    for the length difference (AlpacaEval 2), with how much 100 more tokens move each."""
    rows = []
    for name, items in sorted(per.items()):
        row: dict = {"baseline": name}
        for who, index in (("people", 0), ("judge", 1)):
            kept = [(v[index], v[2]) for v in items if v[index] is not None]
            if len(kept) < 5:
                row[who] = None
                continue
            outcomes = [float(o[0] + o[1] / 2) for o, _ in kept]
            lc = length_controlled_win_rate(outcomes, [length for _, length in kept])
            row[who] = {"raw": lc.raw, "controlled": lc.controlled, "per_100_tokens": lc.per_100_tokens, "n": lc.n}
        row["both"] = [row["people"], row["judge"]]
        rows.append(row)
    return rows


def calibration(per: dict[str, list[tuple]]) -> dict | None:
    """The judge against this study's people, comparison by comparison (the people's majority,
    the judge's counted verdict): confusion matrix, agreement with and without ties, Cohen's kappa,
    and the same for "always the longer answer"."""
    confusion: Counter = Counter()
    longer_agrees = longer_n = 0
    for items in per.values():
        for people, judge, length in items:
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


def self_preference(study: Study, job: JudgeJob, per: dict[str, list[tuple]]) -> list[dict]:
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
        both = [(p, j) for p, j, _ in rows if p is not None and j is not None]
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


def evidence(study: Study, job: JudgeJob | None, rule: str = "majority") -> dict:
    per = study_rows(study, job, rule)
    majority = per if rule == "majority" else study_rows(study, job, "majority")
    result = {
        "assisted": judge_assisted(per) if job else {},
        "length_control": length_control(per),
        "calibration": calibration(majority) if job else None,
    }
    if result["calibration"] is not None:
        result["calibration"]["self_preference"] = self_preference(study, job, majority)
    result["status"] = study_status(study, job, majority)
    return result


def assisted_half_widths(per: dict[str, list[tuple]], level: float = 0.95) -> dict[str, dict]:
    """Per baseline, the anytime-valid interval of the candidate's win share (by the people's
    majority) with the judge's help: the values y - lam f over the voted comparisons, plus lam times
    the judge's mean over every comparison it judged (PPI++ with the judge's mean known; lam fitted
    from the votes so far). Valid whatever the judge: a useless one gets lam near 0, people alone."""
    out = {}
    for name, rows in per.items():
        judged = [j[0] for _, j, _ in rows if j is not None]
        pairs = [(p[0], j[0]) for p, j, _ in rows if p is not None and j is not None]
        if len(pairs) < 2 or not judged:
            continue
        y, f = zip(*pairs, strict=True)
        terms, offset, lam = judge_assisted_terms(y, f, judged)
        e = confidence_sequence(terms, offset, cs_rho(len(rows), 1 - level), 1 - level)
        sd = float(terms.std(ddof=1))
        out[name] = {"win": e.value, "half_width": e.half_width, "lam": lam, "n": e.n, "sd": sd}
    return out


def study_status(study: Study, job: JudgeJob | None = None, majority: dict | None = None) -> dict:
    """Whether the study knows each baseline's win share to its target, at every look (confidence
    sequences): with the judge's help when a judge job covers the study (decided before looking,
    so one interval per baseline, not the narrower of two), else from the people's votes alone.
    The first time every baseline is within the target, the study stops handing out items.
    ``majority``: study_rows by the people's majority, when the caller has them."""
    rows = precision.baseline_precision(study)
    job = job or default_judge_job(study)
    if job and majority is None:
        majority = study_rows(study, job, "majority")
    assisted = assisted_half_widths(majority) if job else {}
    target = study.target_half_width
    for row in rows:
        row["more"] = None
        helped = assisted.get(row["baseline"])
        row["judge_assisted"] = helped is not None
        if helped is not None:
            row["win"], row["half_width"] = helped["win"], helped["half_width"]
            row["low"], row["high"] = (
                max(helped["win"] - helped["half_width"], 0.0),
                min(helped["win"] + helped["half_width"], 1.0),
            )
        if target and row["win"] is not None:
            p = min(max(row["win"], 0.05), 0.95)
            r2 = 1 - (helped["sd"] ** 2) / (p * (1 - p)) if helped and helped["sd"] > 0 else 0.0
            needed = votes_needed(p, target, r2=min(max(r2, 0.0), 0.95), anytime=True)
            row["more"] = max(needed - row["n"], 0)
    enough = bool(target and rows and all(r["half_width"] <= target for r in rows))
    if enough and study.enough_at is None:
        precision.mark_enough(study, rows)
    more = [r["more"] for r in rows if r["more"] is not None]
    return {
        "rows": rows,
        "target": target,
        "judge": job,
        "enough": enough or study.enough_at is not None,
        "enough_at": study.enough_at,
        "more_votes": 0 if enough else (max(more) if more else None),
    }

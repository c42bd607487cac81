"""What the judge adds to the people's numbers of one study (stats/evidence.py on its rows): the
people's shares estimated with the judge's help (PPI++), win rates controlled for answer length,
and the judge's calibration against this study's people.

One row per comparison is read (votes counters, the judge's outcome and probability, both answers'
lengths): a few hundred to a few thousand rows per study, never a scan of judgments or calls."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import NamedTuple

import numpy as np

from evalsite.annotation import precision
from evalsite.annotation.models import Study
from evalsite.core.lookup import fetch_rows
from evalsite.judging.models import JudgeJob
from evalsite.judging.results import default_judge_job
from stats.evidence import (
    STYLE_FEATURES,
    classical_mean,
    confidence_sequence,
    cs_half_width,
    cs_rho,
    judge_assisted_terms,
    length_controlled_win_rate,
    ppi_mean,
    sampled_terms,
    style_controlled_win_rate,
    votes_needed,
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
       c.draw_order, c.sampling_probability, c.people_wanted,
       {_style("cr")}, {_style("br")}
FROM annotation_comparison c
JOIN catalog_system s ON s.id = c.baseline_id
JOIN catalog_response cr ON cr.id = c.candidate_response_id
JOIN catalog_response br ON br.id = c.baseline_response_id
LEFT JOIN judging_judgeoutcome o ON o.comparison_id = c.id AND o.job_id = %s
WHERE c.study_id = %s AND NOT c.is_gold
ORDER BY c.id
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


class Row(NamedTuple):
    """One comparison: the people's shares (None: no votes), the judge's (None: not judged), the
    candidate's length minus the baseline's (tokens), and in a sampled study its place in the
    study's order, its chance of being asked of people and whether it was."""

    people: np.ndarray | None
    judge: np.ndarray | None
    length: float
    order: int | None = None
    pi: float | None = None
    wanted: bool = True
    style: tuple = ()  # STYLE_FEATURES of the candidate's answer, then of the baseline's


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


def study_rows(study: Study, job: JudgeJob | None, rule: str) -> dict[str, list[Row]]:
    per: dict[str, list[Row]] = defaultdict(list)
    for name, c, b, t, outcome, p_win, p_tie_a, p_tie_b, order, pi, wanted, *style in fetch_rows(
        ROWS, [job.pk if job else -1, study.pk]
    ):
        people = _people(int(c), int(b), int(t), rule)
        judge = _judge(outcome, p_win, [p_tie_a, p_tie_b])
        features = tuple(float(v or 0) for v in style)
        length = features[0] - features[len(STYLE_FEATURES)]
        per[name].append(Row(people, judge, length, order, pi, bool(wanted), features))
    return per


def _sampled(rows: list[Row]) -> bool:
    return bool(rows) and all(r.order is not None and r.pi is not None for r in rows)


def sampled_estimates(rows: list[Row], assisted: bool) -> tuple[list[np.ndarray], int, int, float]:
    """A sampled study's per-comparison terms of (win, tie, loss) over the walked prefix
    (stats.evidence.walked): with the judge's help where ``assisted`` and the judge saw every walked
    comparison, else people alone (Horvitz-Thompson). Returns the terms per outcome, the people's
    comparisons among them, the walked comparisons and the judge's weight on the win share."""
    prefix = walked([r.order for r in rows], [r.wanted for r in rows], [r.people is not None for r in rows])
    kept = [rows[i] for i in prefix]
    with_judge = assisted and all(r.judge is not None for r in kept)
    saw_all = with_judge and all(r.judge is not None for r in rows)  # then its mean over the study is known
    drawn = [r.wanted and r.people is not None for r in kept]
    pi = [r.pi for r in kept]
    terms, lams = [], []
    for k in range(3):
        y = [r.people[k] if r.people is not None else 0.0 for r in kept]
        f = [r.judge[k] if with_judge else 0.0 for r in kept]
        f_mean = float(np.mean([r.judge[k] for r in rows])) if saw_all else None
        t, lam = sampled_terms(y, f, drawn, pi, None if with_judge else 0.0, f_mean)
        terms.append(t)
        lams.append(lam)
    return terms, sum(drawn), len(kept), lams[0]


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


def judge_assisted(per: dict[str, list[Row]]) -> dict[str, dict]:
    """Per baseline, the people's shares from their votes on the comparisons they judged and the
    judge's on the others (PPI++ per outcome; the weight on the judge chosen from the data). The
    comparisons people judged must be a random part of the study, as uniform assignment makes them;
    a sampled study's are weighted back by their chances (active inference)."""
    out = {}
    for name, rows in per.items():
        if _sampled(rows):
            terms, n, walked_n, lam = sampled_estimates(rows, assisted=True)
            if n < 2 or walked_n < 2:
                continue
            estimates = [classical_mean(t) for t in terms]
            out[name] = {**_share_row(estimates), "lam": lam, "n": n, "judge_only": walked_n - n}
            continue
        labelled = [(r.people, r.judge) for r in rows if r.people is not None and r.judge is not None]
        unlabelled = [r.judge for r in rows if r.people is None and r.judge is not None]
        if len(labelled) < 2 or not unlabelled:  # the judge adds nothing where people judged everything
            continue
        y = np.array([p for p, _ in labelled])
        f = np.array([j for _, j in labelled])
        fu = np.array(unlabelled).reshape(-1, 3)
        estimates = [ppi_mean(y[:, k], f[:, k], fu[:, k]) for k in range(3)]
        out[name] = {**_share_row(estimates), "n": len(labelled), "judge_only": len(unlabelled)}
    return out


def people_weighted(per: dict[str, list[Row]]) -> dict[str, dict]:
    """A sampled study's people-only shares: the votes weighted back by their chances over the
    walked prefix (Horvitz-Thompson). Counting the votes as they stand would report the comparisons
    where the judge was unsure, not the study."""
    out = {}
    for name, rows in per.items():
        if not _sampled(rows):
            continue
        terms, n, walked_n, _ = sampled_estimates(rows, assisted=False)
        if n >= 2 and walked_n >= 2:
            out[name] = {**_share_row([classical_mean(t) for t in terms]), "n": n, "walked": walked_n}
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
            outcomes = [float(o[0] + o[1] / 2) for o, _ in kept]
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


def evidence(study: Study, job: JudgeJob | None, rule: str = "majority") -> dict:
    per = study_rows(study, job, rule)
    majority = per if rule == "majority" else study_rows(study, job, "majority")
    result = {
        "assisted": judge_assisted(per) if job else {},
        "people_weighted": people_weighted(per) if study.sampling_rate is not None else {},
        "length_control": length_control(per),
        "calibration": calibration(majority) if job else None,
    }
    if result["calibration"] is not None:
        result["calibration"]["self_preference"] = self_preference(study, job, majority)
    result["status"] = study_status(study, job, majority)
    return result


def assisted_half_widths(per: dict[str, list[Row]], level: float = 0.95) -> dict[str, dict]:
    """Per baseline, the anytime-valid interval of the candidate's win share (by the people's
    majority) with the judge's help: the values y - lam f over the voted comparisons, plus lam times
    the judge's mean over every comparison it judged (PPI++ with the judge's mean known; lam fitted
    from the votes so far). Valid whatever the judge: a useless one gets lam near 0, people alone.
    A sampled study's terms are active inference's over its walked prefix."""
    out = {}
    for name, rows in per.items():
        if _sampled(rows):
            terms, n, walked_n, lam = sampled_estimates(rows, assisted=True)
            if n < 2 or walked_n < 2:
                continue
            e = confidence_sequence(terms[0], 0.0, cs_rho(len(rows), 1 - level), 1 - level)
            sd = float(terms[0].std(ddof=1))
            out[name] = {"win": e.value, "half_width": e.half_width, "lam": lam, "n": n, "sd": sd, "walked": walked_n}
            continue
        judged = [r.judge[0] for r in rows if r.judge is not None]
        pairs = [(r.people[0], r.judge[0]) for r in rows if r.people is not None and r.judge is not None]
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
    sampled = study.sampling_rate is not None
    if (job or sampled) and majority is None:
        majority = study_rows(study, job, "majority")
    assisted = assisted_half_widths(majority) if job or sampled else {}
    target = study.target_half_width
    for row in rows:
        row["more"] = None
        helped = assisted.get(row["baseline"])
        row["judge_assisted"] = helped is not None and (not sampled or job is not None)
        if sampled and helped is None:  # too few votes in the walked prefix to say anything
            row["win"], row["half_width"], row["low"], row["high"] = None, float("inf"), None, None
        if helped is not None:
            row["win"], row["half_width"] = helped["win"], helped["half_width"]
            row["low"], row["high"] = (
                max(helped["win"] - helped["half_width"], 0.0),
                min(helped["win"] + helped["half_width"], 1.0),
            )
        if target and sampled and helped is not None:
            rho = cs_rho(row["comparisons"], 0.05)
            walk = helped["walked"]
            while walk < row["comparisons"] and cs_half_width(walk, helped["sd"], rho) > target:
                walk += 1
            row["more"] = math.ceil((walk - helped["walked"]) * helped["n"] / helped["walked"])
        elif target and row["win"] is not None:
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

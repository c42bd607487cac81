"""The judge's absolute ratings, one object per kind: the judge template it asks with, the prompts
it is asked of, how its values read as a score (for the ablation curves and judged gold pairs)
and how a job's ratings are summarised. Adding a kind is adding one RatingKind to RATING_KINDS
(and its judge template to evalsite.judging.prompts.TEMPLATES)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from statistics import mean, stdev

from evalsite.core.paper import SAFETY_TAG
from stats.outcomes import label_shares

GRADES = ("excellent", "pass", "fail")
GRADE_SCORE = {"fail": 0.0, "pass": 1.0, "excellent": 2.0}


def _grade_shares(values: list[tuple[int, str]]) -> dict:
    counts = Counter(v for _, v in values)
    n = max(1, len(values))
    return {"shares": {g: counts[g] / n for g in GRADES}, "counts": {g: counts[g] for g in GRADES}}


def _likert_mean(values: list[tuple[int, str]]) -> dict:
    """The mean over prompts (a prompt's samples averaged first) with a normal 95% interval over
    prompts, as the paper reports its ablations (Figures 5, 6)."""
    per_prompt: dict[int, list[int]] = defaultdict(list)
    for prompt_id, value in values:
        per_prompt[prompt_id].append(int(value))
    means = [mean(v) for v in per_prompt.values()]
    out: dict = {"prompts": len(means), "mean": mean(means) if means else None}
    half = 1.96 * stdev(means) / len(means) ** 0.5 if len(means) > 1 else None
    out["ci95"] = (out["mean"] - half, out["mean"] + half) if half is not None else None
    return out


def _safe_share(values: list[tuple[int, str]]) -> dict:
    """The safe share over prompts (samples of one prompt count together), with its exact interval."""
    per_prompt: dict[int, Counter] = defaultdict(Counter)
    for prompt_id, value in values:
        per_prompt[prompt_id][value] += 1
    shares = label_shares(per_prompt.values(), win="safe", loss="unsafe")
    return {"prompts": shares.n, "safe": shares.win if shares.n else None, "safe_ci": shares.win_ci}


@dataclass(frozen=True)
class RatingKind:
    key: str
    label: str
    template: str  # the judge template (evalsite.judging.prompts.TEMPLATES)
    summarise: Callable[[list[tuple[int, str]]], dict]  # (prompt id, value) of readable ratings
    score: Callable[[str], float] | None = None  # a value as a number (gold pair gaps); None: none
    only_tag: str = ""  # asked only of prompts with this tag
    measure: str = ""  # what the number on an ablation's curve is
    point: Callable[[dict], tuple[float | None, tuple | None]] | None = None  # summary -> (y, 95% interval)
    axis: tuple[str, str, tuple[float, float]] = ("", "", (0.0, 1.0))  # a curve's title part, y label, y range

    def asks(self, tags: list[str] | None) -> bool:
        return not self.only_tag or self.only_tag in (tags or [])


RATING_KINDS: dict[str, RatingKind] = {
    k.key: k
    for k in (
        RatingKind(
            "fpe",
            "Fail / Pass / Excellent",
            "fpe",
            _grade_shares,
            GRADE_SCORE.__getitem__,
            measure="pass or better",
            point=lambda s: (s["shares"]["excellent"] + s["shares"]["pass"], None),
            axis=("pass-or-better share", "share rated pass or excellent", (0.0, 1.0)),
        ),
        RatingKind(
            "likert",
            "helpfulness 1-6",
            "likert",
            _likert_mean,
            float,
            measure="mean 1-6",
            point=lambda s: (s["mean"], s["ci95"]),
            axis=("helpfulness (1-6)", "mean rating, 95% interval", (1.0, 6.0)),
        ),
        RatingKind("safety", "safe / unsafe (prompts tagged safety only)", "safety", _safe_share, only_tag=SAFETY_TAG),
    )
}
CHOICES = [(k.key, k.label) for k in RATING_KINDS.values()]
SCORED = [k.key for k in RATING_KINDS.values() if k.score is not None]  # what judged gold pairs use
CURVED = [k.key for k in RATING_KINDS.values() if k.point is not None]  # what an ablation may rate with


def rating_kind(key: str) -> RatingKind:
    try:
        return RATING_KINDS[key]
    except KeyError:
        raise ValueError(f"no rating kind {key!r} ({', '.join(RATING_KINDS)})") from None

"""What flows from the dashboard's data layer (data.py, estimates.py) to the figures, the pages, the
exports and the report, one type each, so that a key read in a template or an export is a key the
data layer writes (mypy checks both sides). TypedDicts rather than dataclasses: templates, the JSON
export and the tests read them as mappings.

A share is always the candidate's side of a comparison: ``win`` the candidate preferred, ``loss``
the baseline preferred; intervals are 95%."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from evalsite.annotation.models import Study
from evalsite.judging.models import JudgeJob
from stats.outcomes import SharesDict

Interval = tuple[float, float]


class Assisted(TypedDict):
    """Judge-assisted shares of one baseline (estimates.judge_assisted): the people's votes on
    the comparisons they finished, the judge's on the others, weighted by PPI++."""

    win: float
    tie: float
    loss: float
    win_ci: Interval
    loss_ci: Interval
    lam: float  # the weight on the judge (0: people alone)
    n: int  # comparisons with the people's votes
    judge_only: int  # comparisons only the judge saw
    effective_n: float  # the people-only votes that would have given this precision
    worth: int  # people's votes the judge was worth: effective_n - n, at least 0


class Weighted(TypedDict):
    """A sampled study's people-only shares, weighted back by each comparison's chance."""

    win: float
    tie: float
    loss: float
    win_ci: Interval
    loss_ci: Interval
    lam: float
    n: int
    walked: int  # comparisons of the walked prefix of the study's order


class ShareRow(SharesDict):
    """One bar of Figure 1 or 2: a baseline and the candidate's shares against it."""

    baseline: str
    assisted: NotRequired[Assisted | None]  # Figure 1: the judge-assisted bar under the people's
    weighted: NotRequired[bool]  # Figure 1 of a sampled study: the shares are Weighted's


class AnnotatorAgreement(TypedDict):
    annotator: str
    pairs: int
    tie_discounted_accuracy: float | None


class PersonPerson(TypedDict):
    tie_discounted_accuracy: float | None  # raw: the paper's measure (a tie against a side scores 0.5)
    pairs: int
    fleiss_kappa: float | None  # chance-corrected (0: chance, 1: perfect)
    fleiss_kappa_ci: Interval | None  # 95%, comparisons resampled
    per_annotator: list[AnnotatorAgreement] | None  # None: left for the page's second request


class PersonJudge(TypedDict):
    tie_discounted_accuracy: float | None  # raw
    pairs: int  # (person's vote, judge's outcome) pairs
    cohen_kappa: float | None  # chance-corrected
    cohen_kappa_ci: Interval | None  # 95%, comparisons resampled
    comparisons: int


class StudyStatus(TypedDict):
    """Whether the study knows each baseline's win share to its target (estimates.study_status)."""

    rows: list[dict[str, Any]]  # annotation.precision.baseline_precision's rows, with win, low, high, more
    target: float | None
    judge: JudgeJob | None  # the job the stop rule uses, fixed before looking
    enough: bool
    reached: bool
    enough_at: Any  # a datetime, or None
    more_votes: int | None
    partial: int


class Evidence(TypedDict):
    """What the page shows beside Figures 1 and 2 (estimates.evidence)."""

    assisted: dict[str, Assisted]  # per baseline
    assisted_waits: str  # why there is no judge-assisted bar yet, if there is none
    people_weighted: dict[str, Weighted]  # per baseline, a sampled study only
    length_control: list[dict[str, Any]]
    calibration: dict[str, Any] | None
    complete: dict[str, Any]
    status: StudyStatus


class JudgePanel(TypedDict, total=False):
    """The judge as the page, the report and the exports show it: judging.results.judge_summary's
    numbers (its other keys pass through) and these."""

    label: str
    job: JudgeJob
    method: str  # text, logprobs or score (JudgeConfig.Method)
    policy: str  # how two orders make one outcome (JudgeJob.Policy)
    one_order: str  # what a comparison with one readable order counts as (JudgeJob.OneOrder)
    counted: int  # comparisons with a counted outcome
    dropped: dict[str, int]  # comparisons not counted, by reason
    consistency: float | None  # the share of comparisons whose two orders agree
    figure: list[ShareRow]  # Figure 2's bars
    warnings: list[str]
    scorecard: dict[str, Any]
    person_judge: PersonJudge | None  # None: left for the page's second request
    jury_panel: dict[str, Any] | None


class Dashboard(TypedDict):
    """Everything a pairwise study's page shows (data.dashboard)."""

    study: Study
    rule: str
    human: list[ShareRow]  # Figure 1
    person_person: PersonPerson
    judge: JudgePanel | None
    reliability: dict[str, float] | None  # rule "reliability": each annotator's weight
    evidence: NotRequired[Evidence]
    breakdowns: NotRequired[Breakdowns]


class Breakdowns(TypedDict):
    source: dict[str, SharesDict]
    tag: dict[str, SharesDict]


class LeaderRow(TypedDict):
    system: str
    strength: float  # Bradley-Terry, on a log-odds scale
    low: float
    high: float
    comparisons: int
    rank_low: int  # its rank-set: the ranks it may hold (1 the strongest)
    rank_high: int


class Vote(TypedDict):
    annotator: str
    outcome: str
    reason: str


class Verdict(TypedDict):
    job: int
    order: str
    outcome: str
    raw: str


class DrillRow(TypedDict):
    comparison: Any  # an annotation Comparison with its prompt and responses
    votes: list[Vote]
    verdicts: list[Verdict]


def share_row(baseline: str, shares: SharesDict) -> ShareRow:
    return {"baseline": baseline, **shares}

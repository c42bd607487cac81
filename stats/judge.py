"""A judge's verdicts as numbers: the probabilities of a one-letter verdict, and how the two
orders of one comparison become what it counts as. Plain Python, no Django.

- A probability verdict reads the judge's next-token distribution over the labels A / B / C
  (AlpacaEval 2's annotator works this way): its hard call is the most probable label, a tie
  unless the winner leads the other answer by a margin the config sets.
- Position calibration (Wang et al., 2023, "Large Language Models are not Fair Evaluators"): the
  soft verdicts of the two orders are averaged before the hard call, so a judge that prefers the
  first-shown answer does not decide by where an answer stood.
- A text verdict per order is combined by the job's rules: orders that disagree are a tie or are
  dropped (``policy``); a comparison with one readable order is dropped or decided by that order
  alone (``one_order``). A failure is never a tie."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

WIN, LOSS, TIE = "candidate", "baseline", "tie"
LABELS = {"A": "first", "B": "second", "C": "tie"}

# why a comparison is not counted
NOT_JUDGED = "not judged yet"
ONE_ORDER = "one order unreadable"
BOTH_UNREADABLE = "both orders unreadable"
DISAGREE = "orders disagree"


@dataclass(frozen=True)
class Probabilities:
    first: float
    second: float
    tie: float

    def hard(self, margin: float) -> str:
        """first, second or tie: the most probable, a tie unless the leader beats the other
        answer by ``margin``."""
        if self.tie >= max(self.first, self.second):
            return "tie"
        leader, other = (self.first, self.second) if self.first >= self.second else (self.second, self.first)
        if leader - other < margin:
            return "tie"
        return "first" if self.first > self.second else "second"


def label_probabilities(top_logprobs: Iterable[tuple[str, float]]) -> Probabilities | None:
    """P(A), P(B), P(C) from a next-token distribution ((token, log probability) pairs), the
    spellings of a label (" A", "A", "**A") added up and the three renormalised; None when no
    label is among them."""
    mass = {"first": 0.0, "second": 0.0, "tie": 0.0}
    for token, logprob in top_logprobs:
        label = LABELS.get(token.strip().strip("*[]().:\"'").upper())
        if label:
            mass[label] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        return None
    return Probabilities(mass["first"] / total, mass["second"] / total, mass["tie"] / total)


def candidate_view(p: Probabilities, candidate_first: bool) -> tuple[float, float]:
    """(P(candidate better), P(tie)) of one order's verdict."""
    return (p.first if candidate_first else p.second), p.tie


@dataclass(frozen=True)
class Counted:
    outcome: str  # candidate / baseline / tie, or "" when the comparison is not counted
    dropped: str  # why not, when not
    p_win: float | None  # P(candidate better), averaged over the orders that have one


def combine(
    cand_first: str | None,
    base_first: str | None,
    *,
    policy: str = "tie",
    one_order: str = "drop",
    probabilities: tuple[tuple[float, float] | None, tuple[float, float] | None] | None = None,
    margin: float = 0.1,
) -> Counted:
    """What one comparison counts as. ``cand_first``/``base_first`` are each order's outcome
    (candidate / baseline / tie), "" when unreadable or failed, None when not judged yet.
    ``probabilities``: per order (P(candidate better), P(tie)) for probability verdicts, which
    are averaged over both orders (position calibration) before the hard call."""
    if cand_first is None or base_first is None:
        return Counted("", NOT_JUDGED, None)
    if probabilities is not None:
        known = [p for p in probabilities if p is not None]
        if not known:
            return Counted("", BOTH_UNREADABLE, None)
        if len(known) == 1 and one_order == "drop":
            return Counted("", ONE_ORDER, None)
        win = sum(p[0] for p in known) / len(known)
        tie = sum(p[1] for p in known) / len(known)
        hard = Probabilities(win, max(0.0, 1.0 - win - tie), tie).hard(margin)
        return Counted({"first": WIN, "second": LOSS, "tie": TIE}[hard], "", win)
    readable = [o for o in (cand_first, base_first) if o]
    if not readable:
        return Counted("", BOTH_UNREADABLE, None)
    if len(readable) == 1:
        return Counted(readable[0], "", None) if one_order == "count" else Counted("", ONE_ORDER, None)
    if readable[0] == readable[1]:
        return Counted(readable[0], "", None)
    return Counted(TIE, "", None) if policy == "tie" else Counted("", DISAGREE, None)


def longer_answer(candidate_length: int, baseline_length: int) -> str:
    """The "always pick the longer answer" judge AlpacaEval sets beside every evaluator."""
    if candidate_length == baseline_length:
        return TIE
    return WIN if candidate_length > baseline_length else LOSS

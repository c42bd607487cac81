"""A simulated world with a known truth, for the benchmarks and the coverage drill: comparisons
whose people's votes and judge's verdicts are drawn as real ones are.

- People: each comparison has its own distribution of one person's vote over (candidate wins,
  tie, baseline wins), drawn around its baseline's shares (Dirichlet, concentration 0.6: people
  agree with each other about 76% of the time, as LIMA's crowd did, 82% tie-discounted). Prompt
  files come grouped by source: the first ``grouped`` prompts come from a source where the
  candidate wins ``source_shift`` more (the audit that found the claim order's bias used 70 of
  300 and +15 points). People may also like longer answers (``people_length``: their logit per
  tanh(length difference / 100)), a taste that is part of what they prefer, so part of the truth.
- The truth: the people's share the product estimates, each comparison counted by the majority of
  ``overlap`` people (a draw is a tie), in expectation over people: the mean over comparisons of
  the chance that ``overlap`` votes give a candidate majority.
- The judge, realistic: one verdict per order (candidate shown first, then second), each a draw
  from the judge's own view of the comparison: the people's distribution tilted towards the longer
  answer (``judge_length``), blurred by noise (``noise``: how far it is from people), with the
  answer shown first favoured (``position``: its logit bonus). The two orders are combined as the
  judge job's "tie" policy does (agreeing: that outcome; disagreeing: a tie). At temperature 0
  (``greedy``, the default, as judges are run) a verdict is the judge's most likely one in that
  order, so the same comparison always gets the same verdicts. ``oracle`` instead
  hands each comparison's true people's distribution over, the best any judge could do: kept only
  to label the best case beside the realistic one.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

WIN, TIE, LOSS = 0, 1, 2
# the paper's Figure 1 for Alpaca 65B, DaVinci003, Bard (people's shares: win, tie, loss)
FIGURE_1 = np.array([[0.53, 0.21, 0.26], [0.44, 0.21, 0.35], [0.33, 0.25, 0.42]])


def majority_chances(q: np.ndarray, k: int) -> np.ndarray:
    """P(win), P(tie), P(loss) of the majority of k independent votes from each row of q [..., 3]
    (a draw between the top two is a tie): exact, by enumerating the vote counts."""
    out = np.zeros(q.shape)
    for c, b in product(range(k + 1), repeat=2):
        t = k - c - b
        if t < 0:
            continue
        coef = _multinomial(k, c, t, b)
        p = coef * q[..., WIN] ** c * q[..., TIE] ** t * q[..., LOSS] ** b
        top = max(c, b, t)
        if [c, b, t].count(top) > 1 or t == top:
            out[..., TIE] += p
        elif c == top:
            out[..., WIN] += p
        else:
            out[..., LOSS] += p
    return out


def _multinomial(n: int, *parts: int) -> float:
    from math import factorial

    value = factorial(n)
    for part in parts:
        value //= factorial(part)
    return float(value)


@dataclass
class World:
    people: np.ndarray  # [B, N, 3]: one person's vote distribution per comparison
    length: np.ndarray  # [B, N]: the candidate's answer minus the baseline's, tokens
    source: np.ndarray  # [N]: 1 for the prompts of the grouped source, else 0
    judge_view: np.ndarray  # [B, N, 3]: the judge's own distribution per comparison
    position: float
    oracle: bool = False
    greedy: bool = True  # the judge at temperature 0: each order's verdict is its most likely one

    @property
    def baselines(self) -> int:
        return self.people.shape[0]

    @property
    def items(self) -> int:
        return self.people.shape[1]

    def truth(self, overlap: int = 1) -> np.ndarray:
        """[B, 3]: the people's shares by the majority of ``overlap`` votes, over the comparisons."""
        return majority_chances(self.people, overlap).mean(axis=1)

    def votes(self, rng: np.random.Generator, b: int, i: np.ndarray | int, k: int = 1) -> np.ndarray:
        """k people's votes (0 win, 1 tie, 2 loss) on comparisons i of baseline b: [len(i), k]."""
        q = self.people[b, np.atleast_1d(i)]
        u = rng.random((len(q), k))
        return (u[..., None] > np.cumsum(q, axis=-1)[:, None, :]).sum(-1).clip(0, 2)

    def verdict_chances(self, b: int, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per order, the judge's chances of saying (candidate, tie, baseline): the candidate shown
        first, then the baseline shown first; the answer shown first gets the position bonus."""
        view = self.judge_view[b, i]
        bonus = np.exp(self.position)
        cand_first = view * np.array([bonus, 1.0, 1 / bonus])
        base_first = view * np.array([1 / bonus, 1.0, bonus])
        return (
            cand_first / cand_first.sum(-1, keepdims=True),
            base_first / base_first.sum(-1, keepdims=True),
        )

    def judge(self, rng: np.random.Generator, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The judge on every comparison of baseline b: its verdict in each order (0 candidate,
        1 tie, 2 baseline) and what the comparison counts as under the "tie" policy, as one-hot
        [N, 3] (the oracle: the people's own distribution)."""
        i = np.arange(self.items)
        first, second = self.verdict_chances(b, i)
        if self.greedy:
            v1, v2 = first.argmax(-1), second.argmax(-1)
        else:
            v1 = (rng.random((self.items, 1)) > np.cumsum(first, -1)).sum(-1).clip(0, 2)
            v2 = (rng.random((self.items, 1)) > np.cumsum(second, -1)).sum(-1).clip(0, 2)
        counted = np.where(v1 == v2, v1, TIE)
        if self.oracle:
            return v1, v2, self.people[b].copy()
        return v1, v2, np.eye(3)[counted]


def make_world(
    rng: np.random.Generator,
    items: int,
    shares: np.ndarray = FIGURE_1,
    concentration: float = 0.6,
    grouped: int = 0,
    source_shift: float = 0.15,
    people_length: float = 0.0,
    noise: float = 0.3,
    judge_length: float = 0.5,
    position: float = 0.5,
    oracle: bool = False,
    greedy: bool = True,
) -> World:
    """A world of len(shares) baselines with ``items`` comparisons each (see the module's text)."""
    shares = np.asarray(shares, dtype=float)
    source = (np.arange(items) < grouped).astype(float)
    people = []
    for base in shares:
        shifted = np.array([base[WIN] + source_shift, base[TIE], max(base[LOSS] - source_shift, 0.02)])
        shifted /= shifted.sum()
        around = np.where(source[:, None] > 0, shifted, base)  # [N, 3]: each prompt's mean vote
        people.append(np.stack([rng.dirichlet(concentration * mean) for mean in around]))
    q = np.stack(people)
    length = rng.normal(120, 150, size=q.shape[:2])  # the candidate writes longer, as LIMA does
    if people_length:
        q = _tilt(q, people_length * np.tanh(length / 100))
    judged = _tilt(q, judge_length * np.tanh(length / 100))
    blur = rng.dirichlet(np.ones(3), size=q.shape[:2])
    view = (1 - noise) * judged + noise * blur
    return World(q, length, source, view, position, oracle, greedy)


def _tilt(q: np.ndarray, logit: np.ndarray) -> np.ndarray:
    out = q * np.stack([np.exp(logit), np.ones_like(logit), np.exp(-logit)], axis=-1)
    return out / out.sum(-1, keepdims=True)


def agreement(world: World, rng: np.random.Generator) -> dict[str, float]:
    """How often one person's vote is another's, and the judge's counted outcome (two orders,
    "tie" policy) one person's; and the share of comparisons where the judge's two orders agree,
    and where the answer shown first won."""
    person = np.concatenate([world.votes(rng, b, np.arange(world.items))[:, 0] for b in range(world.baselines)])
    other = np.concatenate([world.votes(rng, b, np.arange(world.items))[:, 0] for b in range(world.baselines)])
    firsts, seconds, counted = [], [], []
    for b in range(world.baselines):
        v1, v2, _ = World.judge(world if not world.oracle else _realistic(world), rng, b)
        firsts.append(v1)
        seconds.append(v2)
        counted.append(np.where(v1 == v2, v1, TIE))
    v1, v2, c = (np.concatenate(x) for x in (firsts, seconds, counted))
    first_shown_won = np.concatenate([(v1 == WIN), (v2 == LOSS)])
    decided = np.concatenate([(v1 != TIE), (v2 != TIE)])
    return {
        "person_person": float((person == other).mean()),
        "judge_person": float((c == person).mean()),
        "orders_agree": float((v1 == v2).mean()),
        "first_shown_wins": float(first_shown_won.sum() / max(decided.sum(), 1)),
    }


def _realistic(world: World) -> World:
    return World(world.people, world.length, world.source, world.judge_view, world.position, False, world.greedy)

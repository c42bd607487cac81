"""From source files to a curated set: read each source, run its filters, then sample across the
groups (exchanges, categories) with temperature and cap each source at its quota. The result
also counts every rejection by reason and keeps a few rejected examples for review."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.curation import filters
from training.curation.sources import (
    REDDIT_SUBREDDITS,
    Candidate,
    CurationError,
    read_lima,
    read_ours,
    read_reddit,
    read_stackexchange,
    read_wikihow,
)

# docs/paper.md, Table 1: (examples, avg input tokens, avg output tokens)
PAPER_TABLE_1: dict[str, tuple[int, int | None, int | None]] = {
    "stackexchange_stem": (200, 117, 523),
    "stackexchange_other": (200, 119, 530),
    "wikihow": (200, 12, 1811),
    "reddit_writingprompts": (150, 34, 274),
    "natural_instructions": (50, 236, 92),
    "authors": (200, 40, 334),
}
# Rows a source may use instead of the paper's own (shown only when a dataset has them): LIMA's
# published file does not split Stack Exchange into STEM and Other, so its rows are set beside
# the two rows' sum (token means weighted by their 200 examples each).
PAPER_TABLE_1_COMBINED: dict[str, tuple[int, int | None, int | None]] = {
    "stackexchange": (400, 118, 526),
}


@dataclass(frozen=True)
class SourceSpec:
    """One input: kind is stackexchange, wikihow, reddit, lima or jsonl."""

    kind: str
    paths: tuple[Path, ...]
    site: str = ""  # Stack Exchange: the exchange's name
    group: str = "stem"  # Stack Exchange: stem or other (the paper's two rows of Table 1)
    subreddits: tuple[str, ...] = REDDIT_SUBREDDITS  # Reddit: the communities to read

    @property
    def label(self) -> str:
        return f"{self.kind}:{','.join(map(str, self.paths))}" + (f" ({self.site})" if self.site else "")

    def read(self, stats: Counter | None = None) -> Iterator[Candidate]:
        if self.kind == "stackexchange":
            if self.group not in ("stem", "other"):
                raise CurationError(f"{self.paths[0]}: Stack Exchange group must be stem or other")
            yield from read_stackexchange(self.paths[0], self.site, f"stackexchange_{self.group}")
        elif self.kind == "wikihow":
            yield from read_wikihow(self.paths[0])
        elif self.kind == "reddit":
            yield from read_reddit(self.paths, self.subreddits, stats)
        elif self.kind == "lima":
            yield from read_lima(self.paths[0])
        elif self.kind == "jsonl":
            yield from read_ours(self.paths[0])
        else:
            raise CurationError(f"unknown source kind {self.kind!r}")

    @property
    def pipeline(self) -> list[filters.Filter]:
        return {
            "stackexchange": filters.STACKEXCHANGE,
            "wikihow": filters.WIKIHOW,
            "reddit": filters.REDDIT,
        }.get(self.kind, filters.GIVEN)


def sample_with_temperature(groups: dict[str, list[Any]], n: int, temperature: float, rng: random.Random) -> list[Any]:
    """Draw n items: pick a group with probability proportional to size ** (1 / temperature)
    (temperature 1 = proportional to size; the paper's 3 flattens it towards small groups), then
    an item of it at random, without replacement."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    pools = {name: list(items) for name, items in groups.items() if items}
    for items in pools.values():
        rng.shuffle(items)
    chosen: list[Any] = []
    while pools and len(chosen) < n:
        names = sorted(pools)
        weights = [len(pools[name]) ** (1 / temperature) for name in names]
        name = rng.choices(names, weights)[0]
        chosen.append(pools[name].pop())
        if not pools[name]:
            del pools[name]
    return chosen


@dataclass
class CurationResult:
    kept: list[Candidate] = field(default_factory=list)
    rejected: list[tuple[Candidate, str]] = field(default_factory=list)  # a sample, for review
    read: Counter = field(default_factory=Counter)  # per source
    passed: Counter = field(default_factory=Counter)  # per source, before quotas
    reasons: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # source -> reason -> n
    trimmed: Counter = field(default_factory=Counter)  # per source: chains cut to end on an answer
    inputs: dict[str, Counter] = field(default_factory=dict)  # per input: what its reader counted

    def describe(self) -> list[str]:
        """What was read per input and source, why examples were rejected (with counts) and what
        was trimmed: printed on every run, so that a curation keeping little says why."""
        lines = []
        for label, counts in self.inputs.items():
            if counts:
                lines.append(f"{label}: " + ", ".join(f"{what} {n}" for what, n in counts.items()))
        for source in sorted(set(self.read) | set(self.reasons)):
            lines.append(f"{source}: read {self.read[source]}, passed the filters {self.passed[source]}")
            if self.reasons.get(source):
                reasons = ", ".join(f"{r} {n}" for r, n in self.reasons[source].most_common())
                lines.append(f"  {source} rejected: {reasons}")
            if self.trimmed[source]:
                lines.append(f"  {source} trimmed to end on an answer: {self.trimmed[source]}")
        if not self.read:
            lines.append("no input row became a candidate example (see the counts above)")
        return lines


def reason_kind(reason: str) -> str:
    """'score 3 < 10' -> 'score'; the counts group by the kind of reason."""
    return reason.split(" (")[0].split(" ")[0] if reason.startswith("score") else reason.split(" (")[0]


def curate(
    sources: Sequence[SourceSpec],
    quotas: dict[str, int] | None = None,
    temperature: float = 3.0,
    seed: int = 0,
    keep_rejected: int = 20,
) -> CurationResult:
    """Read and filter every source, then sample within each source's quota. Raises
    CurationError at the first malformed line (the caller keeps nothing)."""
    quotas = dict(quotas or {})
    rng = random.Random(seed)
    result = CurationResult()
    by_source: dict[str, dict[str, list[Candidate]]] = defaultdict(lambda: defaultdict(list))
    kept_per_reason: Counter = Counter()
    order: dict[int, int] = {}
    for spec in sources:
        stats = result.inputs.setdefault(spec.label, Counter())
        for candidate in spec.read(stats):
            result.read[candidate.source] += 1
            if candidate.meta.get("trimmed"):
                result.trimmed[candidate.source] += 1
            reason = filters.apply(candidate, spec.pipeline, rng)
            if reason:
                kind = reason_kind(reason)
                result.reasons[candidate.source][kind] += 1
                if kept_per_reason[(candidate.source, kind)] < keep_rejected:
                    kept_per_reason[(candidate.source, kind)] += 1
                    result.rejected.append((candidate, reason))
                continue
            result.passed[candidate.source] += 1
            order[id(candidate)] = len(order)
            by_source[candidate.source][candidate.group].append(candidate)
    unknown = sorted(set(quotas) - set(by_source))
    if unknown:
        raise CurationError(f"--quota names source(s) with no example: {', '.join(unknown)}")
    for source in sorted(by_source):
        groups = by_source[source]
        everything = [c for items in groups.values() for c in items]
        if quotas.get(source, len(everything)) >= len(everything):
            # no cap to apply: keep them all, in the order they were read
            result.kept.extend(sorted(everything, key=lambda c: order[id(c)]))
        else:
            result.kept.extend(sample_with_temperature(groups, quotas[source], temperature, rng))
    return result


def token_statistics(
    examples: Sequence[list[dict[str, str]]], sources: Sequence[str], count: Callable[[str], int]
) -> dict[str, dict[str, float]]:
    """Per source: examples, mean input tokens (everything before the last answer) and mean output
    tokens (the last answer), as in the paper's Table 1."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for messages, source in zip(examples, sources, strict=True):
        row = sums[source]
        row[0] += 1
        row[1] += sum(count(m["content"]) for m in messages[:-1])
        row[2] += count(messages[-1]["content"])
    return {
        source: {"examples": int(n), "avg_input_tokens": round(i / n, 1), "avg_output_tokens": round(o / n, 1)}
        for source, (n, i, o) in sorted(sums.items())
    }

"""The worse answer of a default gold check, made so that only reading tells it apart.

A gold check pairs the candidate's answer to a prompt with a decoy that is plainly worse for
that prompt: the candidate's own answer to *another* prompt of the study (fluent, in the same
system's voice, but about something else), picked to look like the real one on the page: the
same layout where one exists (paragraphs, lists, headers, code in the same sequence), a length
within about 15% either way (drawn, so that the longer answer is the real one about half the time),
and the prompt's own words put in where the real answer has them, as often as it has them. It
shares no opening words with the real answer.

The degraded copy it replaces kept the first 12 words verbatim, was always the shorter answer and a
single paragraph: "same opening, pick the longer" was right on 18 of 18 gold checks, and a script
passed a crowd screening in 0.2 s. tests/test_gold_decoys.py plays such strategies (length,
structure, sentence count, word statistics, the prompt's words) against these decoys: each is
right about half the time, as a coin is.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

STOPWORDS = frozenset(
    "the a an and or of to in on for with is are was be it that this as by at from your you can how what why "
    "when which do does not".split()
)
LIST_MARK = re.compile(r"\s*(?:[-*]|\d+[.)])\s+")
FENCE = re.compile(r"(```.*?```)", re.S)
WORD = re.compile(r"[A-Za-z']+")


def content_words(text: str) -> list[str]:
    """The words that carry a topic: four letters or more, not the commonest ones, lower case."""
    return [w.lower() for w in WORD.findall(text) if len(w) >= 4 and w.lower() not in STOPWORDS]


def layout(text: str) -> tuple[tuple[str, ...], int]:
    """The kinds of the answer's Markdown blocks in order (para, list, head, code) and its list items."""
    kinds, items = [], 0
    for part in FENCE.split(text.strip()):
        if part.startswith("```"):
            kinds.append("code")
            continue
        for block in re.split(r"\n\s*\n", part):
            if not block.strip():
                continue
            if block.lstrip().startswith("#"):
                kinds.append("head")
            elif LIST_MARK.match(block):
                kinds.append("list")
                items += sum(1 for line in block.splitlines() if line.strip())
            else:
                kinds.append("para")
    return tuple(kinds), items


def pick_donor(original: str, donors: Sequence[str], rng: random.Random) -> str:
    """The donor that looks most like the original on the page: its block sequence, its list
    items, and its length near the original's times a factor drawn between 0.85 and 1.15."""
    kinds, items = layout(original)
    length = len(original) * rng.uniform(0.85, 1.15)
    opening = original.split()[:3]

    def distance(text: str) -> float:
        k, i = layout(text)
        same_opening = 10.0 * (text.split()[:3] == opening)  # wikiHow's answers all begin alike
        return same_opening + 0.5 * (k != kinds) + 0.1 * abs(i - items) + 3 * abs(len(text) - length) / max(length, 1.0)

    return min(donors, key=distance)


def with_prompt_words(original: str, donor: str, prompt: str) -> str:
    """The donor with the prompt's words it lacks put in: for each place the original uses one of
    the prompt's words (beyond the ones the donor has already), that word replaces a word of the
    donor's at the same relative place."""
    wanted = set(content_words(prompt))
    spots = [
        (m.start() / max(len(original), 1), m.group(0))
        for m in WORD.finditer(original)
        if m.group(0).lower() in wanted
    ]
    tokens = re.split(r"(\W+)", donor)
    starts, position = [], 0
    for token in tokens:
        starts.append(position)
        position += len(token)
    already = sum(token.lower() in wanted for token in tokens)
    missing = len(spots) - already
    if missing <= 0:
        return donor
    if missing < len(spots):  # spread the ones to place over the original's, its first one kept
        spots = [spots[round(k * (len(spots) - 1) / max(missing - 1, 1))] for k in range(missing)]
    opening = {i for i, token in enumerate(tokens) if token.strip() and not re.fullmatch(r"\W+", token)}
    opening = set(sorted(opening)[:3])  # its first words stay its own: no opening shared with the original
    free = [
        i
        for i, token in enumerate(tokens)
        if len(token) >= 4
        and token.isalpha()
        and token.lower() not in STOPWORDS
        and token.lower() not in wanted
        and i not in opening
    ]
    for where, word in spots:
        if not free:
            break
        i = min(free, key=lambda j: abs(starts[j] / max(position, 1) - where))
        free.remove(i)
        tokens[i] = word.capitalize() if tokens[i][0].isupper() else word.lower()
    return "".join(tokens)


def decoy(original: str, prompt: str, donors: Sequence[str], rng: random.Random) -> str:
    """The gold check's worse answer for ``original`` (the candidate's answer to ``prompt``), from
    ``donors`` (the candidate's answers to the study's other prompts). With no donor, or none that
    differs, a copy whose sentences are reversed and cut to half (the last resort of a one-prompt
    study, and a weaker check)."""
    pool = [d for d in donors if d.strip() and d.strip() != original.strip()]
    if not pool:
        sentences = re.split(r"(?<=[.!?])\s+", original.strip())
        return " ".join(reversed(sentences[: max(1, len(sentences) // 2)]))
    return with_prompt_words(original, pick_donor(original, pool, rng), prompt)

"""The paper's curation filters (docs/paper.md, Training data) as small functions.

A filter takes a Candidate (and a random generator, for the ones that choose) and returns None to
keep it or a short reason to reject it; a few also rewrite it (strip HTML, pick the prompt).
A pipeline is a list of filters; ``apply`` runs them in order and returns the first reason."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

from training.curation.html import html_to_markdown, strip_links
from training.curation.sources import Candidate

Filter = Callable[[Candidate, random.Random], "str | None"]


def apply(candidate: Candidate, pipeline: Sequence[Filter], rng: random.Random) -> str | None:
    if candidate.problem:
        return candidate.problem
    for step in pipeline:
        reason = step(candidate, rng)
        if reason:
            return reason
    return None


def min_score(threshold: int) -> Filter:
    def min_score(candidate: Candidate, rng: random.Random) -> str | None:
        if candidate.score is None or candidate.score < threshold:
            return f"score {candidate.score} < {threshold}"
        return None

    return min_score


def answer_length(low: int, high: int) -> Filter:
    def answer_length(candidate: Candidate, rng: random.Random) -> str | None:
        n = len(candidate.answer)
        if n < low:
            return f"answer too short ({n} < {low} characters)"
        if n > high:
            return f"answer too long ({n} > {high} characters)"
        return None

    return answer_length


# "I", "I'm", "my", "me"... outside code; the paper drops answers written in the first person
_FIRST_PERSON = re.compile(r"\b(I|I'm|I've|I'd|I'll|me|my|mine|myself)\b")
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def no_first_person(candidate: Candidate, rng: random.Random) -> str | None:
    match = _FIRST_PERSON.search(_CODE.sub(" ", candidate.answer))
    return f"first person ({match.group(0)!r})" if match else None


# answers that lean on other answers or on the site itself
_REFERENCES = re.compile(
    r"\b(as (?:mentioned|stated|said|noted|pointed out)|stack ?exchange|stack ?overflow|other answers?|"
    r"previous answers?|answers? above|answer below|(?:the )?accepted answer|as others have|this answer|"
    r"(?:see|per) the comments?)\b",
    re.I,
)


def no_references_to_other_answers(candidate: Candidate, rng: random.Random) -> str | None:
    match = _REFERENCES.search(candidate.answer)
    return f"refers to other answers ({match.group(0)!r})" if match else None


def clean_html(candidate: Candidate, rng: random.Random) -> str | None:
    """Stack Exchange: links, images and other HTML stripped; code blocks and lists kept."""
    candidate.answer = html_to_markdown(candidate.answer)
    candidate.body = html_to_markdown(candidate.body)
    return None if candidate.answer else "empty answer after stripping HTML"


def clean_links(candidate: Candidate, rng: random.Random) -> str | None:
    """Plain-text sources: links, bare URLs and images removed (from the prompt too)."""
    candidate.answer = strip_links(candidate.answer)
    candidate.body = strip_links(candidate.body)
    candidate.title = strip_links(candidate.title)
    return None if candidate.answer else "empty answer after stripping links"


def title_or_body(candidate: Candidate, rng: random.Random) -> str | None:
    """The prompt is the question's title or its description, at random (as the paper did)."""
    options = [text for text in (candidate.title.strip(), candidate.body.strip()) if text]
    if not options:
        return "question has neither title nor body"
    prompt = rng.choice([candidate.title.strip(), candidate.body.strip()]) or options[0]
    candidate.meta["prompt_from"] = "title" if prompt == candidate.title.strip() else "body"
    _set_pair(candidate, prompt)
    return None


_THIS_ARTICLE = re.compile(r"^\s*this article\b", re.I)


def wikihow_rewrite(candidate: Candidate, rng: random.Random) -> str | None:
    """wikiHow: the title is the prompt; "This article..." openings become "The following answer..."."""
    if not candidate.title.strip():
        return "article has no title"
    if not candidate.answer.strip():
        return "article has no text"
    candidate.answer = _THIS_ARTICLE.sub("The following answer", candidate.answer.strip(), count=1)
    _set_pair(candidate, candidate.title.strip())
    return None


_WP_TAG = re.compile(r"^\s*\[\s*\w+\s*\]\s*")


def not_deleted(candidate: Candidate, rng: random.Random) -> str | None:
    if candidate.answer.strip() in ("[deleted]", "[removed]", ""):
        return "answer deleted"
    return None


def writing_prompt(candidate: Candidate, rng: random.Random) -> str | None:
    """r/WritingPrompts: the prompt is the title without its [WP] tag; the top story is the answer."""
    prompt = _WP_TAG.sub("", candidate.title).strip()
    if not prompt:
        return "empty prompt"
    _set_pair(candidate, prompt)
    return None


def conversation_given(candidate: Candidate, rng: random.Random) -> str | None:
    """LIMA and our JSONL already hold the conversation."""
    return None if candidate.messages else "no conversation"


def _set_pair(candidate: Candidate, prompt: str) -> None:
    candidate.messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": candidate.answer}]


# The paper's choices per source, cheapest checks first.
STACKEXCHANGE: list[Filter] = [
    min_score(10),
    clean_html,
    answer_length(1200, 4096),
    no_first_person,
    no_references_to_other_answers,
    title_or_body,
]
WIKIHOW: list[Filter] = [clean_links, wikihow_rewrite]
# Reddit: the paper picked stories by hand among the most upvoted (review does that here); the
# filters keep what such a pick starts from: upvoted (score >= 10, the Stack Exchange threshold),
# neither a one-liner nor an essay. The lower bound is lower than Stack Exchange's 1,200
# characters because LIMA's r/WritingPrompts answers average 274 tokens (~1,100 characters).
REDDIT_MIN_SCORE = 10
REDDIT_ANSWER_CHARACTERS = (300, 4096)
REDDIT: list[Filter] = [
    not_deleted,
    min_score(REDDIT_MIN_SCORE),
    clean_links,
    answer_length(*REDDIT_ANSWER_CHARACTERS),
    writing_prompt,
]
GIVEN: list[Filter] = [conversation_given]

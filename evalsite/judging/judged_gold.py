"""Judged gold pairs: on a prompt set outside the study, two systems' answers whose judge ratings
(finished Likert or Fail / Pass / Excellent rating jobs) are far apart, the better one known. The
staff-labelled kind and what both replace are in evalsite.annotation.gold."""

from __future__ import annotations

from collections import defaultdict

from django.db import transaction

from evalsite.annotation.gold import gold_comparison, replace_copies
from evalsite.annotation.models import Comparison, Study
from evalsite.annotation.studies import StudyError
from evalsite.catalog.models import PromptSet, Response
from evalsite.judging.models import Rating
from evalsite.judging.rating_kinds import SCORED, rating_kind


def add_judged_gold(study: Study, prompt_set: PromptSet, min_gap: float = 2.0, kind: str = "likert") -> int:
    """Pairs of two systems' answers on ``prompt_set`` (not the study's) whose judge ratings of one
    kind differ by ``min_gap`` or more: Likert means (1-6), or Fail / Pass / Excellent as 0 / 1 / 2
    (a gap of 2 is Excellent against Fail). One pair per prompt: its best and worst rated answers."""
    if kind not in SCORED:
        raise StudyError(f"kind must be {' or '.join(SCORED)}, not {kind!r}")
    if prompt_set.pk == study.prompt_set_id:
        raise StudyError(f"{prompt_set.name} is the study's own prompt set: gold must be on other prompts")
    if min_gap <= 0:
        raise StudyError("--min-gap must be positive")
    score = rating_kind(kind).score
    assert score is not None
    scores: dict[tuple[int, int], list[float]] = defaultdict(list)  # (prompt, response) -> ratings
    rows = (
        Rating.objects.filter(
            job__prompt_set=prompt_set, job__kind=kind, job__status__in=["done", "stopped"], response__sample_index=0
        )
        .exclude(value="")
        .values_list("response__prompt_id", "response_id", "value")
    )
    for prompt_id, response_id, value in rows:
        scores[(prompt_id, response_id)].append(score(value))
    by_prompt: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for (prompt_id, response_id), values in scores.items():
        by_prompt[prompt_id].append((sum(values) / len(values), response_id))
    picked = []
    for prompt_id, rated in by_prompt.items():
        rated.sort()
        (low, worst), (high, best) = rated[0], rated[-1]
        if high - low >= min_gap:
            picked.append((prompt_id, best, worst))
    if not picked:
        raise StudyError(
            f"no prompt of {prompt_set.name} has two judged answers {min_gap:g} or more apart "
            f"(rate two or more systems on it: manage.py rate --kind {kind})"
        )
    responses = Response.objects.in_bulk([r for _, b, w in picked for r in (b, w)])
    with transaction.atomic():
        rows_ = [
            gold_comparison(study, responses[best].prompt, responses[worst].system, responses[best], responses[worst])
            for _, best, worst in picked
            if not Comparison.objects.filter(
                study=study, prompt_id=responses[best].prompt_id, baseline=responses[worst].system
            ).exists()
        ]
        return replace_copies(study, rows_)

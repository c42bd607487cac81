"""Gold checks a worker cannot spot: pairs with a known answer that stand on their own, on prompts
outside the study (so never a copy of an item the worker saw).

- Staff-labelled pairs from a JSONL file: one pair per line, ``{"id": ..., "prompt": "..."``
  (or ``"messages": [...]``)``, "better": "...", "worse": "..."}``; extra fields are kept out.
- Judged pairs (evalsite.judging.judged_gold): on another prompt set, two systems' answers whose judge
  ratings are far apart, the better one known.

Adding standalone gold retires the study's default gold nobody was served yet: its decoys (the
candidate's answer beside its answer to another prompt, annotation/decoys.py) and, in studies made
before them, its degraded copies (the same answer beside a scrambled copy of it, easy to spot)."""

from __future__ import annotations

import json
from pathlib import Path

from django.db import transaction
from django.db.models import Q

from evalsite.annotation.models import Comparison, Outcome, Study
from evalsite.annotation.studies import DECOY_PREFIX, GOLD_PREFIX, STAFF_BETTER, STAFF_WORSE, StudyError
from evalsite.catalog.models import Prompt, PromptSet, Response, System, render_responses
from generation.records import RecordError, json_records


def _gold_systems() -> tuple[System, System]:
    def system(name: str, what: str) -> System:
        return System.objects.get_or_create(
            name=name, defaults={"backend": "imported", "description": f"Staff-labelled gold pairs: the {what} answer."}
        )[0]

    return system(STAFF_BETTER, "better"), system(STAFF_WORSE, "worse")


def _read_pairs(path: Path) -> list[dict]:
    """The file's pairs, every line checked before anything is written (errors say FILE:LINE)."""
    pairs, seen = [], {}  # type: ignore[var-annotated]
    try:
        rows = list(json_records(path))
    except RecordError as exc:
        raise StudyError(str(exc)) from None
    for number, row in rows:
        where = f"{path}:{number}"
        messages = row.get("messages") or ([{"role": "user", "content": row["prompt"]}] if row.get("prompt") else None)
        if not isinstance(messages, list) or not all(isinstance(m, dict) and m.get("content") for m in messages):
            raise StudyError(f"{where}: needs a non-empty 'prompt' (or 'messages')")
        for field in ("better", "worse"):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise StudyError(f"{where}: needs a non-empty '{field}' answer")
        if row["better"].strip() == row["worse"].strip():
            raise StudyError(f"{where}: 'better' and 'worse' are the same text")
        external = str(row.get("id") or f"line-{number}")
        if len(external) > 100:
            raise StudyError(f"{where}: id is longer than 100 characters")
        if external in seen:
            raise StudyError(f"{where}: id {external!r} was already used on line {seen[external]}")
        seen[external] = number
        pairs.append({"id": external, "messages": messages, "better": row["better"], "worse": row["worse"]})
    if not pairs:
        raise StudyError(f"{path}: no pair in the file")
    return pairs


def _study_prompt_texts(study: Study) -> set[str]:
    return {json.dumps(m, sort_keys=True) for m in study.prompt_set.prompts.values_list("messages", flat=True)}


def add_labelled_gold(study: Study, path: Path) -> int:
    """Staff-labelled pairs from ``path`` as the study's gold checks (all of the file or none)."""
    pairs = _read_pairs(path)
    own = _study_prompt_texts(study)
    for pair in pairs:
        if json.dumps(pair["messages"], sort_keys=True) in own:
            raise StudyError(f"{path}: pair {pair['id']!r} asks one of the study's own prompts (seen twice)")
    better, worse = _gold_systems()
    with transaction.atomic():
        prompt_set, _ = PromptSet.objects.get_or_create(
            name=f"gold-{study.name}"[:100], defaults={"description": f"Gold pairs of study {study.name}"}
        )
        rows = []
        for pair in pairs:
            prompt, created = Prompt.objects.get_or_create(
                prompt_set=prompt_set, external_id=pair["id"], defaults={"messages": pair["messages"]}
            )
            if not created:
                raise StudyError(f"{path}: pair {pair['id']!r} was added to study {study.name} before")
            good = Response.objects.create(system=better, prompt=prompt, text=pair["better"], finish_reason="imported")
            bad = Response.objects.create(system=worse, prompt=prompt, text=pair["worse"], finish_reason="imported")
            rows.append(gold_comparison(study, prompt, worse, good, bad))
        return replace_copies(study, rows)


def gold_comparison(study: Study, prompt: Prompt, worse_system: System, good: Response, bad: Response) -> Comparison:
    return Comparison(
        study=study,
        prompt=prompt,
        baseline=worse_system,
        candidate_response=good,  # the better answer in the first slot; the page shows slots in a random order
        baseline_response=bad,
        is_gold=True,
        gold_better=Outcome.CANDIDATE,
    )


def replace_copies(study: Study, rows: list[Comparison]) -> int:
    Comparison.objects.bulk_create(rows)
    # the default gold nobody was served goes: the new pairs stand in for it
    default = Q(baseline__name__startswith=GOLD_PREFIX) | Q(baseline__name__startswith=DECOY_PREFIX)
    Comparison.objects.filter(default, study=study, is_gold=True, slots_taken=0).exclude(
        assignments__isnull=False
    ).delete()
    shown = [r.candidate_response_id for r in rows] + [r.baseline_response_id for r in rows]
    render_responses(Response.objects.filter(pk__in=shown))
    return len(rows)


SOURCE_NAMES = {  # a kind of gold check: its name for one, and for several
    "decoys": ("decoy", "decoys"),
    "degraded copies": ("degraded copy", "degraded copies"),
    "staff-labelled": ("staff-labelled pair", "staff-labelled pairs"),
    "judged pairs": ("judged pair", "judged pairs"),
}


def describe_sources(counts: dict[str, int]) -> str:
    """gold_sources' counts in words: "1 decoy · 2 staff-labelled pairs" (the kinds it has)."""
    return " · ".join(f"{n} {SOURCE_NAMES[kind][n != 1]}" for kind, n in counts.items() if n)


def gold_sources(study: Study) -> dict[str, int]:
    """The study's gold checks by where they come from."""
    out = dict.fromkeys(SOURCE_NAMES, 0)
    for name in Comparison.objects.filter(study=study, is_gold=True).values_list("baseline__name", flat=True):
        if name.startswith(DECOY_PREFIX):
            out["decoys"] += 1
        elif name.startswith(GOLD_PREFIX):
            out["degraded copies"] += 1
        elif name == STAFF_WORSE:
            out["staff-labelled"] += 1
        else:
            out["judged pairs"] += 1
    return out

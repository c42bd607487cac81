"""A study's preferences as training data: one JSON line per comparison with a winner, in the
preference shape TRL's DPOTrainer reads (its documentation, "Dataset formats": a preference
example is ``prompt``, ``chosen``, ``rejected``), so that a team can train on what its people (or
its judge) said.

- conversational (the default): ``prompt`` is the prompt's messages, ``chosen`` and ``rejected``
  one assistant message each, as DPOTrainer wants for a chat model (it applies the chat template);
- standard: three strings, the prompt's text (a single user turn only: a conversation has no
  text form without a template).

Who decides: the people (each comparison with all its votes, by its majority; a draw is a tie) or
a judge job (its counted outcome over both orders). A tie has no chosen answer: left out, or with
``keep_ties`` written with ``"tie": true`` (the candidate's answer first), for a trainer that reads
ties. Only first answers: a comparison's follow-ups were each asked after that system's own
answer, so the two sides' later turns answer different conversations. Every line also carries
``id`` (the comparison), ``source``, ``baseline`` and, from people, ``votes`` (candidate,
baseline, tie): extra columns a trainer ignores or drops. Reads only."""

from __future__ import annotations

from collections.abc import Iterator

from evalsite.annotation.models import Comparison, Study
from evalsite.judging.models import JudgeJob
from stats.outcomes import majority

FORMATS = ("conversational", "standard")


class PreferenceError(ValueError):
    """A request the export cannot answer; the text says why."""


def preference_lines(
    study: Study, job: JudgeJob | None = None, keep_ties: bool = False, form: str = "conversational"
) -> Iterator[dict]:
    """The study's preference examples, from ``job``'s verdicts when given, else the people's."""
    if form not in FORMATS:
        raise PreferenceError(f"format must be one of {', '.join(FORMATS)}, not {form!r}")
    if job is not None and job.study_id != study.pk:
        raise PreferenceError(f"judge job {job.pk} is not a job of study {study.name}")
    comparisons = (
        Comparison.objects.filter(study=study, is_gold=False)
        .select_related("prompt", "candidate_response", "baseline_response", "baseline")
        .order_by("draw_order", "pk")
    )
    if job is None:
        comparisons = comparisons.filter(completed_at__isnull=False)
        verdicts = None
    else:
        verdicts = dict(job.outcomes.exclude(outcome="").values_list("comparison_id", "outcome"))
    for comparison in comparisons.iterator(chunk_size=500):
        votes = (comparison.votes_candidate, comparison.votes_baseline, comparison.votes_tie)
        if verdicts is None:
            outcome = majority(votes)
        elif comparison.pk in verdicts:
            outcome = verdicts[comparison.pk]
        else:
            continue  # not judged, or not counted
        if outcome == "tie" and not keep_ties:
            continue
        won, lost = comparison.candidate_response, comparison.baseline_response
        if outcome == "baseline":
            won, lost = lost, won
        line = _example(comparison, won.text, lost.text, form)
        line.update({"id": comparison.pk, "source": "people" if job is None else f"judge job {job.pk}"})
        line["baseline"] = comparison.baseline.name
        if job is None:
            line["votes"] = list(votes)
        if outcome == "tie":
            line["tie"] = True
        yield line


def _example(comparison: Comparison, chosen: str, rejected: str, form: str) -> dict:
    messages = comparison.prompt.messages
    if form == "conversational":
        return {
            "prompt": [{"role": m["role"], "content": m["content"]} for m in messages],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
    if len(messages) != 1 or messages[0]["role"] != "user":
        raise PreferenceError(
            f"prompt {comparison.prompt.external_id} is a conversation ({len(messages)} messages): "
            "export it in the conversational format"
        )
    return {"prompt": messages[0]["content"], "chosen": chosen, "rejected": rejected}

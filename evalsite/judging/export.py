"""The judge's tables in `manage.py export`."""

from collections.abc import Iterator

from evalsite.catalog.io import EXPORTS
from evalsite.judging.models import JudgeVerdict, Rating


def export_verdicts() -> Iterator[dict]:
    rows = JudgeVerdict.objects.select_related(
        "job__config", "job__study", "comparison__prompt", "comparison__baseline", "call"
    )
    for v in rows.order_by("id").iterator(chunk_size=2000):
        yield {
            "job": v.job_id,
            "study": v.job.study.name,
            "judge": v.job.config.label,
            "comparison": v.comparison_id,
            "prompt": v.comparison.prompt.external_id,
            "baseline": v.comparison.baseline.name,
            "order": v.order,
            "outcome": v.outcome,
            "verdict": v.call.verdict,
            "raw_output": v.call.raw_output,
            "retry_output": v.call.retry_output,
            "error": v.call.error,
            "input_tokens": v.call.input_tokens,
            "output_tokens": v.call.output_tokens,
            "cost": str(v.call.cost),
        }


def export_ratings() -> Iterator[dict]:
    rows = Rating.objects.select_related("job__config", "job__system", "response__prompt", "call")
    for r in rows.order_by("id").iterator(chunk_size=2000):
        yield {
            "job": r.job_id,
            "judge": r.job.config.label,
            "system": r.job.system.name,
            "kind": r.job.kind,
            "prompt": r.response.prompt.external_id,
            "sample": r.sample,
            "value": r.value,
            "raw_output": r.call.raw_output,
        }


def register_exports() -> None:
    for entry in (("judge_verdicts.jsonl", export_verdicts), ("judge_ratings.jsonl", export_ratings)):
        if entry not in EXPORTS:
            EXPORTS.append(entry)

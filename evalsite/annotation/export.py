"""The annotation app's tables in `manage.py export`: every judgment, and agreement per study."""

from collections.abc import Iterator

from evalsite.annotation.models import HumanJudgment, Study
from evalsite.annotation.quality import study_agreement
from evalsite.catalog.io import EXPORTS


def export_judgments() -> Iterator[dict]:
    excluded = {s.pk: set(s.excluded.values_list("pk", flat=True)) for s in Study.objects.all()}
    rows = HumanJudgment.objects.select_related(
        "comparison__study", "comparison__prompt", "comparison__baseline", "annotator", "assignment"
    ).order_by("id")
    for j in rows.iterator(chunk_size=2000):
        c = j.comparison
        yield {
            "study": c.study.name,
            "comparison": c.pk,
            "prompt": c.prompt.external_id,
            "baseline": c.baseline.name,
            "gold": c.is_gold,
            "annotator": j.annotator.username,
            "outcome": j.outcome,
            "candidate_on_left": j.assignment.candidate_on_left,
            "picked_side": j.picked_side,
            "seconds": j.seconds,
            "reason": j.reason,
            "excluded": j.annotator_id in excluded[c.study_id],
            "created_at": j.created_at.isoformat(),
        }


def export_agreement() -> Iterator[dict]:
    for study in Study.objects.order_by("name"):
        a = study_agreement(study)
        yield {
            "study": study.name,
            "items": a["items"],
            "pairs": a["pairs"],
            "tie_discounted_accuracy": a["tie_discounted_accuracy"],
            "cohen_kappa": a["cohen_kappa"],
            "fleiss_kappa": a["fleiss_kappa"],
            "per_pair": [{"annotators": [x, y], **v} for (x, y), v in a["per_pair"].items()],
        }


def register_exports() -> None:
    for entry in (("human_judgments.jsonl", export_judgments), ("agreement.jsonl", export_agreement)):
        if entry not in EXPORTS:
            EXPORTS.append(entry)

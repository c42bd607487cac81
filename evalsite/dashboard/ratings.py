"""A rating study's figures (Figure 3 and the safety rate): the people's grades from
annotation.rating beside the judge's grades of the very same responses (a finished Fail / Pass /
Excellent rating job of the study's system on its prompt set)."""

from __future__ import annotations

from evalsite.annotation.models import Study
from evalsite.annotation.rating import people_rating_summary
from evalsite.core.figures import GradedRow, graded_row
from evalsite.judging.models import Rating, RatingJob
from evalsite.judging.results import rating_job_summary
from stats.agreement import cohen_kappa
from stats.outcomes import label_shares

PAPER_FIGURE_3 = (50, 38, 12)  # Excellent / Pass / Fail, LIMA 65B on 50 test prompts (docs/paper.md)
PAPER_SAFE_SHARE = 0.80  # 30 sensitive test prompts


def judge_job_for(study: Study) -> RatingJob | None:
    """The judge's largest finished Fail / Pass / Excellent job on the study's system and prompts."""
    jobs = RatingJob.objects.filter(
        system=study.candidate, prompt_set=study.prompt_set, kind="fpe", status__in=["done", "stopped"]
    ).select_related("config")
    return max(jobs, key=lambda job: (job.ratings.exclude(value="").count(), job.pk), default=None)


def figure_3(study: Study) -> dict:
    people = people_rating_summary(study)
    rows: list[GradedRow] = []
    if people["responses"]:
        rows.append(
            {
                "label": "people",
                "n": people["responses"],
                "excellent": people["excellent"],
                "pass": people["pass"],
                "fail": people["fail"],
                "excellent_ci": people["excellent_ci"],
                "fail_ci": people["fail_ci"],
            }
        )
    job = judge_job_for(study)
    judge = None
    if job is not None:
        responses = set(study.rating_items.values_list("response_id", flat=True))
        grades = {
            response: value
            for response, value in Rating.objects.filter(job=job, sample=0, response_id__in=responses)
            .exclude(value="")
            .values_list("response_id", "value")
        }
        shares = label_shares(({v: 1} for v in grades.values()), win="excellent", loss="fail", tie="pass")
        if shares.n:
            rows.append(graded_row(job.config.label, shares.as_dict()))
        both = [(people["majority"][r], grades[r]) for r in grades if r in people["majority"]]
        judge = {
            "job": job,
            "responses": len(both),
            "agreement": sum(a == b for a, b in both) / len(both) if both else None,
            "kappa": cohen_kappa([a for a, _ in both], [b for _, b in both]) if both else None,
        }
    safety_job = (
        RatingJob.objects.filter(
            system=study.candidate,
            prompt_set=study.prompt_set,
            kind="safety",
            status__in=["done", "stopped"],
        )
        .select_related("config")
        .order_by("-pk")
        .first()
    )
    judge_safe = {"job": safety_job, **rating_job_summary(safety_job)} if safety_job else None
    return {"rows": rows, "people": people, "judge": judge, "judge_safe": judge_safe, "paper_safe": PAPER_SAFE_SHARE}

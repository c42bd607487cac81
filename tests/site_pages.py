"""The site's pages, built from rows a test made: one list for every browser test that walks them
(scripts from names, layouts at phone and desktop widths)."""

from __future__ import annotations

from evalsite.catalog.models import Prompt, System


def staff_pages(study, job, *, dataset=None, example=None, conversation=None, run=None) -> list[str]:
    """Every staff page that shows these rows (a study with votes and a judge job over it)."""
    prompt = Prompt.objects.filter(prompt_set=study.prompt_set).order_by("pk").first()
    baseline = System.objects.filter(pk__in=study.baselines.values("pk")).order_by("pk").first()
    pages = [
        "/",
        "/dashboard/",
        f"/dashboard/{study.name}/",
        f"/dashboard/{study.name}/?job={job.pk}&rule=all",
        f"/dashboard/{study.name}/drill?baseline={baseline.name}&outcome=candidate",
        "/judge/jobs/",
        f"/judge/jobs/{job.pk}/",
        "/generation/jobs/",
        "/generation/chat/",
        "/generation/responses/",
        f"/generation/responses/set/{study.prompt_set.name}/",
        f"/generation/responses/prompt/{prompt.pk}/",
        "/annotate/studies/",
        f"/annotate/studies/{study.name}/",
        "/training/",
        "/workflows/",
        "/admin/catalog/system/",
        "/admin/judging/judgeconfig/",
    ]
    if conversation is not None:
        pages.append(f"/generation/chat/{conversation.pk}/")
    if dataset is not None:
        pages.append(f"/training/datasets/{dataset.name}/")
    if example is not None:
        pages.append(f"/training/examples/{example.pk}/")
    if run is not None:
        pages.append(f"/training/runs/{run.pk}/")
    return pages

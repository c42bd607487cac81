"""The one place a study's stop is decided: the periodic task (``dashboard.check_targets``, every
STUDY_TARGET_CHECK_SECONDS) and the commands that say they decide (``study decide``, ``study
target``) call ``decide``; pages, exports and reports only read ``evidence.study_status``.

A study with a target has a workflow (``StudyStop``, core/workflows.py) that the workers carry to
the stop: made when the target is set (``set_target``; for a study created with ``create_study
--target``, by the first check), advanced by the periodic task (not by the workflows' sweep: the
task is its sweep, at its own pace) and when the judge job the rule waits for ends; /workflows/
shows where it stands.

The rule is fixed before looking: each baseline's anytime-valid interval of the candidate's win
share (betting confidence sequences, valid at every look) within +-target, from the people's votes
alone or with the judge job fixed on the study (``Study.target_judge_job``): the job usable when
the target was set, or else the first job to finish over every comparison after it, recorded when
the check first sees it. A user looking through several judge jobs on the dashboard changes
nothing: the page's job is not the rule's."""

from __future__ import annotations

import logging
from dataclasses import asdict

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from evalsite.annotation.models import Study
from evalsite.core.models import Workflow
from evalsite.core.workflows import Step, register
from evalsite.dashboard.estimates import study_status, usable
from evalsite.dashboard.payloads import StudyStatus
from evalsite.judging.models import JudgeJob

log = logging.getLogger(__name__)


def first_usable_job(study: Study) -> JudgeJob | None:
    """The study's earliest judge job that finished over every comparison."""
    for job in study.judge_jobs.filter(status="done", comparison_ids=[]).order_by("finished_at", "pk"):
        if usable(job):
            return job
    return None


def set_target(study: Study, half_width: float | None) -> None:
    """Set (or clear) the study's target; the stop rule's judge is fixed now: the study's first
    usable judge job if it has one, else none until one finishes (``decide`` records it). The
    study's stop workflow is (re)started, its first look left to the checks: setting a target
    decides nothing."""
    job = first_usable_job(study) if half_width is not None else None
    with transaction.atomic():
        Study.objects.filter(pk=study.pk).update(
            target_half_width=half_width, enough_at=None, target_judge_job=job.pk if job else None
        )
        study.target_half_width, study.enough_at = half_width, None
        study.target_judge_job = job.pk if job else None
        if half_width is not None:
            first = Step("enough votes", "waiting", detail="the first check is to come")
            Workflow.objects.update_or_create(
                kind=STOP,
                subject_id=study.pk,
                defaults={
                    "title": StudyStop().title(study.pk),
                    "status": Workflow.Status.RUNNING,
                    "by_workers": True,
                    "params": {"target": half_width},
                    "steps": [asdict(first)],
                    "error": "",
                    "finished_at": None,
                },
            )


def record_judge(study: Study) -> JudgeJob | None:
    """Fix the first usable judge job on a study with a target and none yet (once: a conditional
    update, however many checks run at the same time)."""
    if study.target_half_width is None or study.target_judge_job is not None:
        return None
    job = first_usable_job(study)
    if job is None:
        return None
    if Study.objects.filter(pk=study.pk, target_judge_job__isnull=True).update(target_judge_job=job.pk):
        study.target_judge_job = job.pk
        log.info("study %s: its stop rule now reads judge job %s", study.name, job.pk)
        return job
    study.refresh_from_db(fields=["target_judge_job"])
    return None


def decide(study: Study) -> StudyStatus:
    """Record the rule's judge if one just became usable, read the status, and stop the study (no
    new comparison is started; the started ones are finished) the first time every baseline is
    within its target. Returns the status it decided on."""
    record_judge(study)
    status = study_status(study)
    if status["reached"] and study.enough_at is None and study.status == Study.Status.OPEN:
        if mark_enough(study, status["rows"]):
            status["enough"], status["enough_at"] = True, study.enough_at
    return status


def mark_enough(study: Study, rows: list[dict]) -> bool:
    """Record that the study has enough (one conditional update: told once however many callers
    see it at the same time), and tell staff by e-mail when STUDY_ENOUGH_EMAILS lists addresses."""
    now = timezone.now()
    if not Study.objects.filter(pk=study.pk, enough_at__isnull=True).update(enough_at=now):
        study.refresh_from_db(fields=["enough_at"])
        return False
    study.enough_at = now
    lines = [
        f"  {r['baseline']}: {r['win']:.0%} +-{r['half_width'] * 100:.1f} points over {r['n']} complete comparisons"
        for r in rows
    ]
    log.info("study %s has enough: every win share within +-%s", study.name, study.target_half_width)
    if settings.STUDY_ENOUGH_EMAILS:
        send_mail(
            f"Study {study.name} has enough votes",
            f"Every baseline's win share is known to +-{(study.target_half_width or 0) * 100:.0f} points "
            "(anytime-valid 95% intervals); the study starts no new comparison and finishes the ones "
            "already started.\n\n" + "\n".join(lines) + "\n",
            settings.DEFAULT_FROM_EMAIL,
            settings.STUDY_ENOUGH_EMAILS,
        )
    return True


STOP = "study-stop"


class StudyStop:
    """A study's way to its stop: one step, "enough votes", running while some baseline's
    anytime-valid interval is wider than the target (its detail says how far), done when every
    one is within it (or when the target is cleared, or the study closed first)."""

    name = STOP
    swept = False  # check_targets drives it every STUDY_TARGET_CHECK_SECONDS: a decision reads every vote

    def title(self, subject_id: int) -> str:
        study = Study.objects.get(pk=subject_id)
        return f"stop of study {study.name} at +-{(study.target_half_width or 0) * 100:.0f} points"

    def link(self, subject_id: int) -> str:
        return reverse("dashboard:study", args=[Study.objects.get(pk=subject_id).name])

    def advance(self, workflow: Workflow, enqueue: bool, retry: bool) -> list[Step]:
        study = Study.objects.get(pk=workflow.subject_id)
        if study.target_half_width is None:
            return [Step("enough votes", "done", detail="no target: the study runs until staff close it")]
        status = decide(study)
        if status["enough"]:
            at = f" at {study.enough_at:%Y-%m-%d %H:%M} UTC" if study.enough_at else ""
            return [Step("enough votes", "done", detail=f"every baseline within +-{_points(study)}{at}")]
        if study.status != Study.Status.OPEN:
            return [Step("enough votes", "done", detail=f"the study is {study.status} before it had enough")]
        widest = max(status["rows"], key=lambda r: r["half_width"], default=None)
        detail = "no complete comparison yet"
        if widest is not None and widest["win"] is not None:
            more = f"; about {widest['more']} more complete comparisons" if widest["more"] else ""
            detail = (
                f"{widest['baseline']}: {widest['win']:.0%} +-{widest['half_width'] * 100:.1f} points "
                f"(target +-{_points(study)}){more}"
            )
        # the judge job the rule will read once it finishes: its end advances this workflow at once
        waiting = None
        if study.target_judge_job is None:
            waiting = study.judge_jobs.filter(status__in=["queued", "running"], comparison_ids=[]).first()
        job = f"{waiting.label()}:{waiting.pk}" if waiting else ""
        return [Step("enough votes", "running", job, detail)]


def _points(study: Study) -> str:
    return f"{(study.target_half_width or 0) * 100:.0f} points"


register(StudyStop())

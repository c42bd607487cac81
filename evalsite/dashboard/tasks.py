from celery import shared_task

from evalsite.annotation.models import Study
from evalsite.dashboard.evidence import study_status


@shared_task(name="dashboard.check_targets", ignore_result=True)
def check_targets() -> int:
    """Open studies with a target: the ones that have enough stop handing out items (beat runs
    this every STUDY_TARGET_CHECK_SECONDS, so a study stops even when nobody is looking)."""
    reached = 0
    for study in Study.objects.filter(
        status=Study.Status.OPEN, target_half_width__isnull=False, enough_at__isnull=True
    ):
        reached += study_status(study)["enough"]
    return reached

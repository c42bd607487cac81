from celery import shared_task

from evalsite.annotation import precision
from evalsite.annotation.models import Study


@shared_task(name="annotation.check_targets", ignore_result=True)
def check_targets() -> int:
    """Open studies with a target: the ones that have enough stop handing out items (beat runs
    this every STUDY_TARGET_CHECK_SECONDS, so a study stops even when nobody is looking)."""
    reached = 0
    for study in Study.objects.filter(
        status=Study.Status.OPEN, target_half_width__isnull=False, enough_at__isnull=True
    ):
        reached += precision.status(study)["enough"]
    return reached

from celery import shared_task

from evalsite.annotation.models import Study
from evalsite.dashboard.stopping import decide


@shared_task(name="dashboard.check_targets", ignore_result=True)
def check_targets() -> int:
    """Open studies with a target: decide whether each has enough (evalsite/dashboard/stopping.py);
    the ones that do stop starting new comparisons. Beat runs this every STUDY_TARGET_CHECK_SECONDS,
    so a study stops even when nobody is looking, and no page has to."""
    reached = 0
    for study in Study.objects.filter(
        status=Study.Status.OPEN, target_half_width__isnull=False, enough_at__isnull=True
    ):
        reached += bool(decide(study)["enough"])
    return reached

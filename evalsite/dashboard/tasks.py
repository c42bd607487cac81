from celery import shared_task

from evalsite.annotation.models import Study
from evalsite.core import workflows
from evalsite.dashboard import ranking
from evalsite.dashboard.stopping import STOP


@shared_task(name="dashboard.check_targets", ignore_result=True)
def check_targets() -> int:
    """Open studies with a target and not enough yet: their stop workflows one step further, which
    decides whether each has enough (evalsite/dashboard/stopping.py); the ones that do stop
    starting new comparisons. Beat runs this every STUDY_TARGET_CHECK_SECONDS, so a study stops
    even when nobody is looking, and no page has to. Open ranking studies not yet settled: their
    question decided (evalsite/dashboard/ranking.py). Returns how many reached their target now."""
    reached = 0
    for pk in Study.objects.filter(
        status=Study.Status.OPEN, target_half_width__isnull=False, enough_at__isnull=True
    ).values_list("pk", flat=True):
        workflow = workflows.start(STOP, pk, retry=True)  # a target set again restarts a finished one
        reached += workflow.status == workflow.Status.DONE
    # ranking studies: stopped once their rank-sets settle the question their owner asked
    for study in Study.objects.filter(status=Study.Status.OPEN, kind=Study.Kind.RANKING, enough_at__isnull=True):
        reached += ranking.decide(study).settled
    return reached

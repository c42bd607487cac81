"""A study with known votes and a judge job with known verdicts."""


from django.utils import timezone

from evalsite.annotation.models import Comparison
from evalsite.judging.models import JudgeCall, JudgeConfig, JudgeJob
from evalsite.judging.runner import record
from tests.annotation_fixtures import make_study, vote


def seeded_study():
    """alpaca-65b: 4 prompts, two annotators each. Votes (candidate on the left, a = candidate):
    p0 a,a  p1 a,tie  p2 b,b  p3 tie,tie  -> majority: win, tie (draw), loss, tie -> 25/50/25.
    davinci-003: p0..p3 both annotators alike: a, a, a, b -> 75/0/25 (a comparison counts once it
    has all its overlap's votes).
    The judge (job 'tie' policy): alpaca: both orders candidate on p0,p1; disagree on p2; p3 fails one order."""
    study, (a, b) = make_study(n_prompts=4, baselines=("alpaca-65b", "davinci-003"), overlap=2)
    alpaca = list(Comparison.objects.filter(study=study, baseline__name="alpaca-65b").order_by("prompt_id"))
    davinci = list(Comparison.objects.filter(study=study, baseline__name="davinci-003").order_by("prompt_id"))
    for comparison, (x, y) in zip(alpaca, [("a", "a"), ("a", "tie"), ("b", "b"), ("tie", "tie")], strict=True):
        vote(a, comparison, x)
        vote(b, comparison, y)
    for comparison, x in zip(davinci, ["a", "a", "a", "b"], strict=True):
        vote(a, comparison, x)
        vote(b, comparison, x)
    config = JudgeConfig.objects.create(name="gpt-4-recorded", model="gpt-4", base_url="http://127.0.0.1:9/v1")
    job = JudgeJob.objects.create(study=study, config=config, status="done")
    plan = {0: ("first", "second"), 1: ("first", "second"), 2: ("first", "first"), 3: ("first", None)}
    # verdicts are positions: in cand_first 'first' = candidate; in base_first 'second' = candidate
    for comparison in alpaca:
        recorded_verdicts(job, comparison, plan[alpaca.index(comparison)])
    return study, job, (a, b)


def recorded_verdicts(job, comparison, verdicts):
    """The judge's two verdicts on a comparison (positions, cand_first then base_first; None: the
    call failed) recorded as the judge job records them."""
    for order, verdict in zip(("cand_first", "base_first"), verdicts, strict=True):
        call = JudgeCall.objects.create(
            key=f"k{job.pk}-{comparison.pk}-{order}",
            model=job.config.model,
            template="lima",
            template_hash="x",
            reserved_at=timezone.now(),
            status="done" if verdict else "failed",
            verdict=verdict or "",
            raw_output=f"raw {comparison.pk} {order}",
            error="" if verdict else "HTTP 500",
            input_tokens=100,
            output_tokens=5,
        )
        record(job, comparison, order, call)

from __future__ import annotations

from decimal import Decimal

from evalsite.annotation.models import Comparison, Study
from evalsite.catalog.models import PromptSet, Response, System
from evalsite.core.jobs import CannotStart
from evalsite.core.lookup import by_name
from evalsite.judging.models import JudgeCall, JudgeConfig, JudgeJob, RatingJob, outcome_of
from evalsite.judging.prompts import parse
from evalsite.judging.rating_kinds import RATING_KINDS
from evalsite.judging.runner import apply_verdict, estimate
from generation.config import LOCAL_SERVER_PORT as LOCAL_JUDGE_PORT
from generation.config import ConfigError
from generation.openai_compat import api_key_from_env, check_reachable

LOCAL_JUDGE = "local-judge"


class CannotJudge(CannotStart):
    pass


def ensure_local_judge() -> JudgeConfig:
    """The offline default: the bundled model served by `manage.py serve_openai`."""
    return JudgeConfig.objects.get_or_create(
        name=LOCAL_JUDGE,
        defaults={
            "model": "smollm2-135m-instruct",
            "base_url": f"http://127.0.0.1:{LOCAL_JUDGE_PORT}/v1",
            "api_key_env": "",
            "is_local": True,
            "concurrency": 8,  # serve_openai scores concurrent verdicts in one batched forward pass
            "max_tokens": 64,
            # one forward pass per verdict over exactly the labels' probabilities: none unreadable
            "method": "score",
        },
    )[0]


def find_config(name: str) -> JudgeConfig:
    return by_name(JudgeConfig, name, CannotJudge, "add one with manage.py judge_config add", plural="configs")


def find_study(name: str) -> Study:
    try:
        return Study.objects.get(name=name)
    except Study.DoesNotExist:
        raise CannotJudge(f"no study named {name!r}") from None


def plan(study: Study, config: JudgeConfig, comparison_ids: list[int] | None = None) -> dict:
    if study.status == Study.Status.DRAFT:
        raise CannotJudge(f"study {study.name} has not started: it has no comparisons yet")
    rows = Comparison.objects.filter(study=study, is_gold=False)
    if comparison_ids:
        rows = rows.filter(pk__in=comparison_ids)
        missing = set(comparison_ids) - set(rows.values_list("pk", flat=True))
        if missing:
            raise CannotJudge(f"comparisons not in study {study.name}: {sorted(missing)}")
    rows = rows.select_related("prompt", "candidate_response", "baseline_response")
    tokens_in, tokens_out, cost = estimate(config, rows)
    return {
        "comparisons": rows.count(),
        "calls": 2 * rows.count(),
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost": cost,
    }


def preflight(config: JudgeConfig) -> None:
    try:
        api_key_from_env(config.api_key_env or None, config.base_url)
        check_reachable(config.base_url, config.api_key_env or None)
    except ConfigError as exc:
        hint = " (start it with: manage.py serve_openai)" if config.is_local else ""
        raise CannotJudge(f"judge {config.name}: {exc}{hint}") from exc


def start_judge_job(
    study: Study,
    config: JudgeConfig,
    *,
    budget: Decimal | None = None,
    policy: str = "tie",
    one_order: str = "drop",
    jury: str = "",
    comparison_ids: list[int] | None = None,
    enqueue: bool = True,
) -> tuple[JudgeJob, bool]:
    if policy not in JudgeJob.Policy.values:
        raise CannotJudge(f"policy must be one of {', '.join(JudgeJob.Policy.values)}")
    if one_order not in JudgeJob.OneOrder.values:
        raise CannotJudge(f"one_order must be one of {', '.join(JudgeJob.OneOrder.values)}")
    estimate_ = plan(study, config, comparison_ids)
    preflight(config)
    return JudgeJob.objects.start_or_join(
        study=study,
        config=config,
        enqueue=enqueue,
        defaults={
            "policy": policy,
            "one_order": one_order,
            "jury": jury,
            "budget": budget,
            "comparison_ids": sorted(comparison_ids or []),
            "estimate_tokens": estimate_["tokens_in"] + estimate_["tokens_out"],
            "estimate_cost": estimate_["cost"],
        },
    )


def reparse(job: JudgeJob) -> int:
    """Parse the stored raw outputs again (after a parser fix): no API call. Each verdict goes
    back through the path that recorded it, so the comparisons' outcomes (what every figure,
    page, export and command reads) follow. Returns how many verdicts changed."""
    changed = 0
    verdicts = job.verdicts.select_related(
        "call", "comparison__candidate_response", "comparison__baseline_response"
    ).order_by("pk")
    for verdict in verdicts:
        call = verdict.call
        if call.status == JudgeCall.Status.DONE and call.p_first is None:  # probabilities need no parsing
            parsed = parse(call.template, call.retry_output or call.raw_output)
            if (parsed.verdict or "") != call.verdict:
                call.verdict, call.parse_error = parsed.verdict or "", parsed.reason
                call.save(update_fields=["verdict", "parse_error"])
        outcome = outcome_of(call.verdict, verdict.order) if call.status == JudgeCall.Status.DONE else ""
        if outcome != verdict.outcome:
            verdict.outcome = outcome
            verdict.save(update_fields=["outcome"])
            changed += 1
        apply_verdict(job, verdict.comparison, verdict.order, call)
    return changed


def start_rating_job(
    config: JudgeConfig, system: System, prompt_set: PromptSet, kind: str, samples: int = 1, enqueue: bool = True
) -> tuple[RatingJob, bool]:
    if kind not in RATING_KINDS:
        raise CannotJudge(f"kind must be one of {', '.join(RATING_KINDS)}")
    if not 1 <= samples <= 20:
        raise CannotJudge("samples must be from 1 to 20")
    if not Response.objects.filter(system=system, prompt__prompt_set=prompt_set, error="").exists():
        raise CannotJudge(f"{system.name} has no responses on {prompt_set.name}: generate them first")
    preflight(config)
    return RatingJob.objects.start_or_join(
        config=config, system=system, prompt_set=prompt_set, kind=kind, samples=samples, enqueue=enqueue
    )

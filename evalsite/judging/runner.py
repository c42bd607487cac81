"""Running a judge job: every comparison in both orders, through the openai client, with the
database as the cache, bounded concurrency, a budget, and resumption after a crash."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from evalsite.core.jobs import JobContext, JobStopped
from evalsite.generations.models import chunked
from evalsite.judging.models import (
    JudgeCall,
    JudgeConfig,
    JudgeJob,
    JudgeOutcome,
    JudgeVerdict,
    length_bin,
    outcome_of,
)
from evalsite.judging.templates import REMINDERS, parse, render, template_hash
from generation.openai_compat import make_client
from generation.retry import MalformedResponse, PermanentError, RetryPolicy, call_with_retries

ORDERS = (JudgeVerdict.Order.CANDIDATE_FIRST, JudgeVerdict.Order.BASELINE_FIRST)
EXPECTED_OUTPUT_TOKENS = {"lima": 12, "mtbench": 250}


def estimate_tokens(text: str) -> int:
    """About four characters a token (English); good enough for a budget estimate."""
    return math.ceil(len(text) / 4) + 8


def answers_in_order(comparison, order: str) -> tuple[str, str]:
    cand, base = comparison.candidate_response.text, comparison.baseline_response.text
    return (cand, base) if order == JudgeVerdict.Order.CANDIDATE_FIRST else (base, cand)


def estimate(config: JudgeConfig, comparisons) -> tuple[int, int, Decimal]:
    """(input tokens, output tokens, money) for judging these comparisons in both orders."""
    tokens_in = tokens_out = 0
    for comparison in comparisons:
        for order in ORDERS:
            first, second = answers_in_order(comparison, order)
            tokens_in += estimate_tokens(render(config.template, comparison.prompt.messages, first, second))
            tokens_out += min(config.max_tokens, EXPECTED_OUTPUT_TOKENS[config.template])
    return tokens_in, tokens_out, config.cost(tokens_in, tokens_out)


def call_judge(client, config: JudgeConfig, prompt_text: str, policy: RetryPolicy, template: str | None = None) -> dict:
    """One judgment, with one format reminder if the first answer cannot be parsed."""
    template = template or config.template
    started = time.monotonic()
    messages = [{"role": "user", "content": prompt_text}]
    out: dict = {"raw": "", "retry_raw": "", "verdict": "", "parse_error": "", "error": "", "in": 0, "out": 0}

    def ask(msgs: list[dict]) -> str:
        reply = call_with_retries(
            lambda: client.chat.completions.create(
                model=config.model, messages=msgs, temperature=config.temperature, max_tokens=config.max_tokens
            ),
            policy,
        )
        text = reply.choices[0].message.content if reply.choices and reply.choices[0].message else None
        if text is None:
            raise PermanentError("the reply has no choices[0].message.content")
        usage = reply.usage
        out["in"] += usage.prompt_tokens if usage else estimate_tokens(" ".join(m["content"] for m in msgs))
        out["out"] += usage.completion_tokens if usage else estimate_tokens(text)
        return text

    try:
        out["raw"] = ask(messages)
        parsed = parse(template, out["raw"])
        if parsed.verdict is None:
            reminder = [
                *messages,
                {"role": "assistant", "content": out["raw"]},
                {"role": "user", "content": REMINDERS[template]},
            ]
            out["retry_raw"] = ask(reminder)
            parsed = parse(template, out["retry_raw"])
        out["verdict"], out["parse_error"] = parsed.verdict or "", parsed.reason
    except (PermanentError, MalformedResponse) as exc:
        out["error"] = str(exc)
    out["latency"] = time.monotonic() - started
    return out


def reserve(
    key: str, config: JudgeConfig, thash: str, owner: str, template: str | None = None
) -> tuple[JudgeCall, bool]:
    """The cache row for this call, and whether we are the one to make the call. `owner` is
    "job:attempt": a pending row left by an earlier attempt of the same job (a killed worker) is
    taken over at once; another job's pending row is waited for until it is stale; a failed
    call (an API error) is tried again."""
    now = timezone.now()
    try:
        with transaction.atomic():
            call = JudgeCall.objects.create(
                key=key,
                model=config.model,
                template=template or config.template,
                template_hash=thash,
                reserved_at=now,
                reserved_by=owner,
            )
            return call, True
    except IntegrityError:
        pass
    call = JudgeCall.objects.get(key=key)
    job_prefix = owner.split(":")[0] + ":"
    stale = now - timedelta(seconds=config.timeout * (config.max_retries + 2) + 60)
    pending = JudgeCall.objects.filter(pk=call.pk, status=JudgeCall.Status.PENDING)
    retake = (
        JudgeCall.objects.filter(pk=call.pk, status=JudgeCall.Status.FAILED)
        | pending.filter(reserved_at__lt=stale)
        | pending.filter(reserved_by__startswith=job_prefix).exclude(reserved_by=owner)
    )
    if retake.update(status=JudgeCall.Status.PENDING, reserved_at=now, reserved_by=owner, error=""):
        call.refresh_from_db()
        return call, True
    return call, False


def store(call: JudgeCall, result: dict, config: JudgeConfig) -> JudgeCall:
    call.raw_output, call.retry_output = result["raw"], result["retry_raw"]
    call.verdict, call.parse_error, call.error = result["verdict"], result["parse_error"][:200], result["error"]
    call.input_tokens, call.output_tokens = result["in"], result["out"]
    call.cost = config.cost(result["in"], result["out"])
    call.latency_seconds = result["latency"]
    call.status = JudgeCall.Status.FAILED if result["error"] else JudgeCall.Status.DONE
    call.save()
    return call


def record(job: JudgeJob, comparison, order: str, call: JudgeCall) -> None:
    """One verdict (once), and its side of the comparison's JudgeOutcome row."""
    ok = call.status == JudgeCall.Status.DONE
    outcome = outcome_of(call.verdict, order) if ok else ""
    _, created = JudgeVerdict.objects.get_or_create(
        job=job, comparison_id=comparison.pk, order=order, defaults={"call": call, "outcome": outcome}
    )
    if not created:
        return
    row, _ = JudgeOutcome.objects.get_or_create(
        job=job,
        comparison_id=comparison.pk,
        defaults={
            "baseline_id": comparison.baseline_id,
            "length_bin": length_bin(comparison.candidate_response.text, comparison.baseline_response.text),
        },
    )
    prefix = "cand_first" if order == JudgeVerdict.Order.CANDIDATE_FIRST else "base_first"
    JudgeOutcome.objects.filter(pk=row.pk).update(
        **{prefix: outcome, f"{prefix}_verdict": call.verdict if ok else "error"}
    )


def ask_all(
    ctx: JobContext,
    config: JudgeConfig,
    owner: str,
    work: list,
    done: int,
    total: int,
    *,
    template: str,
    key_of: Callable[[Any], str],
    prompt_of: Callable[[Any], str],
    record: Callable[[Any, JudgeCall, str], None],
    budget: Decimal | None = None,
    spent: Decimal = Decimal(0),
    detail: Callable[[Decimal], str] | None = None,
) -> None:
    """The loop judge and rating jobs share: for each work item, reserve its cache row (see
    reserve), make the calls this job owns through a bounded pool, take answers another job already
    has or is making, and hand every answer to ``record(item, call, source)``, where source is
    "called", "cached" or "waited". With a budget, no call is started whose expected cost would
    take the spend past it (JobStopped). Reservations left unanswered are released at the end."""
    thash = template_hash(template)
    client = make_client(config.base_url, config.api_key_env or None, config.timeout)
    policy = RetryPolicy(max_retries=config.max_retries)
    deferred: list[tuple[Any, int]] = []
    reserved: set[int] = set()
    over_budget = False
    try:
        with ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="judge") as pool:
            for chunk in chunked(work, config.concurrency * 2):
                ctx.check()
                futures = {}
                in_flight = Decimal(0)
                for item in chunk:
                    call, mine = reserve(key_of(item), config, thash, owner, template)
                    if not mine:
                        if call.status == JudgeCall.Status.PENDING:
                            deferred.append((item, call.pk))  # another worker is asking it
                        else:
                            record(item, call, "cached")
                            done += 1
                        continue
                    reserved.add(call.pk)
                    prompt_text = prompt_of(item)
                    if budget is not None:
                        expected = config.cost(estimate_tokens(prompt_text), EXPECTED_OUTPUT_TOKENS[template])
                        if spent + in_flight + expected > budget:
                            JudgeCall.objects.filter(pk=call.pk, status=JudgeCall.Status.PENDING).delete()
                            over_budget = True
                            break
                        in_flight += expected
                    futures[pool.submit(call_judge, client, config, prompt_text, policy, template)] = (item, call)
                for future in as_completed(futures):
                    item, call = futures[future]
                    call = store(call, future.result(), config)
                    record(item, call, "called")
                    spent += call.cost
                    done += 1
                    ctx.progress(done, total, **({"detail": detail(spent)} if detail else {}))
                if over_budget:
                    raise JobStopped(f"stopped: budget ({spent:.4f} of {budget} spent)")
        for item, call_pk in deferred:
            record(item, wait_for_call(call_pk, config, ctx), "waited")
            done += 1
            ctx.progress(done, total)
    finally:
        # a cancel or a stop leaves no reservation behind that others would wait for
        JudgeCall.objects.filter(pk__in=reserved, status=JudgeCall.Status.PENDING).delete()
        client.close()


def run_judge_job(job: JudgeJob, ctx: JobContext) -> None:
    config = job.config
    thash = template_hash(config.template)
    comparisons = list(job.comparisons())
    finished = set(JudgeVerdict.objects.filter(job=job).values_list("comparison_id", "order"))
    work = [(c, o) for c in comparisons for o in ORDERS if (c.pk, o) not in finished]
    total = 2 * len(comparisons)
    done = total - len(work)
    ctx.progress(done, total, detail=f"{len(work)} judgments to make")
    counters = JudgeJob.objects.filter(pk=job.pk)

    def key_of(item) -> str:
        comparison, order = item
        return JudgeCall.make_key(config, thash, comparison.prompt.messages, *answers_in_order(comparison, order))

    def prompt_of(item) -> str:
        comparison, order = item
        return render(config.template, comparison.prompt.messages, *answers_in_order(comparison, order))

    def record_verdict(item, call: JudgeCall, source: str) -> None:
        comparison, order = item
        record(job, comparison, order, call)
        if source == "called":
            counters.update(
                spend=F("spend") + call.cost,
                calls_made=F("calls_made") + 1,
                tokens_in=F("tokens_in") + call.input_tokens,
                tokens_out=F("tokens_out") + call.output_tokens,
            )
        else:
            counters.update(cache_hits=F("cache_hits") + 1)

    ask_all(
        ctx,
        config,
        f"{job.pk}:{ctx.lease}",
        work,
        done,
        total,
        template=config.template,
        key_of=key_of,
        prompt_of=prompt_of,
        record=record_verdict,
        budget=job.budget,
        spent=Decimal(counters.values_list("spend", flat=True).get()),
        detail=lambda spent: f"spent {spent:.4f}",
    )


def wait_for_call(call_pk: int, config: JudgeConfig, ctx: JobContext) -> JudgeCall:
    """Another worker reserved this call: wait for its answer instead of paying for it again."""
    deadline = time.monotonic() + config.timeout * (config.max_retries + 2) + 120
    while time.monotonic() < deadline:
        call = JudgeCall.objects.get(pk=call_pk)
        if call.status != JudgeCall.Status.PENDING:
            return call
        ctx.check()
        time.sleep(0.5)
    raise RuntimeError(f"judge call {call_pk} is still pending after waiting; run the job again to take it over")


def run_rating_job(job, ctx: JobContext) -> None:
    """Each response of the system on the set, rated `samples` times (sample k is its own cached call)."""
    from evalsite.catalog.models import Response
    from evalsite.judging.models import Rating

    config, template = job.config, job.kind
    thash = template_hash(template)
    responses = list(
        Response.objects.filter(system=job.system, prompt__prompt_set=job.prompt_set, sample_index=0, error="")
        .select_related("prompt")
        .order_by("prompt_id")
    )
    finished = set(Rating.objects.filter(job=job).values_list("response_id", "sample"))
    work = [(r, k) for r in responses for k in range(job.samples) if (r.pk, k) not in finished]
    total, done = len(responses) * job.samples, len(responses) * job.samples - len(work)
    ctx.progress(done, total)
    counters = type(job).objects.filter(pk=job.pk)

    def key_of(item) -> str:
        response, k = item
        return JudgeCall.make_key(config, thash, response.prompt.messages, response.text, f"sample {k}", template)

    def prompt_of(item) -> str:
        response, _ = item
        return render(template, response.prompt.messages, response.text)

    def record_rating(item, call: JudgeCall, source: str) -> None:
        response, k = item
        Rating.objects.get_or_create(
            job=job, response=response, sample=k, defaults={"call": call, "value": call.verdict}
        )
        if source == "called":
            counters.update(spend=F("spend") + call.cost, calls_made=F("calls_made") + 1)
        elif source == "cached":
            counters.update(cache_hits=F("cache_hits") + 1)

    ask_all(
        ctx,
        config,
        f"r{job.pk}:{ctx.lease}",
        work,
        done,
        total,
        template=template,
        key_of=key_of,
        prompt_of=prompt_of,
        record=record_rating,
    )

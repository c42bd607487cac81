"""Running a judge job: every comparison in both orders, through the openai client, with the
database as the cache, bounded concurrency, a budget, and resumption after a crash."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import openai
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from openai.types.chat import ChatCompletion

from evalsite.catalog.models import Response
from evalsite.core.jobs import TRANSIENT_DB_ERRORS, JobContext, JobStopped, chunked, patiently
from evalsite.judging import prompts
from evalsite.judging.models import (
    JudgeCall,
    JudgeConfig,
    JudgeJob,
    JudgeOutcome,
    JudgeVerdict,
    Rating,
    RatingJob,
    length_bin,
    outcome_of,
)
from evalsite.judging.prompts import parse, render, template_hash
from evalsite.judging.rating_kinds import rating_kind
from generation.openai_compat import make_client
from generation.retry import MalformedResponse, PermanentError, RetryPolicy, call_with_retries, expect
from stats.judge import Probabilities, candidate_view, combine, label_probabilities

log = logging.getLogger(__name__)

ORDERS = (JudgeVerdict.Order.CANDIDATE_FIRST, JudgeVerdict.Order.BASELINE_FIRST)


def estimate_tokens(text: str) -> int:
    """About four characters a token (English); good enough for a budget estimate."""
    return math.ceil(len(text) / 4) + 8


def answers_in_order(comparison, order: str) -> tuple[str, str]:
    cand, base = comparison.candidate_response.text, comparison.baseline_response.text
    return (cand, base) if order == JudgeVerdict.Order.CANDIDATE_FIRST else (base, cand)


def worst_cost(config: JudgeConfig, prompt_text: str) -> Decimal:
    """The most one call can cost: its prompt and one format reminder, each answered at the
    configured max_tokens."""
    tokens_in = estimate_tokens(prompt_text)
    return config.cost(2 * tokens_in + 50, 2 * config.max_tokens)


def estimate(config: JudgeConfig, comparisons) -> tuple[int, int, Decimal]:
    """(input tokens, output tokens, money) for judging these comparisons in both orders."""
    tokens_in = tokens_out = 0
    for comparison in comparisons:
        for order in ORDERS:
            first, second = answers_in_order(comparison, order)
            tokens_in += estimate_tokens(render(config.prompt_template, comparison.prompt.messages, first, second))
            tokens_out += min(config.max_tokens, prompts.template(config.prompt_template).expected_output_tokens)
    return tokens_in, tokens_out, config.cost(tokens_in, tokens_out)


TOP_LOGPROBS = 20  # OpenAI's most; the three labels are always among them for a judge that follows the template


@dataclass
class JudgeReply:
    """What one judgment brought back, before it is stored on its JudgeCall row."""

    raw: str = ""  # the judge's first answer
    retry_raw: str = ""  # its answer to the format reminder, if one was sent
    verdict: str = ""  # A, B or C; empty when none could be read
    parse_error: str = ""
    error: str = ""  # the call failed (an API error after its retries, a malformed reply)
    tokens_in: int = 0
    tokens_out: int = 0
    requests: int = 0  # HTTP requests made (retries and the reminder included)
    answered: int = 0  # of those, the ones that came back (an error status counts)
    p: Probabilities | None = None  # the probability methods: P(A), P(B), P(C)
    latency: float = 0.0


def call_judge(
    client,
    config: JudgeConfig,
    prompt_text: str,
    policy: RetryPolicy,
    template: str | None = None,
) -> JudgeReply:
    """One judgment: the text method with one format reminder if the first answer cannot be
    parsed; the probability methods (logprobs, score) with one request for one token and its
    top_logprobs, read as P(A), P(B), P(C). Counts its HTTP requests (``requests``, retries and
    the reminder included) and the answers that came back (``answered``)."""
    template = template or config.prompt_template
    started = time.monotonic()
    messages = [{"role": "user", "content": prompt_text}]
    out = JudgeReply()
    probabilities = template == "letter"

    def request(msgs: list[dict]):
        out.requests += 1
        try:
            if probabilities:
                reply = client.chat.completions.create(
                    model=config.model,
                    messages=msgs,
                    temperature=0,
                    max_tokens=1,
                    logprobs=True,
                    top_logprobs=TOP_LOGPROBS,
                    # score: serve_openai gives exactly the labels' probabilities (our extension)
                    **({"extra_body": {"label_tokens": ["A", "B", "C"]}} if config.method == "score" else {}),
                )
            else:
                reply = client.chat.completions.create(
                    model=config.model, messages=msgs, temperature=config.temperature, max_tokens=config.max_tokens
                )
        except openai.APIStatusError:
            out.answered += 1  # it answered, with an error
            raise
        out.answered += 1
        expect(reply, ChatCompletion)  # a proxy's HTML page with a 200 is retried, then a failed verdict
        if not reply.choices or reply.choices[0].message is None or not reply.choices[0].message.content:
            # an empty or null reply is a transient fault (retried), as generation treats it
            raise MalformedResponse("the reply has no choices[0].message.content")
        return reply

    def ask(msgs: list[dict]):
        reply = call_with_retries(lambda: request(msgs), policy)
        text = reply.choices[0].message.content
        usage = reply.usage
        out.tokens_in += usage.prompt_tokens if usage else estimate_tokens(" ".join(m["content"] for m in msgs))
        out.tokens_out += usage.completion_tokens if usage else estimate_tokens(text)
        return reply, text

    try:
        reply, out.raw = ask(messages)
        if probabilities:
            logprobs = reply.choices[0].logprobs
            if logprobs is None or not logprobs.content:
                raise PermanentError(
                    f"the server returned no logprobs: method {config.method} needs them (or use --method text)"
                )
            top = [(t.token, t.logprob) for t in (logprobs.content[0].top_logprobs or [])]
            p = label_probabilities(top or [(logprobs.content[0].token, logprobs.content[0].logprob)])
            if p is None:
                out.parse_error = "none of A, B, C among the most probable next tokens"
            else:
                out.p = p
                out.verdict = p.hard(config.tie_margin)
        else:
            parsed = parse(template, out.raw)
            if parsed.verdict is None:
                reminder = [
                    *messages,
                    {"role": "assistant", "content": out.raw},
                    {"role": "user", "content": prompts.template(template).reminder},
                ]
                _, out.retry_raw = ask(reminder)
                parsed = parse(template, out.retry_raw)
            out.verdict, out.parse_error = parsed.verdict or "", parsed.reason
    except (PermanentError, MalformedResponse) as exc:
        out.error = str(exc)
    out.latency = time.monotonic() - started
    return out


def reserve(
    key: str, config: JudgeConfig, thash: str, owner: str, template: str | None = None
) -> tuple[JudgeCall, bool]:
    """The cache row for this call, and whether we are the one to make the call. `owner` is
    "job:lease:run": a pending row left by an earlier attempt or run of the same job (a killed
    worker, a run cut short by a database outage) is
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


def store(call: JudgeCall, result: JudgeReply, config: JudgeConfig) -> JudgeCall:
    call.raw_output, call.retry_output = result.raw, result.retry_raw
    call.verdict, call.parse_error, call.error = result.verdict, result.parse_error[:200], result.error
    call.input_tokens, call.output_tokens = result.tokens_in, result.tokens_out
    p = result.p
    call.p_first, call.p_second, call.p_tie = (p.first, p.second, p.tie) if p else (None, None, None)
    call.cost = config.cost(result.tokens_in, result.tokens_out)
    call.latency_seconds = result.latency
    call.status = JudgeCall.Status.FAILED if result.error else JudgeCall.Status.DONE
    call.save(
        update_fields=[
            "raw_output",
            "retry_output",
            "verdict",
            "parse_error",
            "error",
            "input_tokens",
            "output_tokens",
            "p_first",
            "p_second",
            "p_tie",
            "cost",
            "latency_seconds",
            "status",
        ]
    )  # not `requests`: counted as each request left
    return call


def record(job: JudgeJob, comparison, order: str, call: JudgeCall) -> None:
    """One verdict (once), and its side of the comparison's JudgeOutcome row."""
    ok = call.status == JudgeCall.Status.DONE
    outcome = outcome_of(call.verdict, order) if ok else ""
    _, created = JudgeVerdict.objects.get_or_create(
        job=job, comparison_id=comparison.pk, order=order, defaults={"call": call, "outcome": outcome}
    )
    if created:
        apply_verdict(job, comparison, order, call)


def apply_verdict(job: JudgeJob, comparison, order: str, call: JudgeCall) -> None:
    """Write one order's verdict into the comparison's JudgeOutcome row and count the comparison
    again by the job's rules: the one path that recording and reparsing both take."""
    ok = call.status == JudgeCall.Status.DONE
    prefix = "cand_first" if order == JudgeVerdict.Order.CANDIDATE_FIRST else "base_first"
    p_win = p_tie = None
    if ok and call.p_first is not None:
        p = Probabilities(call.p_first, call.p_second or 0.0, call.p_tie or 0.0)
        p_win, p_tie = candidate_view(p, order == JudgeVerdict.Order.CANDIDATE_FIRST)
    with transaction.atomic():
        row, _ = JudgeOutcome.objects.select_for_update().get_or_create(
            job=job,
            comparison_id=comparison.pk,
            defaults={
                "baseline_id": comparison.baseline_id,
                "length_bin": length_bin(comparison.candidate_response.text, comparison.baseline_response.text),
            },
        )
        setattr(row, prefix, outcome_of(call.verdict, order) if ok else "")
        setattr(row, f"{prefix}_verdict", call.verdict if ok else "error")
        setattr(row, f"{prefix}_p_win", p_win)
        setattr(row, f"{prefix}_p_tie", p_tie)
        count(row, job)
        row.save()


def count(row: JudgeOutcome, job: JudgeJob) -> None:
    """Set what the comparison counts as (outcome, dropped, p_win) from both orders."""

    def side(prefix: str) -> str | None:
        return None if getattr(row, f"{prefix}_verdict") == "-" else getattr(row, prefix)

    def probs(prefix: str) -> tuple[float, float] | None:
        win = getattr(row, f"{prefix}_p_win")
        return None if win is None else (win, getattr(row, f"{prefix}_p_tie") or 0.0)

    counted = combine(
        side("cand_first"),
        side("base_first"),
        policy=job.policy,
        one_order=job.one_order,
        probabilities=(probs("cand_first"), probs("base_first")) if job.config.reads_probabilities else None,
        margin=job.config.tie_margin,
    )
    row.outcome, row.dropped, row.p_win = counted.outcome, counted.dropped, counted.p_win


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
    unanswered: int = 0,
    detail: Callable[[Decimal], str] | None = None,
    sent: Callable[[int], object] | None = None,
    answered: Callable[[int], object] | None = None,
) -> None:
    """The loop judge and rating jobs share: for each work item, reserve its cache row (see
    reserve), make the calls this job owns through a bounded pool, take answers another job already
    has or is making, and hand every answer to ``record(item, call, source)``, where source is
    "called", "cached" or "waited". With a budget, no call is started whose most possible cost would
    take the spend past it (JobStopped), so the spend never passes the budget however long the
    answers run: each call in flight counts as its prompt and a format reminder, each answered at
    the configured max_tokens (``worst_cost``), until its real cost replaces that; the requests of
    earlier attempts that left without a recorded answer (``unanswered``, a crash) count the same.
    ``sent(n)`` is told of each call's first request before it leaves (its retries when it returns),
    ``answered(n)`` of the answers that came back. Reservations left unanswered are released at the
    end."""
    thash = template_hash(template)
    client = make_client(config.base_url, config.api_key_env or None, config.timeout)
    policy = RetryPolicy(max_retries=config.max_retries)
    deferred: list[tuple[Any, int]] = []
    reserved: set[int] = set()
    over_budget = False
    if unanswered and work:
        # paid or not, a request that left and whose answer was never recorded counts against the budget
        spent += unanswered * worst_cost(config, prompt_of(work[0]))
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
                        most = worst_cost(config, prompt_text)
                        if spent + in_flight + most > budget:
                            JudgeCall.objects.filter(pk=call.pk, status=JudgeCall.Status.PENDING).delete()
                            over_budget = True
                            break
                        in_flight += most
                    # the request is on the books before it leaves: a crash after this shows as a
                    # request without an answer, never as nothing
                    JudgeCall.objects.filter(pk=call.pk).update(requests=F("requests") + 1)
                    if sent:
                        sent(1)
                    future = pool.submit(call_judge, client, config, prompt_text, policy, template)
                    futures[future] = (item, call)
                for future in as_completed(futures):
                    item, call = futures[future]
                    result = future.result()
                    if result.requests > 1:  # retries and a format reminder
                        JudgeCall.objects.filter(pk=call.pk).update(requests=F("requests") + result.requests - 1)
                        if sent:
                            sent(result.requests - 1)
                    if answered:
                        patiently(lambda result=result: answered(result.answered))
                    # the answer is in hand: stored and recorded once the database answers, even
                    # after a restart, never asked for again
                    call = patiently(lambda call=call, result=result: store(call, result, config))
                    patiently(lambda item=item, call=call: record(item, call, "called"))
                    spent += call.cost
                    done += 1
                    ctx.progress(done, total, detail=detail(spent) if detail else None)
                if over_budget:
                    raise JobStopped(f"stopped: budget ({spent:.4f} of {budget} spent)")
        for item, call_pk in deferred:
            record(item, wait_for_call(call_pk, config, ctx), "waited")
            done += 1
            ctx.progress(done, total)
    finally:
        # a cancel or a stop leaves no reservation behind that others would wait for (with the
        # database gone, the job's next attempt takes its own pending rows over instead)
        try:
            JudgeCall.objects.filter(pk__in=reserved, status=JudgeCall.Status.PENDING).delete()
        except TRANSIENT_DB_ERRORS:
            log.warning("judge reservations not released (the database is away); the next attempt takes them over")
        client.close()


def run_judge_job(job: JudgeJob, ctx: JobContext) -> None:
    config = job.config
    template = config.prompt_template
    thash = template_hash(template)
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
        return render(template, comparison.prompt.messages, *answers_in_order(comparison, order))

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
        f"{job.pk}:{ctx.lease}:{ctx.run_id}",
        work,
        done,
        total,
        template=template,
        key_of=key_of,
        prompt_of=prompt_of,
        record=record_verdict,
        budget=job.budget,
        spent=Decimal(counters.values_list("spend", flat=True).get()),
        unanswered=max(0, job.requests_sent - job.requests_answered),
        detail=lambda spent: f"spent {spent:.4f}",
        sent=lambda n: counters.update(requests_sent=F("requests_sent") + n),
        answered=lambda n: counters.update(requests_answered=F("requests_answered") + n),
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


def run_rating_job(job: RatingJob, ctx: JobContext) -> None:
    """Each response of the system on the set, rated `samples` times (sample k is its own cached call)."""
    config, template = job.config, rating_kind(job.kind).template
    thash = template_hash(template)
    responses = list(
        Response.objects.filter(system=job.system, prompt__prompt_set=job.prompt_set, sample_index=0, error="")
        .select_related("prompt")
        .order_by("prompt_id")
    )
    kind = rating_kind(job.kind)  # asked of the prompts it is for (safety: tagged so; a JSON filter SQLite lacks)
    responses = [r for r in responses if kind.asks(r.prompt.tags)]
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
        f"r{job.pk}:{ctx.lease}:{ctx.run_id}",
        work,
        done,
        total,
        template=template,
        key_of=key_of,
        prompt_of=prompt_of,
        record=record_rating,
    )

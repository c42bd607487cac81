"""The work of a generation job: a system answers every prompt of a set that has no answer yet,
in the chunks its backend prefers, each answer stored as it comes."""

from __future__ import annotations

from evalsite.answering.models import GenerationJob
from evalsite.core.jobs import JobContext, chunked, patiently
from generation.backends import make_backend
from generation.types import GenerationRequest


def run_generation(job: GenerationJob, ctx: JobContext) -> None:
    todo, total = job.missing()
    done = total - len(todo)
    ctx.progress(done, total, detail=f"{len(todo)} to generate")
    if job.system.backend == "imported":
        missing = [{"prompt": p.external_id, "sample": s, "error": "no imported response"} for p, s in todo]
        job.record(missing, job.tokens_generated, done, total)
        return
    ctx.progress(done, total, detail=f"loading {job.system.name}")
    backend = make_backend(job.system.backend, job.system.backend_config)
    sampling = job.system.sampling_config
    by_id = {p.pk: p for p, _ in todo}
    failures: list[dict] = []
    tokens = job.tokens_generated
    try:
        for chunk in chunked(todo, backend.preferred_chunk):
            ctx.check()
            requests = [GenerationRequest(key=(p.pk, s), messages=p.messages, sample_index=s) for p, s in chunk]
            for result in backend.generate(requests, sampling):
                prompt_pk, sample = result.key
                if result.ok:  # an answer in hand is stored once the database answers, never asked again
                    done += patiently(
                        lambda prompt_pk=prompt_pk, sample=sample, result=result: job.store(prompt_pk, sample, result)
                    )
                    tokens += result.completion_tokens or 0
                else:
                    failures.append({"prompt": by_id[prompt_pk].external_id, "sample": sample, "error": result.error})
                ctx.progress(done, total, units=tokens, unit="tokens/s", detail=f"{len(failures)} failed")
            GenerationJob.objects.filter(pk=job.pk).update(tokens_generated=tokens, failures=failures)
        tokens = follow_ups(job, backend, sampling, ctx, failures, tokens)
    finally:
        backend.close()
    job.record(failures, tokens, done, total)


def follow_ups(job: GenerationJob, backend, sampling, ctx: JobContext, failures: list[dict], tokens: int) -> int:
    """The prompts' later turns (MT-bench's second question), round by round: each is asked after
    the system's own previous answer, so the conversation is the system's. Each answer is stored
    on its response as it comes; a resumed job asks only the turns still missing."""
    while True:
        ctx.check()
        waiting = [r for r in job.responses_with_follow_ups() if len(r.turns) < len(r.prompt.follow_ups)]
        if not waiting:
            return tokens
        ctx.progress(job.progress_done, detail=f"{len(waiting)} follow-up turn(s) to ask")
        failed_before = len(failures)
        for chunk in chunked(waiting, backend.preferred_chunk):
            requests = [
                GenerationRequest(
                    key=r.pk,
                    messages=[*r.conversation(), {"role": "user", "content": r.prompt.follow_ups[len(r.turns)]}],
                    sample_index=r.sample_index,
                )
                for r in chunk
            ]
            by_pk = {r.pk: r for r in chunk}
            for result in backend.generate(requests, sampling):
                response = by_pk[result.key]
                if result.ok:
                    patiently(lambda response=response, result=result: job.store_turn(response, result))
                    tokens += result.completion_tokens or 0
                else:
                    failures.append(
                        {
                            "prompt": response.prompt.external_id,
                            "sample": response.sample_index,
                            "error": f"follow-up {len(response.turns) + 1}: {result.error}",
                        }
                    )
        if len(failures) > failed_before:
            return tokens  # a turn that failed is asked again when the job is run again

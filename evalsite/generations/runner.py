"""The work of a generation job: a system answers every prompt of a set that has no answer yet,
in the chunks its backend prefers, each answer stored as it comes."""

from __future__ import annotations

from evalsite.core.jobs import JobContext, chunked
from evalsite.generations.models import GenerationJob
from inference.backends import make_backend
from inference.types import GenerationRequest


def run_generation(job: GenerationJob, ctx: JobContext) -> None:
    todo, total = job.missing()
    done = total - len(todo)
    ctx.progress(done, total, detail=f"{len(todo)} to generate")
    if job.system.backend == "imported":
        failures = [{"prompt": p.external_id, "sample": s, "error": "no imported response"} for p, s in todo]
        job.record(failures, job.tokens_generated, done, total)
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
                if result.ok:
                    done += job.store(prompt_pk, sample, result)
                    tokens += result.completion_tokens or 0
                else:
                    failures.append({"prompt": by_id[prompt_pk].external_id, "sample": sample, "error": result.error})
                ctx.progress(done, total, units=tokens, unit="tokens/s", detail=f"{len(failures)} failed")
            GenerationJob.objects.filter(pk=job.pk).update(tokens_generated=tokens, failures=failures)
    finally:
        backend.close()
    job.record(failures, tokens, done, total)

"""A progress bar on the terminal for any Job (used by the commands' --wait)."""

from __future__ import annotations

import sys

from tqdm import tqdm

from evalsite.core import jobs


def follow(job: jobs.Job, poll: float = 0.5, stream=None) -> jobs.Job:
    bar = tqdm(
        total=job.progress_total or None, desc=str(job), unit="item", file=stream or sys.stderr, dynamic_ncols=True
    )
    try:

        def update(current: jobs.Job) -> None:
            if current.progress_total and bar.total != current.progress_total:
                bar.total = current.progress_total
            bar.n = current.progress_done
            postfix = f"{current.status}"
            if current.rate:
                postfix += f", {current.rate:.1f} {current.rate_unit}"
            if current.status_detail:
                postfix += f", {current.status_detail}"
            bar.set_postfix_str(postfix, refresh=False)
            bar.refresh()

        return jobs.wait_for(job, poll=poll, on_progress=update)
    finally:
        bar.close()


def run_or_follow(job: jobs.Job, created: bool, foreground: bool, wait: bool) -> jobs.Job | None:
    """What the job commands do after starting a job: run it here (--foreground), follow it with a
    progress bar (--wait), or leave it to the workers (None)."""
    import socket

    if foreground:
        if created:
            jobs.execute(job.label(), job.pk, worker=f"foreground@{socket.gethostname()}")
        job.refresh_from_db()
        return job
    if wait:
        return follow(job)
    return None

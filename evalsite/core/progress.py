"""A progress bar on the terminal for any Job (used by the commands' --wait)."""

from __future__ import annotations

import socket
import sys
import threading

from django.db import connection
from tqdm import tqdm

from evalsite.core import jobs


def follow(job: jobs.Job, poll: float = 0.5, stream=None, until=None) -> jobs.Job:
    bar = tqdm(
        total=job.progress_total or None,
        desc=str(job),
        unit=job.progress_unit,
        file=stream or sys.stderr,
        dynamic_ncols=True,
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

        return jobs.wait_for(job, poll=poll, on_progress=update, until=until)
    finally:
        bar.close()


def execute_with_progress(job: jobs.Job, worker: str) -> jobs.Job:
    """Run the job in this process (a thread, with its own database connection) while the main
    thread draws its progress bar."""

    def work() -> None:
        try:
            jobs.execute(job.label(), job.pk, worker=worker)
        finally:
            connection.close()

    thread = threading.Thread(target=work, name=f"job-{job.pk}", daemon=True)
    thread.start()
    try:
        follow(job, poll=1.0, until=lambda: not thread.is_alive())
    finally:
        thread.join()
    job.refresh_from_db()
    return job


def run_or_follow(job: jobs.Job, created: bool, foreground: bool, wait: bool) -> jobs.Job | None:
    """What the job commands do after starting a job: run it here (--foreground), follow it with a
    progress bar (--wait), or leave it to the workers (None)."""
    if foreground:
        worker = f"foreground@{socket.gethostname()}"
        if created and sys.stderr.isatty():
            return execute_with_progress(job, worker)
        if created:
            jobs.execute(job.label(), job.pk, worker=worker)
        job.refresh_from_db()
        return job
    job.refresh_from_db()
    if job.message_unsent:
        sys.stderr.write(
            f"{job}: queued, but the broker cannot be reached; its message is sent when it is back "
            "(the sweep, or this command again), or run it here with --foreground\n"
        )
        return None
    if wait:
        return follow(job)
    return None

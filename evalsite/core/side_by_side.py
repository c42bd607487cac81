"""Independent reads of one page at once, each on a database connection of its own.

The staff pages read half a million comparisons, as many judge outcomes and a GROUP BY over them;
PostgreSQL runs one query on one core while the web process waits for it. Sent together from
threads, the queries run on several cores and the page waits for the longest, not their sum
(bench/dashboard.py: the study page at a million votes 1.16x as fast on 2 cores). Not every
page gains: the agreement panel's GROUP BY joins already run on PostgreSQL's parallel workers, and
sent together they took longer (2.28 s for 2.04). Where another connection would not read the
same rows, the calls run one after another on this one: inside a transaction (its uncommitted
rows are its own; a test's rows live in one) and on SQLite (one writer, a file the demo reads
alone). Reads only: a call that writes would lose the atomicity of its caller's block."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import connection, connections


def concurrent_reads() -> bool:
    """Whether reads may go to other connections and see what this one sees."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def side_by_side(*calls: Callable[[], Any]) -> list[Any]:
    """The calls' results, in order; the first runs on this thread, the others on threads of their
    own at the same time where ``concurrent_reads()``, else after it. An exception in any call is
    raised here once every call has ended (a thread's connection is closed when its call ends)."""
    if len(calls) < 2 or not concurrent_reads():
        return [call() for call in calls]
    # leaving the block waits for every thread, whichever call raised
    with ThreadPoolExecutor(max_workers=len(calls) - 1, thread_name_prefix="read") as pool:
        others = [pool.submit(_closing_its_connections, call) for call in calls[1:]]
        first = calls[0]()
        return [first, *(other.result() for other in others)]


def _closing_its_connections(call: Callable[[], Any]) -> Any:
    try:
        return call()
    finally:
        connections.close_all()  # this thread's own connections: a thread that ends leaks none

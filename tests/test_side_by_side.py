"""Independent reads at once on connections of their own (evalsite/core/side_by_side.py): the
dashboard's scans of comparisons, judge outcomes and the judge's GROUP BY go to PostgreSQL
together; inside a transaction they stay on its connection, which alone sees its rows."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from django.db import connection, transaction

from evalsite.catalog.models import System
from evalsite.core.side_by_side import concurrent_reads, side_by_side
from evalsite.dashboard.estimates import study_rows
from tests.conftest import wait_until
from tests.test_dashboard_evidence import half_voted_study


def _open_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def _back_to(count: int) -> None:
    """The database's connections come back to ``count`` within 10 s: a backend leaves
    pg_stat_activity a moment after its client closed it (a fresh-clone run saw it still listed)."""
    wait_until(lambda: _open_connections() == count, timeout=10, poll=0.01, message=f"{count} open connections")


@pytest.mark.django_db
def test_inside_a_transaction_every_call_runs_here_and_sees_its_uncommitted_rows():
    System.objects.create(name="only-in-this-transaction", kind="baseline", backend="imported")
    assert not concurrent_reads()
    here = threading.get_ident()

    def read():
        return threading.get_ident(), System.objects.filter(name="only-in-this-transaction").count()

    assert side_by_side(read, read, read) == [(here, 1)] * 3


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_calls_run_at_once_on_connections_that_close():
    System.objects.create(name="committed", kind="baseline", backend="imported")
    assert concurrent_reads()
    before = _open_connections()
    # both calls must stand at the barrier together: one after the other, the first would wait
    # ten seconds alone and raise
    barrier = threading.Barrier(2, timeout=10)

    def read():
        barrier.wait()
        return threading.get_ident(), System.objects.filter(name="committed").count()

    (first, seen_first), (second, seen_second) = side_by_side(read, read)
    assert first == threading.get_ident() and second != first, "the first call here, the other on a thread"
    assert seen_first == seen_second == 1, "each connection reads the committed row"
    _back_to(before)  # the thread's connection is closed when its call ends

    def fails():
        raise LookupError("the second read failed")

    with pytest.raises(LookupError, match="second read failed"):
        side_by_side(lambda: 1, fails)
    _back_to(before)


@pytest.mark.django_db(transaction=True)
def test_the_evidence_rows_read_at_once_equal_those_read_one_after_another():
    study, job = half_voted_study()
    at_once = study_rows(study, job, "majority")
    with transaction.atomic():  # one connection, one query after the other
        assert not concurrent_reads()
        in_turn = study_rows(study, job, "majority")
    assert list(at_once) == list(in_turn) and len(at_once)
    for name in at_once:
        a, b = at_once[name], in_turn[name]
        assert a.judged.sum() > 0, "the judge's outcomes matched to their comparisons"
        for field in ("people", "judge", "pk", "order", "counts", "style"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=f"{name}.{field}")

"""The evidence engine's rows as numpy columns (evalsite/core/columns.py): PostgreSQL's binary COPY
read in place, the same columns from SQLite's cursor (the embedded default `make demo` runs on),
and a clear error for a column the copy cannot lay out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evalsite.core.columns import epoch, fetch_columns
from evalsite.dashboard.estimates import study_rows
from tests.test_dashboard_evidence import half_voted_study
from tests.test_embedded import embedded_env, manage

pytestmark = pytest.mark.django_db


def test_postgresql_gives_every_value_exactly_and_null_as_nan():
    source = """FROM (VALUES (1, -2.5, TIMESTAMP WITH TIME ZONE '2026-01-01 00:00:01.25+00'),
                             (2199023255552, NULL, NULL),
                             (3, 0.1, TIMESTAMP WITH TIME ZONE '1970-01-01 00:00:00+00')) AS v(a, b, t)
                WHERE v.a > %s"""
    columns = {"a": "v.a", "b": "v.b", "t": epoch("v.t")}
    got = fetch_columns(columns, source, "v.a DESC", [0])
    assert got["a"].tolist() == [2.0**41, 3.0, 1.0], "every row, in the order asked, none dropped for its NULL"
    assert np.isnan(got["b"][0]) and got["b"][1:].tolist() == [0.1, -2.5]
    assert np.isnan(got["t"][0]) and got["t"][1:].tolist() == [0.0, 1767225601.25]
    empty = fetch_columns(columns, source, "v.a", [10**13])
    assert [v.shape for v in empty.values()] == [(0,), (0,), (0,)]


SHELL = """
import json, numpy as np
from tests.test_dashboard_evidence import half_voted_study
from evalsite.dashboard.estimates import study_rows
study, job = half_voted_study()
rows = study_rows(study, job, "majority")["alpaca-65b"]
rows = rows.take(np.argsort(rows.pk))
print(json.dumps({name: np.nan_to_num(getattr(rows, name), nan=-7).tolist()
                  for name in ("people", "judge", "length", "wanted", "style")}
                 | {"completed": (~np.isnan(rows.completed)).tolist(), "order": sorted(rows.order.tolist())}))
"""


def test_sqlite_gives_the_same_rows_as_postgresql(tmp_path):
    study, job = half_voted_study()
    rows = study_rows(study, job, "majority")["alpaca-65b"]
    rows = rows.take(np.argsort(rows.pk))  # the same comparisons made in the same sequence; each study its random order
    env = embedded_env(tmp_path)
    assert manage(env, "migrate", "-v0").returncode == 0
    done = manage(env, "shell", "--no-imports", "-c", SHELL, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lite = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ("people", "judge", "length", "wanted", "style"):
        np.testing.assert_allclose(np.nan_to_num(getattr(rows, name), nan=-7), np.array(lite[name]), err_msg=name)
    assert (~np.isnan(rows.completed)).tolist() == lite["completed"]
    assert sorted(rows.order.tolist()) == lite["order"]
    assert rows.voted.sum() == 6 and rows.judged.all()

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


def test_small_whole_numbers_travel_packed_and_come_back_exactly_with_null_and_out_of_range_as_nan():
    source = """FROM (VALUES (1, 0, 65534, 2, 10.5), (2, NULL, 7, 0, NULL), (3, 65535, -1, 3, 0.25)) AS v(k, a, b, c, x)
                WHERE v.k > %s"""
    columns = {"k": "v.k", "a": "v.a", "b": "v.b", "c": "v.c", "x": "v.x"}
    small = {"a": 16, "b": 16, "c": 2}
    got = fetch_columns(columns, source, "v.k", [0], small)
    plain = fetch_columns(columns, source, "v.k", [0])
    assert list(got) == list(columns), "the columns in the order asked, packed or not"
    assert got["k"].tolist() == [1.0, 2.0, 3.0] and got["x"][0] == 10.5 and np.isnan(got["x"][1])
    assert got["a"][0] == 0 and np.isnan(got["a"][1]) and np.isnan(got["a"][2]), "65,535 is past 16 bits' range"
    assert got["b"].tolist()[:2] == [65534.0, 7.0] and np.isnan(got["b"][2]), "a negative number: out of range"
    assert got["c"].tolist()[:2] == [2.0, 0.0] and np.isnan(got["c"][2])
    np.testing.assert_array_equal(got["b"][:2], plain["b"][:2])
    unordered = fetch_columns(columns, source, "", [0], small)  # rows as the database gives them
    assert sorted(unordered["k"].tolist()) == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="54 bits"):
        fetch_columns(columns, source, "v.k", [0], {"a": 20, "b": 20, "c": 14})


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

"""The evidence engine's rows as numpy columns (evalsite/core/columns.py): PostgreSQL's binary COPY
read in place, the same columns from SQLite's cursor (the embedded default `make demo` runs on),
and a clear error for a column the copy cannot lay out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evalsite.core.columns import as_float, epoch, fetch_columns
from evalsite.dashboard.estimates import study_rows
from tests.test_dashboard_evidence import half_voted_study
from tests.test_embedded import embedded_env, manage

pytestmark = pytest.mark.django_db


def test_postgresql_binary_copy_gives_every_value_exactly():
    sql = f"""SELECT {as_float("v.a")}, {as_float("v.b")}, {as_float(epoch("v.t"))}
              FROM (VALUES (1, -2.5, TIMESTAMP WITH TIME ZONE '2026-01-01 00:00:01.25+00'),
                           (2199023255552, 0.1, TIMESTAMP WITH TIME ZONE '1970-01-01 00:00:00+00')) AS v(a, b, t)
              WHERE v.a > %s ORDER BY v.a"""
    columns = fetch_columns(sql, [0], ["a", "b", "t"])
    assert columns["a"].tolist() == [1.0, 2.0**41]
    assert columns["b"].tolist() == [-2.5, 0.1]
    assert columns["t"].tolist() == [1767225601.25, 0.0]
    assert fetch_columns(sql, [10**13], ["a", "b", "t"])["a"].shape == (0,)


def test_a_null_column_is_refused_not_misread():
    with pytest.raises(ValueError, match="non-null float8"):
        fetch_columns(f"SELECT {as_float('NULL')}, {as_float('1')}", [], ["a", "b"])


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

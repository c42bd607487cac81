"""A query's rows as numpy columns, for the pages that read every comparison of a study (the
evidence engine reads half a million rows at a million votes).

On PostgreSQL the rows come as one value: every row's columns as 8-byte big-endian floats
(``float8send``), concatenated in the query's order by ``string_agg`` into one ``bytea``, fetched
in binary and read by numpy in place: no Python object per row or per value, one round trip (a
binary COPY sends a message per row, and psycopg spent 4.8 s of 7 waiting on 500,000 of them). A
NULL is sent as NaN ('NaN'::float8), so a row is never dropped from the concatenation. PostgreSQL
holds at most 1 GB in one value: about 6 million comparisons of 21 columns. Elsewhere (SQLite) the
cursor's rows become the same columns (NULL: NaN). Reads only."""

from __future__ import annotations

import numpy as np
from django.db import connection


def epoch(column: str) -> str:
    """A timestamp column as seconds since 1970 (NULL stays NULL)."""
    if connection.vendor == "postgresql":
        return f"EXTRACT(EPOCH FROM {column})"
    return f"(julianday({column}) - 2440587.5) * 86400.0"


def fetch_columns(columns: dict[str, str], source: str, order: str, params: list) -> dict[str, np.ndarray]:
    """One float64 array per name of ``columns`` (name: an SQL expression over ``source``, the
    query's FROM ... WHERE ...), its rows in ``order`` (an ORDER BY list); NULL is NaN."""
    values = [f"CAST({sql} AS DOUBLE PRECISION)" for sql in columns.values()]
    if connection.vendor == "postgresql":
        matrix = _one_bytea(values, source, order, params)
    else:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {', '.join(values)} {source} ORDER BY {order}", params)
            rows = cursor.fetchall()
        matrix = np.array(rows, dtype=float).reshape(len(rows), len(values))
    return {name: matrix[:, i] for i, name in enumerate(columns)}


def _one_bytea(values: list[str], source: str, order: str, params: list) -> np.ndarray:
    import psycopg

    row = " || ".join(f"float8send(COALESCE({v}, 'NaN'::float8))" for v in values)
    connection.ensure_connection()
    # Django's cursors bind on the client, which cannot ask for binary results: a plain psycopg
    # cursor on the same connection (and transaction) can
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(f"SELECT string_agg({row}, ''::bytea ORDER BY {order}) {source}", params, binary=True)
        (data,) = cursor.fetchone() or (None,)
    if data is None:  # no row
        return np.zeros((0, len(values)))
    return np.frombuffer(data, dtype=">f8").astype(float).reshape(-1, len(values))

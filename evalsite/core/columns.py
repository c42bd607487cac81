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
        return f"date_part('epoch', {column})"  # float8 already (EXTRACT gives numeric, slower to convert)
    return f"(julianday({column}) - 2440587.5) * 86400.0"


def fetch_columns(
    columns: dict[str, str], source: str, order: str, params: list, small: dict[str, int] | None = None
) -> dict[str, np.ndarray]:
    """One float64 array per name of ``columns`` (name: an SQL expression over ``source``, the
    query's FROM ... WHERE ...), its rows in ``order`` (an ORDER BY list; '': as the database
    returns them, for a caller that sorts them itself); NULL is NaN.

    ``small``: columns whose values are whole numbers from 0 to 2 ** bits - 2 (name: bits), such as
    vote counts and codes. On PostgreSQL they travel packed into one 8-byte value (53 bits at most
    in all): the database's work grows with the number of values it sends per row, and half a
    million rows cost about 0.05 s per column here. A value outside its range arrives as NaN."""
    small = {name: bits for name, bits in (small or {}).items() if connection.vendor == "postgresql"}
    if sum(small.values()) > 53:
        raise ValueError(f"small columns need {sum(small.values())} bits; one value holds 53")
    wide = [name for name in columns if name not in small]
    values = [f"CAST({columns[name]} AS DOUBLE PRECISION)" for name in wide]
    if small:
        values.append(_packed(columns, small))
    ordered = f" ORDER BY {order}" if order else ""
    if connection.vendor == "postgresql":
        matrix = _one_bytea(values, source, ordered, params)
    else:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {', '.join(values)} {source}{ordered}", params)
            rows = cursor.fetchall()
        matrix = np.array(rows, dtype=float).reshape(len(rows), len(values))
    out = {name: matrix[:, i] for i, name in enumerate(wide)}
    if small:
        out.update(_unpacked(matrix[:, -1], small))
    return {name: out[name] for name in columns}


def _packed(columns: dict[str, str], small: dict[str, int]) -> str:
    """The small columns as one whole number, each in its own bits; NULL or out of range: all ones."""
    parts, shift = [], 0
    for name, bits in small.items():
        none = 2**bits - 1
        value = f"CAST({columns[name]} AS BIGINT)"
        parts.append(f"(CASE WHEN {value} BETWEEN 0 AND {none - 1} THEN {value} ELSE {none} END) * {2**shift}")
        shift += bits
    return f"CAST({' + '.join(parts)} AS DOUBLE PRECISION)"


def _unpacked(packed: np.ndarray, small: dict[str, int]) -> dict[str, np.ndarray]:
    whole = packed.astype(np.int64)
    out, shift = {}, 0
    for name, bits in small.items():
        none = 2**bits - 1
        value = ((whole >> shift) & none).astype(float)
        value[value == none] = np.nan
        out[name] = value
        shift += bits
    return out


def _one_bytea(values: list[str], source: str, ordered: str, params: list) -> np.ndarray:
    import psycopg

    row = " || ".join(f"float8send(COALESCE({v}, 'NaN'::float8))" for v in values)
    connection.ensure_connection()
    # Django's cursors bind on the client, which cannot ask for binary results: a plain psycopg
    # cursor on the same connection (and transaction) can
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(f"SELECT string_agg({row}, ''::bytea{ordered}) {source}", params, binary=True)
        (data,) = cursor.fetchone() or (None,)
    if data is None:  # no row
        return np.zeros((0, len(values)))
    return np.frombuffer(data, dtype=">f8").astype(float).reshape(-1, len(values))

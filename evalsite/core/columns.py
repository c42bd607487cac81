"""A query's rows as numpy columns, for the pages that read every comparison of a study (the
evidence engine reads half a million rows at a million votes).

On PostgreSQL the rows come by ``COPY ... TO STDOUT (FORMAT BINARY)`` and are read by numpy in
place: the query casts every column to a non-null float8, so every row has the same layout (a
16-bit field count, then per field a 32-bit length and 8 bytes, big-endian: PostgreSQL's
documentation, "COPY", Binary Format) and no Python object is made per row or per value. Elsewhere
(SQLite) the cursor's rows are turned into the same columns. Reads only."""

from __future__ import annotations

import numpy as np
from django.db import connection

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
HEADER = len(SIGNATURE) + 4 + 4  # the signature, the flags, the header extension's length (0)


def as_float(expression: str) -> str:
    """``expression`` as a float8 column (SQL for PostgreSQL and SQLite alike)."""
    return f"CAST({expression} AS DOUBLE PRECISION)"


def epoch(column: str) -> str:
    """A timestamp column as seconds since 1970 (NULL stays NULL)."""
    if connection.vendor == "postgresql":
        return f"EXTRACT(EPOCH FROM {column})"
    return f"(julianday({column}) - 2440587.5) * 86400.0"


def fetch_columns(sql: str, params: list, names: list[str]) -> dict[str, np.ndarray]:
    """The rows of ``sql`` (each column a float8 that is never NULL: wrap with COALESCE, cast with
    ``as_float``), as one float64 array per name in ``names``, in the query's order."""
    if connection.vendor == "postgresql":
        matrix = _copy_binary(sql, params, len(names))
    else:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        matrix = np.array(rows, dtype=float).reshape(len(rows), len(names))
    return {name: matrix[:, i] for i, name in enumerate(names)}


def _copy_binary(sql: str, params: list, width: int) -> np.ndarray:
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own: its copy() binds the parameters on the client
        with raw.copy(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)", params) as copy:
            data = b"".join(bytes(block) for block in copy)
    if not data.startswith(SIGNATURE):
        raise ValueError("not PostgreSQL's binary COPY format")
    fields = [item for i in range(width) for item in ((f"n{i}", ">i4"), (f"v{i}", ">f8"))]
    layout = np.dtype([("fields", ">i2"), *fields])
    body = len(data) - HEADER - 2  # the trailer: a field count of -1
    count = body // layout.itemsize
    if body != count * layout.itemsize:
        raise ValueError("a row of the copy is not all non-null float8 columns")
    rows = np.frombuffer(data, dtype=layout, count=count, offset=HEADER)
    if count and (np.any(rows["fields"] != width) or any(np.any(rows[f"n{i}"] != 8) for i in range(width))):
        raise ValueError("a row of the copy is not all non-null float8 columns")
    return np.column_stack([rows[f"v{i}"].astype(float) for i in range(width)]) if count else np.zeros((0, width))

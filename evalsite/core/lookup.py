"""Looking rows up: by the name a user typed (with an error that lists the names that exist), or
by an aggregate query written in SQL."""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist
from django.db import connection, models


def by_name(model: type[models.Model], name: str, error: type[Exception], hint: str, plural: str | None = None):
    """`model.objects.get(name=name)`, or `error` saying what exists and how to add one."""
    rows = model._default_manager
    try:
        return rows.get(name=name)
    except ObjectDoesNotExist:
        what = str(model._meta.verbose_name)
        names = ", ".join(rows.order_by("name").values_list("name", flat=True)) or "none yet"
        raise error(f"no {what} named {name!r} ({plural or what + 's'}: {names}); {hint}") from None


def fetch_rows(sql: str, params: list) -> list[tuple]:
    """The rows of a raw SQL query (the GROUP BY aggregates the dashboard and the judge read)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()

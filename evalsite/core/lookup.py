"""Looking a row up by the name a user typed, with an error that lists the names that exist."""

from __future__ import annotations

from django.db import models


def by_name(model: type[models.Model], name: str, error: type[Exception], hint: str, plural: str | None = None):
    """`model.objects.get(name=name)`, or `error` saying what exists and how to add one."""
    try:
        return model.objects.get(name=name)
    except model.DoesNotExist:  # type: ignore[attr-defined]
        what = model._meta.verbose_name
        names = ", ".join(model.objects.order_by("name").values_list("name", flat=True)) or "none yet"
        raise error(f"no {what} named {name!r} ({plural or what + 's'}: {names}); {hint}") from None

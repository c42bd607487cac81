"""What a database cannot store in a text column: PostgreSQL refuses the NUL character in text
and jsonb, and a lone surrogate (JSON's "\\ud800") cannot be encoded as UTF-8 at all. Importers
check every text they read, so such input is refused with its file and line instead of failing
half-way inside the database."""

from __future__ import annotations

from typing import Any


def unstorable(value: Any, field: str = "") -> str | None:
    """Why a value (a text, or the texts inside a list or object) cannot be stored, or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"{field or 'a text'} contains a NUL character (\\u0000)"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{field or 'a text'} contains a lone surrogate (not valid Unicode)"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            problem = unstorable(key, field) or unstorable(item, f"{field}.{key}" if field else str(key))
            if problem:
                return problem
    elif isinstance(value, list):
        for i, item in enumerate(value):
            problem = unstorable(item, f"{field}[{i}]")
            if problem:
                return problem
    return None

"""The one reader of users' record files: JSON lines, or one JSON array of objects (AlpacaEval's and
just-eval's files are arrays), told apart by the content, not the name. Prompts, responses, gold
pairs and training examples are all read through it, so each gets the same checks and the same
``FILE:LINE: reason`` errors:

- UTF-8, a byte order mark skipped; a bad byte is reported on its line;
- every record a JSON object; blank lines skipped;
- every text in it storable (no NUL character, no lone surrogate: generation.text.unstorable),
  since PostgreSQL refuses both and a half-written import is worse than a refused one.

JSON lines are read line by line (bounded memory); an array is read whole and each element is
named by the line it starts on."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from generation.text import unstorable


class RecordError(ValueError):
    """A user's file is wrong; the message starts with FILE:LINE when a line is to blame."""


def json_records(path: Path, lines: Iterable[bytes] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each record of ``path``. ``lines``: the file's lines when the
    caller opened it (a decompressing reader, say: then JSON lines only); otherwise the file is
    opened here."""
    if lines is not None:
        yield from _line_records(path, lines)
        return
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise RecordError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        head = handle.read(4096)
        handle.seek(0)
        if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
            yield from _array_records(path, handle.read())
        else:
            yield from _line_records(path, handle)


def _checked(path: Path, lineno: int, obj: object, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise RecordError(f"{path}:{lineno}: {what} must be a JSON object")
    if problem := unstorable(obj):
        raise RecordError(f"{path}:{lineno}: {problem}")
    return obj


def _line_records(path: Path, lines: Iterable[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError(f"{path}:{lineno}: not UTF-8 text (byte {exc.start + 1})") from None
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecordError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        yield lineno, _checked(path, lineno, obj, "each line")


def _array_records(path: Path, data: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        lineno = data.count(b"\n", 0, exc.start) + 1
        raise RecordError(f"{path}:{lineno}: not UTF-8 text (byte {exc.start + 1})") from None
    decoder = json.JSONDecoder()
    whitespace = re.compile(r"[ \t\r\n]*")

    def skip(pos: int) -> int:
        return whitespace.match(text, pos).end()  # type: ignore[union-attr]

    def fail(pos: int, reason: str) -> RecordError:
        return RecordError(f"{path}:{text.count(chr(10), 0, pos) + 1}: not valid JSON ({reason})")

    pos = skip(skip(0) + 1)  # past the opening bracket
    if text.startswith("]", pos):
        pos = skip(pos + 1)
    else:
        while True:
            try:
                obj, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise RecordError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            lineno = text.count("\n", 0, pos) + 1
            yield lineno, _checked(path, lineno, obj, "each element of the array")
            pos = skip(end)
            if text.startswith(",", pos):
                pos = skip(pos + 1)
            elif text.startswith("]", pos):
                pos = skip(pos + 1)
                break
            else:
                reason = "expected ',' or ']' after an element" if pos < len(text) else "the array is not closed"
                raise fail(pos, reason)
    if pos < len(text):
        raise fail(pos, "extra data after the array")

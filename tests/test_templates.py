"""Django's ``{# ... #}`` comment ends on its own line: one that runs over several lines is not a
comment, and the page prints it (the annotator's pages showed the keyboard script's notes)."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

OPEN_COMMENT = re.compile(r"\{#(?:(?!#\}).)*$", re.M)


def test_no_template_prints_a_comment_meant_for_its_readers():
    folders = [Path(d) for t in settings.TEMPLATES for d in t["DIRS"]]
    assert folders and any(f.is_dir() for f in folders)
    unclosed = [
        f"{path}:{text[: m.start()].count(chr(10)) + 1}"
        for folder in folders
        for path in sorted(folder.rglob("*.html"))
        for text in [path.read_text()]
        for m in OPEN_COMMENT.finditer(text)
    ]
    assert unclosed == [], "a {# #} comment over several lines shows on the page: use {% comment %}"

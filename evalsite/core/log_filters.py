"""Logging filters (settings.LOGGING names them by dotted path)."""

from __future__ import annotations

import logging


class OneLineRefusals(logging.Filter):
    """A refused request (4xx: another annotator's item, a staff page, a bad form) is logged in
    one line, without the traceback Django attaches to it; server errors keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", 500) < 500:
            record.exc_info = None
            record.exc_text = None
        return True

"""Sessions read from the shared cache, with the database as the source of truth: when the cache
(Redis) cannot be reached, every operation falls back to the database, so annotators' pages keep
working while it is down (Django's cached_db raises there: every page was a 500). An error is
logged once per failing operation. A session ended while the cache was down can still be read
from the cache once it is back, until its cache entry expires (SESSION_COOKIE_AGE at most)."""

from __future__ import annotations

import logging

from django.contrib.sessions.backends import cached_db

log = logging.getLogger(__name__)


class _FailSoftCache:
    """The session cache, turned into a no-op (logged) when it raises."""

    def __init__(self, cache):
        self._cache = cache

    def get(self, key, default=None):
        try:
            return self._cache.get(key, default)
        except Exception as exc:  # noqa: BLE001  (any backend's connection error)
            log.error("session cache unreachable, reading the database (%s)", exc)
            return default

    def set(self, key, value, timeout=None):
        try:
            self._cache.set(key, value, timeout)
        except Exception as exc:  # noqa: BLE001
            log.error("session cache unreachable, not cached (%s)", exc)

    def delete(self, key):
        try:
            self._cache.delete(key)
        except Exception as exc:  # noqa: BLE001
            log.error("session cache unreachable, could not forget %s (%s)", key[-8:], exc)

    def __contains__(self, key):
        try:
            return key in self._cache
        except Exception as exc:  # noqa: BLE001
            log.error("session cache unreachable, asking the database (%s)", exc)
            return False


class SessionStore(cached_db.SessionStore):
    def __init__(self, session_key=None):
        super().__init__(session_key)
        self._cache = _FailSoftCache(self._cache)

"""One login limit for every login form (the site's and the admin's): LOGIN_MAX_FAILURES failed
attempts for one username from one client address within LOGIN_LOCKOUT_SECONDS, then that pair
is refused without its password being checked, until the time runs out.

- Counted per username and client address together: one person's typos, or attempts at a name
  that does not exist, do not lock out another annotator behind the same proxy.
- Counted atomically, before the password is checked: each attempt first takes a slot with the
  cache's atomic increment and only an attempt within the limit has its password checked, so 40
  attempts in parallel check at most LOGIN_MAX_FAILURES passwords (a check-then-count limiter lets
  them all through). A successful login frees the slots.
- The client's address is REMOTE_ADDR, or, when the request comes from one of TRUSTED_PROXIES, the
  last address in X-Forwarded-For that is not itself a trusted proxy (a client cannot choose it).
- When the cache cannot be reached, the limit fails open (logins go on, and the error is logged)
  or closed (every login is refused), as LOGIN_LIMIT_WHEN_CACHE_DOWN says.

django-axes is the usual library; it checks the lockout before authenticating and counts the
failure afterwards, so parallel attempts are all checked: the order here is the point."""

from __future__ import annotations

import hashlib
import ipaddress
import logging

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.shortcuts import render

log = logging.getLogger(__name__)


def client_address(request) -> str:
    remote = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    if not _trusted(remote):
        return remote or "?"
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
    for address in reversed(forwarded):
        if not _trusted(address):
            return address
    return remote


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(proxy, strict=False) for proxy in settings.TRUSTED_PROXIES)


def _key(request, username: str) -> str:
    who = f"{(username or '').strip().lower()}|{client_address(request)}"
    return "login-attempts:" + hashlib.sha256(who.encode()).hexdigest()[:32]


class CacheDown(Exception):
    pass


def _attempts(key: str) -> int:
    try:
        return int(cache.get(key) or 0)
    except Exception as exc:  # noqa: BLE001  (any cache backend's connection error)
        raise CacheDown(str(exc)) from exc


def _take_slot(key: str) -> int:
    """This attempt's number within the window (atomic: INCR in Redis, a lock in locmem)."""
    try:
        cache.add(key, 0, settings.LOGIN_LOCKOUT_SECONDS)
        return cache.incr(key)
    except ValueError:  # the key expired between add and incr
        cache.add(key, 1, settings.LOGIN_LOCKOUT_SECONDS)
        return 1
    except Exception as exc:  # noqa: BLE001
        raise CacheDown(str(exc)) from exc


def locked_out(request, username: str) -> bool:
    try:
        return _attempts(_key(request, username)) >= settings.LOGIN_MAX_FAILURES
    except CacheDown:
        return settings.LOGIN_LIMIT_WHEN_CACHE_DOWN == "closed"


class RateLimitedModelBackend(ModelBackend):
    """Django's ModelBackend behind the limit: every login form goes through it."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get("username", "")
        key = _key(request, username)
        try:
            attempt = _take_slot(key)
        except CacheDown as exc:
            mode = settings.LOGIN_LIMIT_WHEN_CACHE_DOWN
            log.error("login limit: the cache cannot be reached (%s); failing %s", exc, mode)
            if settings.LOGIN_LIMIT_WHEN_CACHE_DOWN == "closed":
                raise PermissionDenied("the login limit cannot be checked") from None
            return super().authenticate(request, username=username, password=password, **kwargs)
        if attempt > settings.LOGIN_MAX_FAILURES:
            log.warning("login refused: too many attempts for %r from %s", username, client_address(request))
            raise PermissionDenied("too many login attempts")  # stops authenticate(): no password check
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            try:
                cache.delete(key)
            except Exception:  # noqa: BLE001  (the slots expire on their own)
                pass
        return user


class RateLimitedLoginView(auth_views.LoginView):
    """The site's login: says "too many attempts" (429) instead of "wrong password" when locked."""

    def post(self, request, *args, **kwargs):
        if locked_out(request, request.POST.get("username", "")):
            return self.locked(request)
        return super().post(request, *args, **kwargs)

    def locked(self, request):
        context = {"minutes": settings.LOGIN_LOCKOUT_SECONDS // 60}
        return render(request, "registration/locked.html", context, status=429)

"""Login with a rate limit: after LOGIN_MAX_FAILURES failed attempts for one username or from
one address within LOGIN_LOCKOUT_SECONDS, further attempts are refused with 429."""

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.shortcuts import render


def _keys(request) -> list[str]:
    address = request.META.get("REMOTE_ADDR", "?")
    username = (request.POST.get("username") or "").strip().lower()
    return [f"login-fail:ip:{address}", f"login-fail:user:{username}"]


class RateLimitedLoginView(auth_views.LoginView):
    def post(self, request, *args, **kwargs):
        keys = _keys(request)
        if any((cache.get(k) or 0) >= settings.LOGIN_MAX_FAILURES for k in keys):
            return render(
                request, "registration/locked.html", {"minutes": settings.LOGIN_LOCKOUT_SECONDS // 60}, status=429
            )
        response = super().post(request, *args, **kwargs)
        if response.status_code == 200:  # the form came back: wrong credentials
            for key in keys:
                cache.add(key, 0, settings.LOGIN_LOCKOUT_SECONDS)
                cache.incr(key)
        return response

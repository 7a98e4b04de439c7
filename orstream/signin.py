"""Sign-in (the site's login page and the admin's): Django's own forms, throttled and audited.

Failed sign-ins are counted per account and per client address in the cache (Redis in
production); past ORSTREAM_LOGIN_FAILURES_PER_ACCOUNT failures for one account, or
ORSTREAM_LOGIN_FAILURES_PER_ADDRESS from one address, within ORSTREAM_LOGIN_WINDOW_MINUTES, every
attempt is refused without the password being checked, the right one included, until the
window ends. Every failure and refusal is audited (``auth.login``, aggregated when it floods).
Never logs or stores a password; the account name is kept only as a hash in the counters.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse

from consent.audit import audit_refusal_aggregated


def _keys(username: str, address: str) -> tuple[str, str]:
    account = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return f"signin-fail:account:{account}", f"signin-fail:address:{address}"


def _window() -> int:
    return settings.LOGIN_WINDOW_MINUTES * 60


def signin_blocked_for(*, username: str, address: str) -> int:
    """Seconds until ``username`` may try again from ``address``; 0 when they may try now."""
    account_key, address_key = _keys(username, address)
    limits = ((account_key, settings.LOGIN_FAILURES_PER_ACCOUNT), (address_key, settings.LOGIN_FAILURES_PER_ADDRESS))
    waits = []
    for key, limit in limits:
        state = cache.get(key)
        if state and state["count"] >= limit:
            waits.append(int(state["until"] - time.time()) + 1)
    return max([w for w in waits if w > 0], default=0)


def signin_failed(*, username: str, address: str, reason: str) -> None:
    """Count one failed sign-in against the account and the address, and audit it."""
    now = time.time()
    for key in _keys(username, address):
        state = cache.get(key)
        if not state or state["until"] <= now:
            state = {"count": 0, "until": now + _window()}
        state["count"] += 1
        cache.set(key, state, timeout=int(state["until"] - now) + 1)
    audit_refusal_aggregated(
        action="auth.login", reason=reason, key=address, detail={"account": username.strip()[:150], "address": address}
    )


def signin_succeeded(*, username: str, address: str) -> None:
    """A right password clears the account's count (not the address's: one client trying many
    accounts stays throttled)."""
    cache.delete(_keys(username, address)[0])


def client_address(request: HttpRequest | None) -> str:
    return str(request.META.get("REMOTE_ADDR", "")) if request is not None else ""


class ThrottledSignIn:
    """Mixed into Django's authentication forms: refuse while throttled, count and audit failures."""

    request: HttpRequest | None
    throttled = False

    def clean(self) -> dict[str, Any]:
        username = str(self.data.get("username", ""))  # type: ignore[attr-defined]
        address = client_address(self.request)
        wait = signin_blocked_for(username=username, address=address)
        if wait:
            self.throttled = True
            signin_failed(username=username, address=address, reason="throttled")
            minutes = max(1, round(wait / 60))
            raise ValidationError(
                f"Too many failed sign-ins: wait {minutes} minute{'s' if minutes != 1 else ''} and try again, "
                "or ask a coordinator to reset your password.",
                code="throttled",
            )
        try:
            cleaned: dict[str, Any] = super().clean()  # type: ignore[misc]
        except ValidationError:
            signin_failed(username=username, address=address, reason="bad credentials")
            raise
        signin_succeeded(username=username, address=address)
        return cleaned


class SignInForm(ThrottledSignIn, AuthenticationForm):
    pass


class AdminSignInForm(ThrottledSignIn, AdminAuthenticationForm):
    pass


class SignInView(auth_views.LoginView):
    authentication_form = SignInForm

    def form_invalid(self, form: Any) -> HttpResponse:
        response = super().form_invalid(form)
        if getattr(form, "throttled", False):
            response.status_code = 429
        return response

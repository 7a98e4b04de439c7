"""The refusal every page shows, the coordinator gate in front of coordinators' pages, and the 404
of a row a URL names that is not there.

Below every app (it imports none of them): consent, mentoring, recordings, training, hospital and
the live pages all refuse through ``refused``, so a person sees the same page, in the same words'
shape, wherever they are turned away.

Every refusal page is audited, but the core cannot import the audit trail (consent.audit): consent
registers its refusal audit in ``refusal_audit`` from its ``AppConfig.ready()``, as the apps
register their consent effects. The audit writes one event per refusal: none when the service that
refused has already audited it during the same request.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Protocol, TypeVar

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from orstream import roles

Row = TypeVar("Row")


class RefusalAudit(Protocol):
    """Audits one refusal page: who was refused what (``message`` and ``title`` as shown, ``status``)."""

    def __call__(self, *, request: HttpRequest, message: str, title: str, status: int) -> None: ...


class RefusalAuditHook:
    """The one place a refusal page is audited: ``refusal_audit.register(audit)`` from consent's ready()."""

    def __init__(self) -> None:
        self._audit: RefusalAudit | None = None

    def register(self, audit: RefusalAudit) -> None:
        if self._audit is not None and self._audit != audit:
            raise ValueError("a different refusal audit is already registered")
        self._audit = audit

    def __call__(self, *, request: HttpRequest, message: str, title: str, status: int) -> None:
        if self._audit is None:
            raise ImproperlyConfigured("No refusal audit is registered: the consent app must be installed.")
        self._audit(request=request, message=message, title=title, status=status)


refusal_audit = RefusalAuditHook()


def refused(request: HttpRequest, message: str, *, title: str = "You cannot open this page", status: int = 403) -> HttpResponse:
    """The site's refusal page: ``title``, then ``message`` saying what to do; audited."""
    refusal_audit(request=request, message=message, title=title, status=status)
    return render(request, "refused.html", {"title": title, "message": message}, status=status)


def found(row: Row | None, what: str) -> Row:
    """``row``, as a selector returned it; a 404 naming ``what`` when there is none."""
    if row is None:
        raise Http404(f"No such {what}.")
    return row


def coordinator_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in (else the sign-in page) and a coordinator (else a refusal saying whom to ask)."""

    @wraps(view)
    @login_required
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not roles.user_is_coordinator(request.user):
            return refused(request, "This page is for coordinators. Ask your administrator to add you to the coordinator group.")
        return view(request, *args, **kwargs)

    return wrapper

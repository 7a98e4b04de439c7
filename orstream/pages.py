"""The refusal every page shows, the coordinator gate in front of coordinators' pages, the 404
of a row a URL names that is not there, and the API's refusals that DRF raises itself.

Below every app (it imports none of them): consent, mentoring, recordings, training, hospital and
the live pages all refuse through ``refused``, so a person sees the same page, in the same words'
shape, wherever they are turned away.

Every refusal page is audited, but the core cannot import the audit trail (consent.audit): consent
registers its refusal audit in ``refusal_audit`` from its ``AppConfig.ready()``, as the apps
register their consent effects. The audit writes one event per refusal: none when the service that
refused has already audited it during the same request. The API's own refusals (sign-in missing
or failed, a permission class saying no) reach ``api_exception_handler`` and are audited through the
same hook, so an anonymous flood of them is aggregated like the pages'.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Protocol, TypeVar

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.response import Response
from rest_framework.views import exception_handler

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


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's own reply to ``exc``; a refusal (401 or 403: no or failed sign-in, a permission class
    saying no) is audited with the message the client reads. REST_FRAMEWORK's EXCEPTION_HANDLER.

    A view that refuses itself replies without raising and has audited already; a service that
    audited and then raised is not audited twice (the hook writes nothing when this request's
    refusal is audited). A 404 is not a refusal, as for the pages.
    """
    response = exception_handler(exc, context)
    request = context.get("request")
    if response is not None and request is not None and response.status_code in (401, 403):
        data = response.data
        message = str(data.get("detail", "")) if isinstance(data, dict) else ""
        refusal_audit(request=request, message=message, title="Refused by the API", status=response.status_code)
    return response


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

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import BasePermission

from orstream import signin
from orstream.api import ApiRoot

# The admin's sign-in is throttled and audited like the site's.
admin.site.login_form = signin.AdminSignInForm


class SignedInInProduction(BasePermission):
    """The API's schema and docs describe every endpoint: in production only for people signed in."""

    message = "Sign in to read the API's schema and documentation."

    def has_permission(self, request: Any, view: Any) -> bool:
        return not settings.PRODUCTION or bool(request.user and request.user.is_authenticated)


SCHEMA_PERMISSIONS = [SignedInInProduction]


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and compose: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/login/", signin.SignInView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=SCHEMA_PERMISSIONS), name="api-schema"),
    # Swagger UI from the drf-spectacular-sidecar package (works offline), its set-up script
    # served as a file of its own and its style from a stylesheet: the page keeps the site's
    # Content-Security-Policy, no exemption (orstream/csp.py).
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api-schema", permission_classes=SCHEMA_PERMISSIONS, template_name="frontend/api_docs.html"
        ),
        name="api-docs",
    ),
    path("api/", ApiRoot.as_view(), name="api-root"),
    path("api/", include("mentoring.api_urls")),
    path("api/", include("recordings.api_urls")),
    path("api/", include("training.api_urls")),
    path("recordings/", include("recordings.urls")),
    path("consent/", include("consent.urls")),
    path("hospital/", include("hospital.urls")),
    path("training/", include("training.urls")),
    path("", include("frontend.urls")),  # before mentoring: sessions/<id>/live/ is not a session action
    path("", include("mentoring.urls")),
]

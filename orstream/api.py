"""The API's root, at the project level because it lists every app's endpoints (an app never
imports an app above it; the project sits on top of them all)."""

from __future__ import annotations

import re

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mentoring import api_urls as mentoring_urls
from recordings import api_urls as recording_urls
from training import api_urls as training_urls


class ApiRoot(APIView):
    """The API's root: every endpoint with its methods, the OpenAPI schema and the browsable docs."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        endpoints = []
        for pattern in [*mentoring_urls.urlpatterns, *recording_urls.urlpatterns, *training_urls.urlpatterns]:
            view = getattr(pattern.callback, "view_class", None)
            if view is None:
                continue
            endpoints.append({
                "path": "/api/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern)),
                "methods": [m.upper() for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m)],
                "what": (view.__doc__ or "").strip().split("\n")[0],
            })
        return Response({
            "schema": request.build_absolute_uri(reverse("api-schema")),
            "docs": request.build_absolute_uri(reverse("api-docs")),
            "signed_in": request.user.is_authenticated,
            "sign_in": request.build_absolute_uri(reverse("login")),
            "endpoints": endpoints,
        })

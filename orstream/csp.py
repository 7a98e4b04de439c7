"""The site's Content-Security-Policy, on every response in every profile.

Pages run only scripts and styles served from the site itself: no inline script, no inline
style, no ``eval``. Page data (a join page's bootstrap, a player's parts) travels as JSON in
``<script type="application/json">`` elements (``json_script``), which the browser never runs,
so the policy does not concern them. The API docs (Swagger UI) comply too: their set-up script
is a file of its own (``SpectacularSwaggerSplitView``) and their inline style is replaced by a
stylesheet (``frontend/templates/frontend/api_docs.html``), and the browsable API drops its
inline highlighting style (``BrowsableAPIRenderer``): no page is exempt.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin
from rest_framework import renderers

# 'self' covers the site's own ws:// and wss:// origin in connect-src (CSP Level 3).
# data: images: Swagger UI's stylesheet draws its icons as data: SVGs, and the pages' favicon is
# the empty data: URL. Media comes from the site (recordings) or from WebRTC (no URL at all).
POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADER = "Content-Security-Policy"


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """Adds ``POLICY`` to every response that does not set its own (sync and async alike)."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if HEADER not in response.headers:
            response.headers[HEADER] = POLICY
        return response


class BrowsableAPIRenderer(renderers.BrowsableAPIRenderer):
    """DRF's browsable API without the inline ``<style>`` of its code highlighting, which the
    policy refuses (``frontend/templates/frontend/api_browsable.html``)."""

    template = "frontend/api_browsable.html"

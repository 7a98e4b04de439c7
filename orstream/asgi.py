"""ASGI entry point: HTTP through Django, WebSockets through Channels behind a bounded inbox
(orstream/wsinbox.py), a same-origin check (scheme, host and port) and the session/auth
middleware; an unknown WebSocket path is refused with a message (4404)."""

import os
from typing import Any
from urllib.parse import urlsplit

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orstream.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import WebsocketDenier  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import re_path  # noqa: E402

from mentoring.consumers import UnknownPathConsumer  # noqa: E402
from orstream.routing import websocket_urlpatterns  # noqa: E402
from orstream.wsinbox import WebSocketInbox  # noqa: E402


class SameOriginValidator:
    """A WebSocket opens only from a page of this site: its Origin must be the site's public URL,
    a trusted origin (CSRF_TRUSTED_ORIGINS), or the very host and port the request came to.
    (Channels' AllowedHostsOriginValidator compares host names only and lets any port in.)"""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers", []))
        origin = headers.get(b"origin", b"").decode("latin-1").rstrip("/").lower()
        host = headers.get(b"host", b"").decode("latin-1").lower()
        allowed = {_origin(url) for url in [settings.PUBLIC_URL, *settings.CSRF_TRUSTED_ORIGINS] if url}
        hosts = {h.lower() for h in settings.ALLOWED_HOSTS}
        if host and ("*" in hosts or host.rsplit(":", 1)[0] in hosts):
            allowed |= {f"http://{host}", f"https://{host}"}
        if origin and origin in allowed:
            return await self.application(scope, receive, send)
        denier = WebsocketDenier()
        return await denier(scope, receive, send)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    netloc = parts.hostname or ""
    if parts.port and parts.port != default:
        netloc = f"{netloc}:{parts.port}"
    return f"{parts.scheme}://{netloc}".lower()


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # The bounded inbox first, so that even a refused socket cannot queue without limit.
        "websocket": WebSocketInbox(
            SameOriginValidator(
                AuthMiddlewareStack(URLRouter([*websocket_urlpatterns, re_path(r"", UnknownPathConsumer.as_asgi())]))
            )
        ),
    }
)

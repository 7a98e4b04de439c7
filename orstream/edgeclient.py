"""The control plane's one client of the media edge: signed HTTP calls to the edge API, and the
replay guard for the edge's signed webhooks.

The Django side of orstream.edge.protocol, in the shared core below the apps: it knows no app's
models, only the settings and the protocol. Called from mentoring's and recordings' services and
tasks, the webhook view (WebhookNonces) and the pages' stats. Never called inside a database
transaction that would hold locks across the network; never logs SDP or tokens.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from typing import Any
from urllib import error, request

from django.conf import settings
from django.core.cache import cache

from orstream.edge import protocol

log = logging.getLogger(__name__)


class EdgeError(Exception):
    """The edge refused a call or could not be reached. ``status`` is the HTTP status, 0 if unreachable."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class WebhookNonces:
    """The site's replay guard for the edge's signed webhooks (``protocol.ReplayGuard``).

    Nonces live in Django's cache until their signatures expire: with a shared cache (Redis)
    every site process refuses a webhook another one already accepted.
    """

    def first_use(self, nonce: str, *, expires: float) -> bool:
        timeout = max(1, int(expires - time.time()) + 1)
        return bool(cache.add(f"orstream:edge-nonce:{nonce}", 1, timeout=timeout))


def _base_url(edge_url: str | None = None) -> str:
    return (edge_url or settings.EDGE_URL).rstrip("/")


def call(method: str, path: str, body: Any = None, *, edge_url: str | None = None, timeout: float | None = None) -> Any:
    """One signed call to the edge. Returns the decoded JSON reply (or None for an empty one)."""
    payload = b"" if body is None else json.dumps(body).encode()
    headers = protocol.sign(secret=settings.EDGE_SECRET, method=method, path=path, body=payload)
    headers["Content-Type"] = "application/json"
    req = request.Request(_base_url(edge_url) + path, data=payload or None, method=method, headers=headers)
    try:
        with request.urlopen(req, timeout=timeout or settings.EDGE_TIMEOUT) as reply:
            raw = reply.read()
    except error.HTTPError as refusal:
        try:
            message = json.loads(refusal.read() or b"{}").get("error") or refusal.reason
        except (ValueError, AttributeError):
            message = str(refusal.reason)
        raise EdgeError(str(message), status=refusal.code) from None
    except (error.URLError, TimeoutError, ConnectionError) as failure:
        log.warning("edge unreachable at %s: %s", _base_url(edge_url), failure)
        raise EdgeError("The media server cannot be reached. Try again in a moment.") from None
    return json.loads(raw) if raw else None


def health(*, edge_url: str | None = None) -> dict[str, Any]:
    return call("GET", "/health", edge_url=edge_url, timeout=2)


def session_open(session_id: str, *, edge_url: str | None = None) -> dict[str, Any]:
    """Create the session's hub on the edge, or keep the existing one: ``{"created": bool}``."""
    return call("POST", "/sessions", {"session_id": session_id}, edge_url=edge_url)


def session_close(session_id: str, *, edge_url: str | None = None) -> None:
    try:
        call("DELETE", f"/sessions/{session_id}", edge_url=edge_url)
    except EdgeError as refusal:
        if refusal.status != 404:
            raise


def source_attach(session_id: str, source: protocol.SourceAttach, *, edge_url: str | None = None) -> Any:
    return call("POST", f"/sessions/{session_id}/source", asdict(source), edge_url=edge_url)


def source_detach(session_id: str, *, edge_url: str | None = None) -> dict[str, Any]:
    """Stop the session's ingest feed: ``{"detached": bool}`` (False when none was running)."""
    return call("DELETE", f"/sessions/{session_id}/source", edge_url=edge_url)


def publisher_offer(session_id: str, offer: protocol.PublisherOffer, *, edge_url: str | None = None) -> dict[str, str]:
    return call("POST", f"/sessions/{session_id}/publisher", asdict(offer), edge_url=edge_url)


def viewer_offer(session_id: str, offer: protocol.ViewerOffer, *, edge_url: str | None = None) -> dict[str, str]:
    return call("POST", f"/sessions/{session_id}/viewers", asdict(offer), edge_url=edge_url)


def participant_remove(session_id: str, participant_id: str, *, edge_url: str | None = None) -> None:
    try:
        call("DELETE", f"/sessions/{session_id}/participants/{participant_id}", edge_url=edge_url)
    except EdgeError as refusal:
        if refusal.status != 404:
            raise


def recording_start(session_id: str, start: protocol.RecordingStart, *, edge_url: str | None = None) -> Any:
    return call("POST", f"/sessions/{session_id}/recording", asdict(start), edge_url=edge_url)


def recording_stop(session_id: str, *, edge_url: str | None = None) -> Any:
    try:
        return call("DELETE", f"/sessions/{session_id}/recording", edge_url=edge_url)
    except EdgeError as refusal:
        if refusal.status != 404:
            raise
        return None


def stats(session_id: str, *, edge_url: str | None = None) -> Any:
    return call("GET", f"/sessions/{session_id}/stats", edge_url=edge_url, timeout=3)


def clock(session_id: str, *, edge_url: str | None = None) -> Any:
    return call("GET", f"/sessions/{session_id}/clock", edge_url=edge_url, timeout=3)

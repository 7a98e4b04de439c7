"""The edge's HTTP API: the control plane's only way in.

``create_app`` builds the aiohttp application that ``python -m orstream.edge`` serves. Every
route but GET /health checks a ``protocol.verify`` signature over method, path, query and body,
and refuses one whose nonce it has seen (POST /whip/{session_id} takes a
WHIP bearer token instead, for OBS-like encoders). Handlers parse a body into a protocol
dataclass, call one ``Edge``/``SessionHub`` method and shape the reply. Every refusal is a 4xx
JSON ``{"error": ...}``; a failure in one session never reaches another.

Never decides who may do what: the control plane has, before it signed the request.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import fields
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .events import WebhookSender, WhipAudit
from .hub import Edge, HubError
from .metrics import edge_registry
from .peer import SdpError
from .protocol import (
    EDGE_STARTED,
    NonceCache,
    PublisherOffer,
    RecordingStart,
    SignatureError,
    SourceAttach,
    ViewerOffer,
    verify,
    whip_resource_id,
    whip_token_verify,
)

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")

EDGE_KEY = web.AppKey("edge", Edge)
SECRET_KEY = web.AppKey("secret", str)
WEBHOOKS_KEY = web.AppKey("webhooks", WebhookSender)
STARTED_KEY = web.AppKey("started", float)
NONCES_KEY = web.AppKey("nonces", NonceCache)
WHIP_KEY = web.AppKey("whip", WhipAudit)
METRICS_KEY = web.AppKey("metrics", CollectorRegistry)
BOOT_KEY = web.AppKey("boot_id", str)
BODY_KEY = web.RequestKey("body", bytes)
UNSIGNED_ROUTES = {("GET", "/health")}
SESSION_ID_MAX = 100


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def parse_body(body: bytes, cls: type[T], **extra: Any) -> T:
    """A protocol dataclass from a JSON object, or HubError(400) naming what is wrong."""
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        raise HubError("body is not valid JSON", 400) from None
    if not isinstance(data, dict):
        raise HubError("body must be a JSON object", 400)
    data.update(extra)
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(known)
    if unknown:
        raise HubError(f"unexpected fields: {', '.join(sorted(unknown))}", 400)
    try:
        obj = cls(**data)
    except TypeError as exc:
        raise HubError(f"missing or bad fields: {exc}", 400) from None
    for name, f in known.items():
        value = getattr(obj, name)
        expected = {"str": str, "bool": bool, "int": int, "dict[str, str]": dict}.get(str(f.type))
        if expected is not None and not isinstance(value, expected):
            raise HubError(f"{name} must be a {str(f.type)}", 400)
    return obj


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Size cap, signature check and error shaping for every route."""
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return error(413, "request body too large")
    request[BODY_KEY] = body
    signed = (request.method, request.path) not in UNSIGNED_ROUTES and not request.path.startswith("/whip/")
    if signed:
        try:
            verify(
                secret=request.app[SECRET_KEY],
                method=request.method,
                path=request.raw_path,  # the query string is signed too
                body=body,
                headers=request.headers,
                replay=request.app[NONCES_KEY],
            )
        except SignatureError as exc:
            return error(401 if "missing" in str(exc) else 403, f"signature refused: {exc}")
    try:
        return await handler(request)
    except HubError as exc:
        return error(exc.status, str(exc))
    except SdpError as exc:
        return error(400, str(exc))
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error(exc.status, exc.reason)
        raise
    except Exception:
        logger.exception("edge API %s %s failed", request.method, request.path)
        return error(500, "internal error in the edge; other sessions are unaffected")


def _session_id(request: web.Request) -> str:
    return request.match_info["session_id"]


async def health(request: web.Request) -> web.Response:
    edge = request.app[EDGE_KEY]
    return web.json_response(
        {
            "ok": True,
            "boot_id": request.app[BOOT_KEY],
            "sessions": len(edge.sessions),
            "uptime": round(time.time() - request.app[STARTED_KEY], 1),
        }
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format, collected from the edge's own counters at scrape time (metrics.py)."""
    body = generate_latest(request.app[METRICS_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def session_create(request: web.Request) -> web.Response:
    try:
        data = json.loads(request[BODY_KEY] or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        raise HubError("body is not valid JSON", 400) from None
    session_id = data.get("session_id") if isinstance(data, dict) else None
    if not isinstance(session_id, str) or not session_id or len(session_id) > SESSION_ID_MAX or "/" in session_id:
        raise HubError("session_id must be a non-empty string without '/'", 400)
    edge = request.app[EDGE_KEY]
    existed = session_id in edge.sessions
    edge.session_create(session_id)
    return web.json_response({"session_id": session_id, "created": not existed}, status=200 if existed else 201)


async def session_delete(request: web.Request) -> web.Response:
    await request.app[EDGE_KEY].session_close(_session_id(request))
    return web.json_response({"ok": True})


async def source_attach(request: web.Request) -> web.Response:
    hub = request.app[EDGE_KEY].session_get(_session_id(request))
    attach = parse_body(request[BODY_KEY], SourceAttach)
    await hub.attach_source(attach)
    return web.json_response({"ok": True, "source": hub.source.stats.to_dict() if hub.source else None})


async def source_detach(request: web.Request) -> web.Response:
    hub = request.app[EDGE_KEY].session_get(_session_id(request))
    detached = await hub.detach_source()
    return web.json_response({"ok": True, "detached": detached})


async def publisher_offer(request: web.Request) -> web.Response:
    hub = request.app[EDGE_KEY].session_get(_session_id(request))
    offer = parse_body(request[BODY_KEY], PublisherOffer)
    _check_offer_type(offer.type)
    sdp = await hub.add_publisher(offer)
    return web.json_response({"sdp": sdp, "type": "answer"})


async def viewer_offer(request: web.Request) -> web.Response:
    hub = request.app[EDGE_KEY].session_get(_session_id(request))
    offer = parse_body(request[BODY_KEY], ViewerOffer)
    _check_offer_type(offer.type)
    sdp = await hub.add_viewer(offer)
    return web.json_response({"sdp": sdp, "type": "answer"})


def _check_offer_type(kind: str) -> None:
    if kind != "offer":
        raise HubError("type must be 'offer'", 400)


async def participant_remove(request: web.Request) -> web.Response:
    hub = request.app[EDGE_KEY].session_get(_session_id(request))
    removed = await hub.remove_participant(request.match_info["participant_id"])
    if not removed:
        raise HubError("no such participant in this session", 404)
    return web.json_response({"ok": True})


async def recording_start(request: web.Request) -> web.Response:
    hub = request.app[EDGE_KEY].session_get(_session_id(request))
    start = parse_body(request[BODY_KEY], RecordingStart)
    if start.segment_seconds <= 0:
        raise HubError("segment_seconds must be positive", 400)
    await hub.start_recording(start)
    return web.json_response({"ok": True, "recording_id": start.recording_id}, status=201)


async def recording_stop(request: web.Request) -> web.Response:
    hub = request.app[EDGE_KEY].session_get(_session_id(request))
    recording_id = hub.recording_id
    if not await hub.stop_recording():
        raise HubError("no recording is running in this session", 404)
    # The segments of the whole recording, those of an edge that ran it before a restart included.
    return web.json_response({"ok": True, "recording_id": recording_id, "segments": hub.segments_closed})


async def session_stats(request: web.Request) -> web.Response:
    hub = request.app[EDGE_KEY].session_get(_session_id(request))
    return web.json_response(hub.stats())


async def session_clock(request: web.Request) -> web.Response:
    hub = request.app[EDGE_KEY].session_get(_session_id(request))
    return web.json_response(hub.clock())


def _bearer(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    return auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else ""


async def whip_publish(request: web.Request) -> web.Response:
    """WHIP (RFC 9725): an SDP offer in, an SDP answer out, authorised by a bearer token.

    The token creates, and may later replace, only its own publisher (``whip_resource_id``);
    while the OR console or another token's client publishes it gets a 409. Every outcome is
    reported to the site's audit trail.
    """
    session_id = _session_id(request)
    token = _bearer(request)

    def refuse(status: int, message: str) -> web.Response:
        request.app[WHIP_KEY].report("whip.publish", session_id, outcome="refused", reason=message, token=token)
        return error(status, message)

    if not token:
        return refuse(401, "a bearer token is required")
    try:
        whip_token_verify(secret=request.app[SECRET_KEY], token=token, session_id=session_id)
    except SignatureError as exc:
        return refuse(403, f"token refused: {exc}")
    if request.content_type != "application/sdp":
        return refuse(415, "WHIP offers are application/sdp")
    resource = whip_resource_id(token)
    try:
        hub = request.app[EDGE_KEY].session_get(session_id)
        offer_sdp = request[BODY_KEY].decode()
        answer = await hub.add_publisher(PublisherOffer(participant_id=resource, sdp=offer_sdp), exclusive=True)
    except UnicodeDecodeError:
        return refuse(400, "the offer is not text")
    except (HubError, SdpError) as exc:
        return refuse(getattr(exc, "status", 400), str(exc))
    request.app[WHIP_KEY].report(
        "whip.publish", session_id, outcome="allowed", reason="publishing", token=token, resource=resource
    )
    return web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": f"/whip/{session_id}/{resource}"},
    )


async def whip_delete(request: web.Request) -> web.Response:
    """End the WHIP publisher this token created, and nobody else; audited like the publish."""
    session_id = _session_id(request)
    token = _bearer(request)
    resource = request.match_info["participant_id"]

    def refuse(status: int, message: str) -> web.Response:
        request.app[WHIP_KEY].report(
            "whip.delete", session_id, outcome="refused", reason=message, token=token, resource=resource[:40]
        )
        return error(status, message)

    try:
        whip_token_verify(secret=request.app[SECRET_KEY], token=token, session_id=session_id)
    except SignatureError as exc:
        return refuse(401 if not token else 403, f"token refused: {exc}")
    if resource != whip_resource_id(token):
        return refuse(403, "a WHIP token can end only the WHIP session it created")
    try:
        hub = request.app[EDGE_KEY].session_get(session_id)
    except HubError as exc:
        return refuse(exc.status, str(exc))
    if hub.publisher is None or hub.publisher.participant_id != resource:
        return refuse(404, "this WHIP session has already ended")
    await hub.remove_participant(resource)
    request.app[WHIP_KEY].report("whip.delete", session_id, outcome="allowed", reason="ended", token=token, resource=resource)
    return web.Response(status=200)


def announce_start(app: web.Application) -> None:
    """Tell the control plane this edge has just started and knows no session: it re-creates the
    live sessions it had here (feeds, recordings). Called once the edge listens, so the control
    plane's calls back find it."""
    app[WEBHOOKS_KEY].emit(EDGE_STARTED, "", {"boot_id": app[BOOT_KEY]})


def create_app(
    edge: Edge, *, secret: str, webhooks: WebhookSender | None = None, max_body_bytes: int = 256 * 1024
) -> web.Application:
    """The aiohttp application; on cleanup it closes every session and the webhook sender."""
    if not secret:
        raise ValueError("the edge needs a shared secret")
    app = web.Application(middlewares=[guard], client_max_size=max_body_bytes)
    app[EDGE_KEY] = edge
    app[SECRET_KEY] = secret
    app[WEBHOOKS_KEY] = webhooks or WebhookSender(url="", secret=secret)
    app[STARTED_KEY] = time.time()
    app[NONCES_KEY] = NonceCache()
    app[WHIP_KEY] = WhipAudit(app[WEBHOOKS_KEY])
    app[METRICS_KEY] = edge_registry(edge, app[WEBHOOKS_KEY])
    # A new id at every start: the control plane tells a restarted edge (which lost every hub,
    # feed and recorder) from one that merely did not answer for a while.
    app[BOOT_KEY] = uuid.uuid4().hex
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/sessions", session_create)
    app.router.add_delete("/sessions/{session_id}", session_delete)
    app.router.add_post("/sessions/{session_id}/source", source_attach)
    app.router.add_delete("/sessions/{session_id}/source", source_detach)
    app.router.add_post("/sessions/{session_id}/publisher", publisher_offer)
    app.router.add_post("/sessions/{session_id}/viewers", viewer_offer)
    app.router.add_delete("/sessions/{session_id}/participants/{participant_id}", participant_remove)
    app.router.add_post("/sessions/{session_id}/recording", recording_start)
    app.router.add_delete("/sessions/{session_id}/recording", recording_stop)
    app.router.add_get("/sessions/{session_id}/stats", session_stats)
    app.router.add_get("/sessions/{session_id}/clock", session_clock)
    app.router.add_post("/whip/{session_id}", whip_publish)
    app.router.add_delete("/whip/{session_id}/{participant_id}", whip_delete)

    async def start_webhooks(app: web.Application) -> None:
        app[WEBHOOKS_KEY].start()
        # Segments an earlier process of this edge left open (kill -9, power cut) are recovered
        # and reported before any session records again.
        app[EDGE_KEY].recovery_start()

    async def shutdown(app: web.Application) -> None:
        await app[EDGE_KEY].close()
        await app[WEBHOOKS_KEY].close()

    app.on_startup.append(start_webhooks)
    app.on_cleanup.append(shutdown)
    return app

"""Messages and request signing shared by the control plane and the edge.

Both sides import this module: the control plane's edge client signs requests and checks
webhooks with it, the edge checks requests and signs webhooks. It is pure Python (no Django,
no aiortc) so that importing it costs nothing on either side.

Signature scheme (requests to the edge API and webhooks from it)::

    X-Orstream-Timestamp: <unix seconds>
    X-Orstream-Nonce: <32 random hex digits, new for every request>
    X-Orstream-Signature: hex(HMAC-SHA256(secret,
        "<METHOD>\\n<path>\\n<query>\\n<timestamp>\\n<nonce>\\n" + sha256_hex(body)))

``path`` and ``query`` are the request target as sent, split at the first "?" (query empty
when there is none). A request is accepted when the signature matches, the timestamp is within
``SIGNATURE_MAX_AGE`` seconds of the receiver's clock (both directions) and, where the receiver
keeps a ``NonceCache`` (the edge does; the site keeps its own in Django's cache), its nonce has
not been seen before: a captured request cannot be played again within its window.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

SIGNATURE_MAX_AGE = 60
TIMESTAMP_HEADER = "X-Orstream-Timestamp"
SIGNATURE_HEADER = "X-Orstream-Signature"
NONCE_HEADER = "X-Orstream-Nonce"
NONCE_PATTERN = re.compile(r"[0-9a-f]{32}")

# Roles as the edge knows them. The control plane decides the role; the edge only enforces
# what the role allows on the media path.
PUBLISHER = "publisher"
# The event an edge sends once it listens, with session_id "" and data {"boot_id": ...}.
EDGE_STARTED = "edge.started"
# Whose voice the edge forwards. The coordinator's live view monitors (it has no microphone),
# so a coordinator's offer is answered receive-only, whatever it asks for.
TALK_ROLES = frozenset({"surgeon", "mentor", "specialist"})


class SignatureError(Exception):
    """A request or webhook whose signature is missing, wrong or expired."""


def _message(method: str, target: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    path, _, query = target.partition("?")
    digest = hashlib.sha256(body).hexdigest()
    return f"{method.upper()}\n{path}\n{query}\n{timestamp}\n{nonce}\n{digest}".encode()


class ReplayGuard(Protocol):
    """Remembers the nonces of accepted signatures (``NonceCache`` here, Django's cache on the site)."""

    def first_use(self, nonce: str, *, expires: float) -> bool:
        """True the first time ``nonce`` is seen before ``expires`` (unix seconds), False after."""
        ...


class NonceCache:
    """The nonces of signatures accepted in the last ``SIGNATURE_MAX_AGE`` seconds, bounded.

    A nonce is kept until its timestamp is too old to verify anyway. The cache only holds
    nonces of requests whose signature matched, so only a holder of the secret can fill it;
    when it is full of live nonces it refuses new ones rather than forget one (which would let
    that request be replayed).
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._expires: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expires)

    def first_use(self, nonce: str, *, expires: float, now: float | None = None) -> bool:
        current = time.time() if now is None else now
        # Mostly in expiry order (timestamps of one sender grow); a full cache gets a full sweep.
        while self._expires and next(iter(self._expires.values())) < current:
            self._expires.popitem(last=False)
        if len(self._expires) >= self.capacity:
            for key in [k for k, e in self._expires.items() if e < current]:
                del self._expires[key]
        if nonce in self._expires:
            return False
        if len(self._expires) >= self.capacity:
            raise SignatureError("too many signed requests in the last minute; try again shortly")
        self._expires[nonce] = expires
        return True


def sign(
    *, secret: str, method: str, path: str, body: bytes, now: float | None = None, nonce: str | None = None
) -> dict[str, str]:
    """Headers that authenticate one request (or webhook) of ``method`` to ``path``.

    ``path`` is the request target as it will be sent: the path and ``?query`` if there is one.
    Every call draws a new nonce: sign each request, and each retry, anew.
    """
    timestamp = str(int(time.time() if now is None else now))
    nonce = nonce or secrets.token_hex(16)
    mac = hmac.new(secret.encode(), _message(method, path, timestamp, nonce, body), hashlib.sha256)
    return {TIMESTAMP_HEADER: timestamp, NONCE_HEADER: nonce, SIGNATURE_HEADER: mac.hexdigest()}


def verify(
    *,
    secret: str,
    method: str,
    path: str,
    body: bytes,
    headers: Any,
    now: float | None = None,
    replay: ReplayGuard | None = None,
) -> None:
    """Raise SignatureError unless ``headers`` carry a fresh, matching signature not seen before.

    ``path`` is the request target as received, query string included (aiohttp's
    ``request.raw_path``, Django's ``request.get_full_path()``). Without ``replay`` a replay
    within the window is not detected.
    """
    timestamp = headers.get(TIMESTAMP_HEADER)
    signature = headers.get(SIGNATURE_HEADER)
    nonce = headers.get(NONCE_HEADER)
    if not timestamp or not signature or not nonce:
        raise SignatureError("missing signature headers")
    try:
        ts = int(timestamp)
    except ValueError:
        raise SignatureError("malformed timestamp") from None
    if not NONCE_PATTERN.fullmatch(nonce):
        raise SignatureError("malformed nonce")
    current = time.time() if now is None else now
    if abs(current - ts) > SIGNATURE_MAX_AGE:
        raise SignatureError("signature expired")
    expected = hmac.new(secret.encode(), _message(method, path, timestamp, nonce, body), hashlib.sha256)
    # bytes: compare_digest refuses a str with non-ASCII characters (a TypeError, not a refusal)
    if not hmac.compare_digest(expected.hexdigest().encode(), signature.encode("utf-8", "surrogateescape")):
        raise SignatureError("bad signature")
    if replay is not None and not replay.first_use(nonce, expires=ts + SIGNATURE_MAX_AGE):
        raise SignatureError("replayed request")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def whip_token_mint(*, secret: str, session_id: str, ttl: int, now: float | None = None) -> str:
    """A bearer token that lets a WHIP client (e.g. OBS) publish to one session until it expires.

    The token acts only on the WHIP publisher it creates itself (``whip_resource_id``): it
    cannot replace or remove the OR console or anyone else. Each mint is unique.
    """
    expires = int((time.time() if now is None else now) + ttl)
    claims = {"s": session_id, "e": expires, "n": secrets.token_hex(8)}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), b"whip:" + payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def whip_token_id(token: str) -> str:
    """A short fingerprint that names a WHIP token in audit events and URLs without revealing it."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def whip_resource_id(token: str) -> str:
    """The participant id of the one WHIP publisher ``token`` may create, replace and end."""
    return f"whip-{whip_token_id(token)}"


def whip_token_verify(*, secret: str, token: str, session_id: str, now: float | None = None) -> None:
    """Raise SignatureError unless ``token`` was minted for ``session_id`` and is unexpired."""
    try:
        payload, mac = token.split(".", 1)
        claims = json.loads(_unb64(payload))
        given = _unb64(mac)
    except (ValueError, json.JSONDecodeError):
        raise SignatureError("malformed token") from None
    expected = hmac.new(secret.encode(), b"whip:" + payload.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        raise SignatureError("bad token")
    if not isinstance(claims, dict) or not isinstance(claims.get("e"), int):
        raise SignatureError("malformed token")
    if claims.get("s") != session_id:
        raise SignatureError("token is for another session")
    if (time.time() if now is None else now) > claims["e"]:
        raise SignatureError("token expired")


@dataclass(frozen=True)
class SessionDescription:
    sdp: str
    type: str  # "offer" or "answer"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class ViewerOffer:
    """POST /sessions/{session_id}/viewers: a viewer's offer; the answer comes back."""

    participant_id: str
    role: str
    sdp: str
    type: str = "offer"

    @property
    def can_talk(self) -> bool:
        return self.role in TALK_ROLES


@dataclass(frozen=True)
class PublisherOffer:
    """POST /sessions/{session_id}/publisher: the OR console's offer."""

    participant_id: str
    sdp: str
    type: str = "offer"


# Feeds the edge reads from the network; anything else must be an absolute path (a file, or a
# V4L2 device under /dev/).
FEED_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "srt://", "udp://", "rtp://", "tcp://", "http://", "https://")
FEED_URL_MAX = 500


def feed_url_problem(url: str) -> str | None:
    """Why ``url`` cannot name a feed the edge ingests, in words for the person who typed it;
    None when it can. The same rule on both sides: the room's form and the edge's API."""
    if not url or url != url.strip():
        return "a feed URL must not be empty or start or end with spaces"
    if len(url) > FEED_URL_MAX:
        return f"a feed URL has at most {FEED_URL_MAX} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        return "a feed URL must not contain control characters"
    if "://" in url:
        if not url.lower().startswith(FEED_SCHEMES):
            schemes = ", ".join(s.removesuffix("://") for s in FEED_SCHEMES)
            return f"a feed URL starts with one of {schemes} (or is an absolute file path)"
        if not url.split("://", 1)[1].split("/", 1)[0]:
            return "a network feed URL names its host, as in rtsp://encoder.or1/stream2"
        return None
    if not url.startswith("/"):
        return "a feed is a network URL (rtsp://, srt://, udp://...) or an absolute file path"
    return None


@dataclass(frozen=True)
class SourceAttach:
    """POST /sessions/{session_id}/source: an ingest URL PyAV can open (file, rtsp://, srt://, udp://, v4l2).

    ``lower_url``: the same encoder's second, lower stream (e.g. 1280x720), ingested as the
    session's lower layer instead of transcoding ``url``; empty when the encoder has none.
    """

    url: str
    loop: bool = False
    options: dict[str, str] = field(default_factory=dict)
    lower_url: str = ""


@dataclass(frozen=True)
class RecordingStart:
    """POST /sessions/{session_id}/recording: start a stream-copy recording."""

    recording_id: str
    segment_seconds: int = 600


@dataclass(frozen=True)
class EdgeEvent:
    """A webhook from the edge to the control plane.

    type is one of: publisher.up, publisher.down, viewer.joined, viewer.left,
    recording.started, recording.stopped, segment.closed, and whip.publish / whip.delete (a
    WHIP client's act, allowed or refused, for the audit trail: data has outcome, reason,
    token, the token's ``whip_token_id``, and resource, the WHIP publisher's participant id);
    and edge.started (session_id "", data {"boot_id"}), sent once by an edge that has just
    started, knowing no session. ``id`` is unique per event and kept across delivery retries,
    so the control plane drops a repeat it has already handled.
    """

    type: str
    session_id: str
    at: float
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

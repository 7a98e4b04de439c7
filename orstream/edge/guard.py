"""Malformed input from the network: dropped, counted, and logged at most once a minute per kind.

The edge's UDP ports are public, and anyone can send them anything. ``EdgePeerConnection``
(peer.py) puts these guards in front of aioice's STUN protocol (every datagram of the peer's
sockets) and aiortc's DTLS transport (every decrypted RTP and RTCP packet). A datagram or packet
that makes a parser or handler raise is dropped and counted in ``InputDrops`` (which the edge's
``/metrics`` reports); the first of each kind in a minute writes one log line naming the
exception and where it was raised, then the others are only counted, so a flood costs no more
than one line a minute. A datagram that is not STUN and does not come from an address the peer's
ICE knows (a remote candidate or a peer-reflexive one) is dropped before it reaches DTLS or SRTP.

Never raises into aioice or aiortc, never logs a packet's bytes.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# One log line per kind of dropped input at most this often.
LOG_INTERVAL = 60.0

DROP_KINDS = ("stun", "datagram", "rtp", "rtcp")


@dataclass
class _LogState:
    last: float = -LOG_INTERVAL
    since: int = 0


@dataclass
class InputDrops:
    """Counts of dropped malformed input by kind, and the edge's one rate-limited log for them."""

    interval: float = LOG_INTERVAL
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_KINDS, 0))
    log_lines: int = 0
    _log: dict[str, _LogState] = field(default_factory=dict)

    def drop(self, kind: str, reason: str, source: Any = None) -> None:
        """Count one dropped input of ``kind``; log it only if this kind was quiet for ``interval``."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        state = self._log.get(kind)
        if state is None:
            state = self._log[kind] = _LogState(last=-self.interval)
        now = time.monotonic()
        if now - state.last < self.interval:
            state.since += 1
            return
        earlier = f"; {state.since} more dropped since the last report" if state.since else ""
        where = f" from {source[0]}:{source[1]}" if isinstance(source, tuple) and len(source) >= 2 else ""
        logger.warning(
            "dropped malformed %s%s (%s)%s; further drops are counted in /metrics, logged at most every %d s",
            kind, where, reason, earlier, int(self.interval),
        )
        self.log_lines += 1
        state.last, state.since = now, 0


def describe(exc: BaseException) -> str:
    """``struct.error at stun.py:277``: what raised and where, in a few words without the data."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__module__}.{type(exc).__qualname__}{where}".removeprefix("builtins.")


def _known_addresses(connection: Any) -> set[tuple[Any, ...]]:
    addresses = {tuple(pair.remote_addr[:2]) for pair in getattr(connection, "_check_list", ())}
    for candidate in getattr(connection, "_remote_candidates", ()):
        addresses.add((candidate.host, candidate.port))
    return addresses


def guard_stun_protocol(protocol: Any, connection: Any, drops: InputDrops) -> None:
    """Wrap one aioice ``StunProtocol``'s ``datagram_received`` (asyncio calls it per datagram)."""
    if getattr(protocol, "_orstream_guarded", False):
        return
    inner = protocol.datagram_received
    known: set[tuple[Any, ...]] = set()
    seen_pairs = -1

    def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
        nonlocal known, seen_pairs
        if not data:
            drops.drop("datagram", "empty datagram", addr)
            return
        # RFC 7983: a first byte of 0-3 is STUN; anything else is DTLS, SRTP or junk for DTLS.
        if data[0] > 3:
            source = (addr[0], addr[1])
            if source not in known:
                pairs = len(getattr(connection, "_check_list", ()))
                if pairs != seen_pairs:
                    known, seen_pairs = _known_addresses(connection), pairs
                if source not in known:
                    drops.drop("datagram", "not from a known ICE candidate", addr)
                    return
        try:
            inner(data, addr)
        except Exception as exc:  # a parser's or a handler's bug must not become a traceback per packet
            drops.drop("stun", describe(exc), addr)

    protocol.datagram_received = datagram_received
    protocol._orstream_guarded = True


def guard_dtls_transport(dtls: Any, drops: InputDrops) -> None:
    """Wrap an aiortc ``RTCDtlsTransport``'s RTP and RTCP handlers, which run after SRTP.

    Unwrapped, an exception there ends the transport's receive loop and with it the peer.
    """
    if getattr(dtls, "_orstream_guarded", False):
        return

    def wrap(kind: str, inner: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        async def handle(data: bytes, *args: Any, **kwargs: Any) -> None:
            try:
                await inner(data, *args, **kwargs)
            except Exception as exc:
                drops.drop(kind, describe(exc))

        return handle

    dtls._handle_rtp_data = wrap("rtp", dtls._handle_rtp_data)
    dtls._handle_rtcp_data = wrap("rtcp", dtls._handle_rtcp_data)
    dtls._orstream_guarded = True

"""Signed webhooks from the edge to the control plane.

Hubs call ``WebhookSender.emit`` (never blocking: the event is queued); one task owned by the
sender POSTs each event, signed with ``protocol.sign``, to ORSTREAM_EDGE_WEBHOOK_URL, retrying
with backoff. Without a URL events are only logged. The queue is bounded: when the control
plane is down for long, the oldest events are dropped and counted, never the media.
``WhipAudit`` turns a WHIP client's acts into such events, for the site's audit trail.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from .protocol import EdgeEvent, sign, whip_token_id
from .tasks import cancel_and_wait

logger = logging.getLogger(__name__)

RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass
class WebhookStats:
    emitted: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    dropped: int = 0


class WebhookSender:
    def __init__(
        self, *, url: str, secret: str, queue_size: int = 1000, timeout: float = 5.0, edge_id: str = "edge"
    ) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.edge_id = edge_id
        self.stats = WebhookStats()
        self._queue: deque[EdgeEvent] = deque(maxlen=queue_size)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.recent: deque[EdgeEvent] = deque(maxlen=100)  # for /metrics and tests

    def emit(self, type_: str, session_id: str, data: dict[str, Any]) -> None:
        event = EdgeEvent(type=type_, session_id=session_id, at=time.time(), data=data)
        self.stats.emitted += 1
        self.recent.append(event)
        logger.info("event %s session=%s %s", type_, session_id, json.dumps(data, default=str))
        if not self.url:
            return
        if len(self._queue) == self._queue.maxlen:
            self.stats.dropped += 1  # deque drops the oldest on append
        self._queue.append(event)
        self._wakeup.set()

    def start(self) -> None:
        if self.url and self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def close(self, *, drain_seconds: float = 2.0) -> None:
        """Try to deliver what is queued for a moment, then stop."""
        deadline = time.monotonic() + drain_seconds
        while self._queue and self._task is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        path = urlsplit(self.url).path or "/"
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            event = self._queue[0]
            attempt = 0
            while True:
                outcome = await self._post(event, path)
                if outcome == "delivered":
                    self.stats.delivered += 1
                    break
                if outcome == "refused":
                    self.stats.dropped += 1
                    break
                self.stats.failed_attempts += 1
                if attempt >= len(RETRY_DELAYS):
                    self.stats.dropped += 1
                    logger.warning("webhook %s dropped after %d attempts", event.type, attempt + 1)
                    break
                await asyncio.sleep(RETRY_DELAYS[attempt])
                attempt += 1
            if self._queue and self._queue[0] is event:
                self._queue.popleft()

    async def _post(self, event: EdgeEvent, path: str) -> str:
        """"delivered", "refused" (a 4xx that retrying cannot fix) or "retry"."""
        assert self._session is not None
        body = json.dumps(event.to_dict(), separators=(",", ":"), default=str).encode()
        # Signed at each attempt: a retry minutes later must still be fresh.
        headers = sign(secret=self.secret, method="POST", path=path, body=body)
        headers["Content-Type"] = "application/json"
        headers["X-Orstream-Edge"] = self.edge_id
        try:
            async with self._session.post(self.url, data=body, headers=headers) as response:
                if 200 <= response.status < 300:
                    return "delivered"
                # 4xx other than throttling will not get better by retrying
                if 400 <= response.status < 500 and response.status not in (408, 429):
                    logger.warning("webhook %s refused: HTTP %d", event.type, response.status)
                    return "refused"
                return "retry"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            logger.debug("webhook %s failed: %s", event.type, exc)
            return "retry"


class WhipAudit:
    """Reports every WHIP act (publish, delete; allowed or refused) to the site's audit trail.

    The API calls ``report``; the event goes out as a ``whip.publish`` / ``whip.delete`` webhook
    and the site writes the audit event. Acts under a valid token are always reported. Refusals
    can come from anyone on the network, so they are reported ``burst`` at once and then
    ``rate`` a second; the others are counted, and the next report says how many it stands for,
    so bad tokens cannot flood the audit chain.
    """

    def __init__(self, webhooks: WebhookSender, *, rate: float = 1.0, burst: int = 20) -> None:
        self.webhooks = webhooks
        self.rate = rate
        self.burst = burst
        self._allowance = float(burst)
        self._last = time.monotonic()
        self.unreported = 0  # refusals not reported since the last report
        self.reported = 0
        self.suppressed_total = 0

    def report(self, act: str, session_id: str, *, outcome: str, reason: str, token: str, resource: str = "") -> None:
        data: dict[str, Any] = {
            "outcome": outcome,
            "reason": reason[:200],
            "token": whip_token_id(token) if token else "",
            "resource": resource,
        }
        if outcome != "allowed":
            now = time.monotonic()
            self._allowance = min(self.burst, self._allowance + (now - self._last) * self.rate)
            self._last = now
            if self._allowance < 1:
                self.unreported += 1
                self.suppressed_total += 1
                return
            self._allowance -= 1
        data["refusals_not_reported_before"] = self.unreported
        self.unreported = 0
        self.reported += 1
        self.webhooks.emit(act, session_id[:100], data)


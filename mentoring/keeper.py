"""The site process's connection keeper: presence that survives a dead consumer or process.

One thread per site process, owned by the mentoring app (MentoringConfig.keeper) and started by
the first WebSocket that joins. Every HEARTBEAT_SECONDS it marks this process's live connections
as seen, closes (with a "left") the connections nobody refreshed (a consumer the ASGI server
killed, a process that died), and ends the connections whose link expired or was revoked: their
edge peer is dropped and their consumer told to close. Never decides a rule: mentoring.services does.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from channels.layers import get_channel_layer
from django.db import close_old_connections

from . import services

log = logging.getLogger(__name__)


class ConnectionKeeper:
    def __init__(self, *, interval: float = services.HEARTBEAT_SECONDS) -> None:
        self.interval = interval
        # Each live connection with its consumer's event loop: messages to a consumer go through
        # that loop, never a loop of this thread's own (the channel layer is bound to its loop).
        self.live: dict[str, asyncio.AbstractEventLoop] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.failing_since = 0.0

    def register(self, channel_name: str, loop: asyncio.AbstractEventLoop) -> None:
        with self.lock:
            self.live[channel_name] = loop
            if self.thread is None or not self.thread.is_alive():
                self.stopping.clear()
                self.thread = threading.Thread(target=self.run, name="connection-keeper", daemon=True)
                self.thread.start()

    def unregister(self, channel_name: str) -> None:
        with self.lock:
            self.live.pop(channel_name, None)

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=self.interval * 2)

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.beat()
                self.failing_since = 0.0
            except Exception as failure:  # the database may be away for a moment: say so once a minute
                if time.monotonic() - self.failing_since > 60:
                    self.failing_since = time.monotonic()
                    log.warning("presence heartbeat failed: %s", failure)
            finally:
                close_old_connections()

    def beat(self) -> None:
        with self.lock:
            loops = dict(self.live)
        names = sorted(loops)
        services.connection_heartbeat(channel_names=names)
        services.connection_sweep()
        layer = get_channel_layer()
        for channel_name, reason in services.connection_links_ended(channel_names=names):
            services.connection_end(channel_name=channel_name, reason=reason)
            loop = loops.get(channel_name)
            if layer is not None and loop is not None and not loop.is_closed():
                message = {"type": "link.ended", "reason": reason}
                asyncio.run_coroutine_threadsafe(layer.send(channel_name, message), loop).result(timeout=10)

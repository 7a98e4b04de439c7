"""A bounded inbox in front of every WebSocket consumer.

The ASGI server queues a socket's frames for its application without a bound, and a consumer
handles them one at a time (in a thread, with the database): a client sending faster than that
grows the server's memory for as long as it likes (a resident's chat flood once took a site from
436 to 573 MB, never given back), long before the consumer's own per-kind budgets see the frames.
Here a task reads the server's queue as fast as frames arrive and hands them on through a queue
of at most ``WS_MAX_QUEUED_FRAMES`` frames and ``WS_MAX_QUEUED_BYTES`` bytes. When a client
overfills it, it is told why and closed (4429, as for any flood), what it still sends is
dropped, and its consumer gets the disconnect at once.

It also keeps sends from outliving the socket: once the socket is closed (by the client, the
server or the consumer), a consumer's late broadcast is dropped rather than raised as "send on
a closed protocol".
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from autobahn.exception import Disconnected
from django.conf import settings

CLOSE_TOO_MANY = 4429
FLOODED = "Too many messages at once: this connection is closed. Reload the page to come back."

Scope = dict[str, Any]
Message = dict[str, Any]
App = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def _size(message: Message) -> int:
    text, data = message.get("text"), message.get("bytes")
    return len(text) if isinstance(text, str) else len(data) if isinstance(data, bytes) else 0


class WebSocketInbox:
    def __init__(self, application: App) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]) -> None:
        if scope.get("type") != "websocket":
            return await self.application(scope, receive, send)
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        state = {"bytes": 0, "closed": False}

        async def guarded_send(message: Message) -> None:
            if state["closed"]:
                return
            if message.get("type") == "websocket.close":
                state["closed"] = True
            try:
                await send(message)
            except Disconnected:
                state["closed"] = True

        async def pump() -> None:
            while True:
                message = await receive()
                kind = message.get("type")
                if kind == "websocket.disconnect":
                    state["closed"] = True
                    inbox.put_nowait(message)
                    return
                if kind != "websocket.receive":
                    inbox.put_nowait(message)
                    continue
                if state["closed"]:
                    continue  # sent after the close: dropped
                size = _size(message)
                if inbox.qsize() >= settings.WS_MAX_QUEUED_FRAMES or state["bytes"] + size > settings.WS_MAX_QUEUED_BYTES:
                    await guarded_send({"type": "websocket.send", "text": json.dumps({"type": "error", "code": "rate_limited", "message": FLOODED})})
                    await guarded_send({"type": "websocket.close", "code": CLOSE_TOO_MANY})
                    inbox.put_nowait({"type": "websocket.disconnect", "code": CLOSE_TOO_MANY})
                    continue
                state["bytes"] += size
                inbox.put_nowait(message)

        async def take() -> Message:
            message = await inbox.get()
            state["bytes"] -= _size(message) if message.get("type") == "websocket.receive" else 0
            return message

        reader = asyncio.ensure_future(pump())
        try:
            await self.application(scope, take, guarded_send)
        finally:
            reader.cancel()

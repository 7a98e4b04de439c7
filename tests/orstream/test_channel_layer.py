"""The Redis channel layer keeps an idle consumer alive: a page's WebSocket that gets no message for
longer than channels_redis' 5 s poll must not see its consumer die of a read timeout."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer
from django.conf import settings


async def test_an_idle_receive_outlasts_the_redis_poll_and_still_gets_its_message() -> None:
    if not settings.REDIS_URL:
        pytest.fail("this test needs Redis (REDIS_URL)")
    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel()
    waiting = asyncio.ensure_future(layer.receive(channel))
    try:
        await asyncio.sleep(7)  # more than one BZPOPMIN of 5 s with nothing to read
        assert not waiting.done(), f"the receive ended on its own: {waiting.exception()!r}"
        await layer.send(channel, {"type": "hello"})
        assert await asyncio.wait_for(waiting, 10) == {"type": "hello"}
    finally:
        waiting.cancel()
        await layer.flush()

"""The embedded profile's in-memory channel layer drops a full member's copy quietly, even when
the sender gives up waiting (its consumer was killed)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

from orstream.layers import InMemoryChannelLayer


async def test_a_full_member_loses_its_copy_without_a_traceback_and_the_others_get_theirs():
    unretrieved: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: unretrieved.append(context))
    layer = InMemoryChannelLayer(capacity=1)
    members = [await layer.new_channel() for _ in range(20)]
    for channel in members:
        await layer.group_add("room", channel)
        await layer.send(channel, {"type": "first"})
    # The sender is cancelled half-way, as when daphne kills a consumer stuck on a flood.
    sending = asyncio.ensure_future(layer.group_send("room", {"type": "dropped for full"}))
    await asyncio.sleep(0)
    sending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sending
    await layer.group_send("room", {"type": "dropped for full"})
    free = await layer.new_channel()
    await layer.group_add("room", free)
    await layer.group_send("room", {"type": "hello"})
    for _ in range(3):
        await asyncio.sleep(0)
        gc.collect()
    assert (await layer.receive(members[0]))["type"] == "first"
    assert (await layer.receive(free))["type"] == "hello"
    assert not unretrieved, unretrieved[0].get("message")

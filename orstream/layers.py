"""The embedded profile's channel layer: channels' in-memory layer, minus one fault.

Its ``group_send`` starts one task per member and, when a member's channel is full, leaves that
task's ``ChannelFull`` unretrieved: asyncio then logs a traceback for every message dropped
(hundreds a second under a chat flood). Here a full member's copy is dropped quietly, as
channels_redis does in production.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):  # type: ignore[misc]
    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        members = list(self.groups.get(group, {}))
        results = await asyncio.gather(*(self.send(channel, message) for channel in members), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, ChannelFull):
                raise result

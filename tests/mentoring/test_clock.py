"""The "clock" message: the edge's RTP <-> ingest wall-clock mapping for a page's latency badge."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from mentoring import services
from orstream import edgeclient
from tests.mentoring.test_consumers import join

pytestmark = pytest.mark.django_db(transaction=True)

MAPPING = {"session_id": "x", "now": 1_800_000_000.5, "video": {"clock_rate": 90000, "rtp_timestamp": 1234, "ingest_time": 1_800_000_000.4}}


async def test_a_viewer_gets_the_edges_clock_mapping(session, carol, alice, consenting_patient, monkeypatch):
    await sync_to_async(services.session_start)(session=session, by=alice)
    seen: list[Any] = []

    def fake_call(method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        seen.append((method, path))
        return MAPPING

    monkeypatch.setattr(edgeclient, "call", fake_call)
    communicator, _ = await join(session, await sync_to_async(services.join_token_mint)(participant=carol))
    await communicator.send_json_to({"type": "clock"})
    while (reply := await communicator.receive_json_from(timeout=5))["type"] != "clock":
        pass
    assert reply["video"] == MAPPING["video"] and reply["now"] == MAPPING["now"]
    assert seen == [("GET", f"/sessions/{session.public_id}/clock")]
    await communicator.disconnect()


async def test_the_clock_before_the_session_is_live_is_an_answer_with_an_error(session, carol, consenting_patient):
    communicator, _ = await join(session, await sync_to_async(services.join_token_mint)(participant=carol))
    await communicator.send_json_to({"type": "clock"})
    while (reply := await communicator.receive_json_from(timeout=5))["type"] != "clock":
        pass
    assert "not live" in reply["error"]
    await communicator.disconnect()

"""What a participant's WebSocket may not do: outlive its link, flood, talk without the right to,
send what is not a message, or come from another origin. Over the real Redis layer."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from consent.models import AuditEvent
from mentoring import services
from mentoring.models import Annotation, JoinToken
from orstream.asgi import application

from .test_consumers import join, mint, next_of

pytestmark = pytest.mark.django_db(transaction=True)


async def closed_with(communicator: WebsocketCommunicator, *, timeout: float = 8) -> int:
    """The close code, skipping the messages before it."""
    while True:
        output = await communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return int(output["code"])


async def messages_until_quiet(communicator: WebsocketCommunicator, quiet: float = 0.5) -> list[dict[str, Any]]:
    seen = []
    while True:
        if await communicator.receive_nothing(timeout=quiet):  # (a timed-out receive would end the app)
            return seen
        output = await communicator.receive_output(timeout=quiet)
        if output["type"] == "websocket.close":
            seen.append({"type": "close", "code": output["code"]})
            return seen
        seen.append(json.loads(output["text"]))


async def test_an_expired_link_can_no_longer_chat_and_is_closed_with_the_reason(session, carol, consenting_patient):
    token = await mint(participant=carol, valid_for=timedelta(seconds=2))
    communicator, welcome = await join(session, token)
    assert welcome["type"] == "welcome"
    await asyncio.sleep(2.2)
    await communicator.send_json_to({"type": "chat", "text": "still here?"})
    removed = await next_of(communicator, "removed")
    assert removed["reason"] == "expired"
    assert await closed_with(communicator) == 4403
    assert not await sync_to_async(Annotation.objects.filter(kind="chat").exists)()


async def test_an_idle_socket_is_closed_when_its_link_expires(session, carol, consenting_patient):
    token = await mint(participant=carol, valid_for=timedelta(seconds=1))
    communicator, _ = await join(session, token)
    removed = await next_of(communicator, "removed")  # the keeper ends it within a heartbeat or two
    assert removed["reason"] == "expired"
    assert await closed_with(communicator) == 4403
    assert await sync_to_async(
        AuditEvent.objects.filter(action="session.drop", detail__reason="expired", target=f"participant:{carol.public_id}").exists
    )()
    connected = await sync_to_async(services.presence_connected)(session=session)
    assert carol not in connected


async def test_a_revocation_whose_broadcast_was_missed_still_ends_the_connection(session, carol, consenting_patient):
    communicator, _ = await join(session, await mint(participant=carol))
    # Revoked in the database only, as if this server had missed the revocation's broadcast.
    await sync_to_async(JoinToken.objects.filter(participant=carol).update)(revoked_at=timezone.now())
    removed = await next_of(communicator, "removed")
    assert removed["reason"] == "revoked"
    assert await closed_with(communicator) == 4403


async def test_a_chat_flood_is_refused_with_a_clear_error_then_closed(session, carol, resident, consenting_patient):
    flooder, _ = await join(session, await mint(participant=resident))
    watcher, _ = await join(session, await mint(participant=carol))
    await messages_until_quiet(watcher)
    for n in range(8):
        await flooder.send_json_to({"type": "chat", "text": f"message {n}"})
    seen = await messages_until_quiet(flooder)
    errors = [m for m in seen if m["type"] == "error"]
    assert errors and errors[0]["code"] == "rate_limited" and "Slow down" in errors[0]["message"]
    stored = await sync_to_async(Annotation.objects.filter(kind="chat").count)()
    assert 1 <= stored <= 6
    for n in range(200):
        await flooder.send_json_to({"type": "chat", "text": f"flood {n}"})
    assert await closed_with(flooder) == 4429
    assert await sync_to_async(Annotation.objects.filter(kind="chat").count)() <= 8
    chats = [m for m in await messages_until_quiet(watcher) if m["type"] == "annotation"]
    assert len(chats) <= 8
    await watcher.send_json_to({"type": "ping"})
    assert (await next_of(watcher, "pong"))["type"] == "pong"
    await watcher.disconnect()


async def test_a_chat_frame_above_its_size_budget_is_refused_and_the_socket_stays(session, carol, consenting_patient):
    communicator, _ = await join(session, await mint(participant=carol))
    await communicator.send_json_to({"type": "chat", "text": "x", "padding": "y" * 30_000})
    error = await next_of(communicator, "error")
    assert error["code"] == "too_large" and "chat" in error["message"]
    await communicator.send_json_to({"type": "ping"})
    assert (await next_of(communicator, "pong"))["type"] == "pong"
    await communicator.disconnect()


@pytest.mark.parametrize("role", ["resident", "coordinator"])
async def test_a_receive_only_role_cannot_broadcast_talking(session, carol, alice, role, consenting_patient):
    """The resident watches; the coordinator's live view monitors: their bootstrap says they may not talk."""
    quiet = await sync_to_async(services.participant_add)(session=session, role=role, display_name=f"A {role}", by=alice)
    may = await sync_to_async(services.page_bootstrap)(session=session, participant=quiet, token="t")
    assert may["may"]["talk"] is False
    listener, _ = await join(session, await mint(participant=carol))
    talker, _ = await join(session, await mint(participant=quiet))
    await messages_until_quiet(listener)
    await talker.send_json_to({"type": "talking", "talking": True})
    assert (await next_of(talker, "error"))["code"] == "not_allowed"
    assert not [m for m in await messages_until_quiet(listener) if m["type"] == "talking"]
    await listener.disconnect()
    await talker.disconnect()


async def test_deeply_nested_json_is_a_bad_message_not_a_traceback(session, carol, consenting_patient, caplog):
    communicator, _ = await join(session, await mint(participant=carol))
    await communicator.send_to(text_data="[" * 30_000 + "]" * 30_000)
    assert (await next_of(communicator, "error"))["code"] == "bad_json"
    assert "RecursionError" not in caplog.text
    await communicator.disconnect()


async def test_frames_after_a_4400_close_are_not_handled(session, carol, consenting_patient, settings, caplog):
    communicator, _ = await join(session, await mint(participant=carol))
    for _ in range(settings.WS_MAX_BAD_FRAMES):
        await communicator.send_to(text_data="not json")
    await communicator.send_json_to({"type": "chat", "text": "after the close"})
    assert await closed_with(communicator) == 4400
    await asyncio.sleep(0.3)
    assert not await sync_to_async(Annotation.objects.filter(kind="chat").exists)()
    assert "Traceback" not in caplog.text


async def test_an_unknown_websocket_path_is_refused_with_a_message(caplog):
    communicator = WebsocketCommunicator(application, "/ws/nothing/here/", headers=[(b"origin", b"http://127.0.0.1:8000")])
    connected, _ = await communicator.connect()
    assert connected
    message = await communicator.receive_json_from(timeout=5)
    assert message["code"] == "unknown_path"
    assert await closed_with(communicator) == 4404
    assert "Traceback" not in caplog.text
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("origin", "host", "admitted"),
    [
        (b"http://127.0.0.1:8000", b"127.0.0.1:8000", True),  # the public URL
        (b"http://localhost:8123", b"localhost:8123", True),  # same origin as the request
        (b"http://127.0.0.1:9999", b"127.0.0.1:8000", False),  # another port on the same host
        (b"https://127.0.0.1", b"127.0.0.1:8000", False),
        (b"http://evil.example", b"evil.example", False),  # a host that is not ours
    ],
)
async def test_the_origin_check_compares_scheme_host_and_port(session, origin, host, admitted):
    communicator = WebsocketCommunicator(
        application, f"/ws/sessions/{session.public_id}/", headers=[(b"origin", origin), (b"host", host)]
    )
    connected, _ = await communicator.connect()
    assert connected is admitted
    await communicator.disconnect()


async def test_frames_queued_faster_than_the_consumer_takes_them_close_the_socket(session, carol, resident, consenting_patient, settings):
    """The server's queue in front of a consumer is bounded (orstream/wsinbox.py): a flood is cut
    off there, before it can grow the server's memory, and the others go on."""
    settings.WS_MAX_QUEUED_FRAMES = 16
    watcher, _ = await join(session, await mint(participant=carol))
    flooder, _ = await join(session, await mint(participant=resident))
    frame = json.dumps({"type": "chat", "text": "x" * 2000})
    for _ in range(3000):
        await flooder.send_to(text_data=frame)
    seen = []
    while True:
        output = await flooder.receive_output(timeout=8)
        if output["type"] == "websocket.close":
            break
        seen.append(json.loads(output["text"]))
    assert output["code"] == 4429
    assert any(m.get("code") == "rate_limited" and "Too many messages at once" in m["message"] for m in seen)
    assert await sync_to_async(Annotation.objects.filter(kind="chat").count)() <= 6  # the budget's burst
    await watcher.send_json_to({"type": "ping"})
    assert (await next_of(watcher, "pong"))["type"] == "pong"
    await watcher.disconnect()


async def test_a_link_reconnecting_in_a_loop_is_refused_for_the_minute(session, resident, consenting_patient, settings):
    """Budgets are per connection: a client reconnecting each time it is cut off would reset them."""
    settings.WS_JOINS_PER_MINUTE = 3
    if time.time() % 60 > 55:
        await asyncio.sleep(60 - time.time() % 60 + 0.1)  # the count is per minute: start inside one
    token = await mint(participant=resident)
    for _ in range(3):
        communicator, welcome = await join(session, token)
        assert welcome["type"] == "welcome"
        await communicator.disconnect()
    communicator, refused = await join(session, token)
    assert refused["type"] == "refused" and refused["reason"] == "too_many"
    assert "Wait a minute, then reload the page" in refused["message"]
    assert await closed_with(communicator) == 4403


async def test_a_stroke_with_a_list_for_a_tool_is_a_bad_annotation(session, carol, consenting_patient, caplog):
    communicator, _ = await join(session, await mint(participant=carol))
    for tool in (["arrow"], {"a": 1}):
        await communicator.send_json_to({"type": "stroke", "tool": tool, "color": "#ffeb3b", "points": [[0.1, 0.1]]})
        assert (await next_of(communicator, "error"))["code"] == "bad_annotation"
    assert "Traceback" not in caplog.text
    await communicator.disconnect()

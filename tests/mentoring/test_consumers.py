"""SessionConsumer admission, presence, telestration and bad input, over the real Redis layer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from mentoring import services
from orstream.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def connect(session: Any, *, origin: bytes = b"http://127.0.0.1:8000") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, f"/ws/sessions/{session.public_id}/", headers=[(b"origin", origin)])
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def join(session: Any, token: str) -> tuple[WebsocketCommunicator, dict[str, Any]]:
    communicator = await connect(session)
    await communicator.send_json_to({"type": "join", "token": token})
    return communicator, await communicator.receive_json_from(timeout=5)


async def next_of(communicator: WebsocketCommunicator, message_type: str, **match: Any) -> dict[str, Any]:
    """The next message of ``message_type`` whose fields include ``match`` (e.g. event="left")."""
    while True:
        message = await communicator.receive_json_from(timeout=5)
        if message["type"] == message_type and all(message.get(k) == v for k, v in match.items()):
            return message


mint = sync_to_async(services.join_token_mint)


async def test_a_valid_token_is_welcomed_and_presence_is_broadcast(session, carol, resident, consenting_patient):
    first, welcome = await join(session, await mint(participant=carol))
    assert welcome["type"] == "welcome"
    assert welcome["participant"]["role"] == "mentor"
    assert welcome["session"]["id"] == str(session.public_id)
    own = await next_of(first, "presence")
    assert own["event"] == "joined" and own["participant"]["role"] == "mentor"
    second, _ = await join(session, await mint(participant=resident))
    seen = await next_of(first, "presence")
    assert seen["event"] == "joined" and seen["participant"]["role"] == "resident"
    await second.disconnect()
    left = await next_of(first, "presence")
    assert left["event"] == "left" and left["participant"]["name"] == "Dave Resident"
    await first.disconnect()


async def test_a_refused_token_gets_its_reason_and_close_4403(session, carol, refusing_patient):
    communicator, reply = await join(session, await mint(participant=carol))
    assert reply["type"] == "refused" and reply["reason"] == "consent"
    assert "live_external" in reply["message"]
    assert (await communicator.receive_output(timeout=5))["code"] == 4403


async def test_a_token_for_another_session_is_refused_on_this_socket(session, carol, room, bob, alice, consenting_patient):
    from datetime import timedelta

    other = await sync_to_async(services.session_schedule)(
        room=room, procedure="Other", surgeon=bob, planned_start=session.planned_end + timedelta(hours=1),
        planned_end=session.planned_end + timedelta(hours=2), time_zone="UTC", created_by=alice,
    )
    communicator, reply = await join(other, await mint(participant=carol))
    assert reply == {"type": "refused", "reason": "other_session", "message": reply["message"]}


async def test_messages_before_join_are_refused(session):
    communicator = await connect(session)
    await communicator.send_json_to({"type": "chat", "text": "hello"})
    reply = await communicator.receive_json_from(timeout=5)
    assert reply["type"] == "error" and reply["code"] == "not_joined"
    await communicator.disconnect()


async def test_a_foreign_origin_is_rejected(session):
    communicator = WebsocketCommunicator(
        application, f"/ws/sessions/{session.public_id}/", headers=[(b"origin", b"https://evil.example")]
    )
    connected, _ = await communicator.connect()
    assert not connected


async def test_strokes_reach_everyone_with_their_media_time(session, carol, surgeon, consenting_patient):
    mentor, _ = await join(session, await mint(participant=carol))
    console, _ = await join(session, await mint(participant=surgeon))
    stroke = {"type": "stroke", "tool": "circle", "color": "#00e5ff", "points": [[0.5, 0.5], [0.6, 0.6]], "media_time": 42.0}
    await mentor.send_json_to(stroke)
    received = await next_of(console, "annotation")
    assert received["kind"] == "stroke" and received["points"] == [[0.5, 0.5], [0.6, 0.6]]
    assert received["media_time"] == 42.0 and received["from_name"] == "Dr Carol Mentor"
    stored = await sync_to_async(services.annotation_list_for)(session=session)
    assert [a["kind"] for a in stored] == ["stroke"]
    await mentor.disconnect()
    await console.disconnect()


async def test_bad_input_gets_errors_then_4400_and_others_notice_nothing(session, carol, resident, consenting_patient):
    bad, _ = await join(session, await mint(participant=carol))
    good, _ = await join(session, await mint(participant=resident))
    for _ in range(2):  # its own arrival, then the resident's
        await next_of(bad, "presence", event="joined")
    await next_of(good, "presence", event="joined")
    for frame in ["{not json", json.dumps([1, 2]), json.dumps({"type": "launch"}), json.dumps({"type": "stroke", "tool": "x"})]:
        await bad.send_to(text_data=frame)
        assert (await bad.receive_json_from(timeout=5))["type"] == "error"
    await bad.send_to(text_data="{")
    assert (await bad.receive_json_from(timeout=5))["code"] == "bad_json"
    assert (await bad.receive_output(timeout=5))["code"] == 4400
    # The other participant sees only that the misbehaving one left, and still works.
    left = await next_of(good, "presence", event="left")
    assert left["participant"]["role"] == "mentor"
    await good.send_json_to({"type": "ping"})
    assert await good.receive_json_from(timeout=5) == {"type": "pong"}
    await good.disconnect()


async def test_an_oversized_frame_closes_with_4009(session, carol, consenting_patient, settings):
    settings.WS_MAX_FRAME_BYTES = 1024
    communicator, _ = await join(session, await mint(participant=carol))
    await communicator.send_to(text_data=json.dumps({"type": "chat", "text": "x" * 5000}))
    assert (await next_of(communicator, "error"))["code"] == "too_large"
    assert (await communicator.receive_output(timeout=5))["code"] == 4009


async def test_revoking_a_token_drops_the_live_connection(session, carol, alice, consenting_patient):
    communicator, _ = await join(session, await mint(participant=carol))
    await sync_to_async(services.join_token_revoke)(participant=carol, by=alice)
    removed = await next_of(communicator, "removed")
    assert removed["reason"] == "revoked"
    assert (await communicator.receive_output(timeout=5))["code"] == 4403


async def test_offer_before_the_session_is_live_gets_a_media_error(session, carol, consenting_patient):
    communicator, _ = await join(session, await mint(participant=carol))
    await communicator.send_json_to({"type": "offer", "sdp": "v=0\r\n"})
    reply = await next_of(communicator, "media_error")
    assert "not live" in reply["message"]
    await communicator.send_json_to({"type": "offer", "sdp": "garbage"})
    assert (await next_of(communicator, "error"))["code"] == "bad_sdp"
    await communicator.send_json_to({"type": "offer", "sdp": "v=0\r\n", "media": "record"})
    error = await next_of(communicator, "error")
    assert error["code"] == "bad_message" and '"publish" or "watch"' in error["message"]
    await communicator.disconnect()


async def test_the_console_says_whether_it_publishes_or_watches(session, surgeon, consenting_patient, monkeypatch):
    asked: list[bool] = []

    def offer(*, participant: Any, sdp: str, watch: bool = False) -> dict[str, str]:
        asked.append(watch)
        return {"sdp": "v=0\r\nanswer", "type": "answer"}

    monkeypatch.setattr(services, "media_offer", offer)
    console, _ = await join(session, await mint(participant=surgeon))
    for message in ({"type": "offer", "sdp": "v=0\r\n"}, {"type": "offer", "sdp": "v=0\r\n", "media": "watch"}):
        await console.send_json_to(message)
        await next_of(console, "answer")
    assert asked == [False, True]
    await console.disconnect()


async def test_a_slow_edge_answer_does_not_hold_up_other_participants(session, carol, resident, consenting_patient, monkeypatch):
    import time

    def slow_offer(*, participant: Any, sdp: str, watch: bool = False) -> dict[str, str]:
        time.sleep(2)
        return {"sdp": "v=0\r\nanswer", "type": "answer"}

    monkeypatch.setattr(services, "media_offer", slow_offer)
    mentor, _ = await join(session, await mint(participant=carol))
    other, _ = await join(session, await mint(participant=resident))
    await mentor.send_json_to({"type": "offer", "sdp": "v=0\r\n"})
    started = time.monotonic()
    await other.send_json_to({"type": "ping"})
    await next_of(other, "pong")
    assert time.monotonic() - started < 1.0, "a pong waited for another participant's offer"
    answer = await next_of(mentor, "answer")
    assert answer["sdp"] == "v=0\r\nanswer"
    await mentor.disconnect()
    await other.disconnect()


async def test_a_late_joiner_sees_the_drawing_on_screen_and_nothing_cleared(session, carol, resident, consenting_patient):
    mentor, _ = await join(session, await mint(participant=carol))
    stroke = {"type": "stroke", "tool": "arrow", "color": "#ff1744", "points": [[0.1, 0.1], [0.3, 0.3]], "media_time": 1.0}
    await mentor.send_json_to(stroke)
    await next_of(mentor, "annotation")
    await mentor.send_json_to({"type": "clear", "media_time": 2.0})
    await next_of(mentor, "annotation", kind="clear")
    await mentor.send_json_to({**stroke, "tool": "circle", "media_time": 3.0})
    await next_of(mentor, "annotation", kind="stroke")
    late, welcome = await join(session, await mint(participant=resident))
    assert [(a["kind"], a["tool"], a["media_time"]) for a in welcome["drawing"]] == [("stroke", "circle", 3.0)]
    await mentor.disconnect()
    await late.disconnect()

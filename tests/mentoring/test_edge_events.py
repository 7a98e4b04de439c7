"""Signed webhooks from the edge reach the session's participants; unsigned ones are refused."""

from __future__ import annotations

import json
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from mentoring import services
from orstream.edge import protocol


def post(client, body: dict, *, secret: str, now: float | None = None, path: str = "/edge/events/"):
    raw = json.dumps(body).encode()
    headers = protocol.sign(secret=secret, method="POST", path=path, body=raw, now=now)
    return client.post(path, raw, content_type="application/json", headers=headers)


def test_a_signed_event_reaches_the_sessions_group(client, session, settings):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(services.session_group(session), channel)
    response = post(client, {"type": "publisher.up", "session_id": str(session.public_id), "at": time.time(),
                             "data": {"participant_id": "p-1", "sdp": "not relayed"}}, secret=settings.EDGE_SECRET)
    assert response.status_code == 200
    message = async_to_sync(layer.receive)(channel)
    assert message == {"type": "session.notice", "notice": {"event": "publisher.up", "participant_id": "p-1"}}


def test_a_wrong_secret_or_stale_signature_is_refused(client, session, settings):
    body = {"type": "publisher.up", "session_id": str(session.public_id), "at": time.time(), "data": {}}
    assert post(client, body, secret="not-the-secret").status_code == 403
    assert post(client, body, secret=settings.EDGE_SECRET, now=time.time() - 3600).status_code == 403
    assert client.post("/edge/events/", body, content_type="application/json").status_code == 403


def test_a_replayed_or_requeried_webhook_is_refused(client, session, settings):
    raw = json.dumps({"type": "publisher.up", "session_id": str(session.public_id), "at": time.time(), "data": {}}).encode()
    headers = protocol.sign(secret=settings.EDGE_SECRET, method="POST", path="/edge/events/", body=raw)
    assert client.post("/edge/events/", raw, content_type="application/json", headers=headers).status_code == 200
    replayed = client.post("/edge/events/", raw, content_type="application/json", headers=headers)
    assert replayed.status_code == 403 and "replayed" in replayed.json()["error"]
    headers = protocol.sign(secret=settings.EDGE_SECRET, method="POST", path="/edge/events/", body=raw)
    assert client.post("/edge/events/?x=1", raw, content_type="application/json", headers=headers).status_code == 403


def test_a_whip_act_reported_by_the_edge_is_audited(client, session, settings):
    from consent.models import AuditEvent

    refused = {"outcome": "refused", "reason": "a WHIP token can end only the WHIP session it created",
               "token": "0123456789abcdef", "resource": "console", "refusals_not_reported_before": 3}
    body = {"type": "whip.delete", "session_id": str(session.public_id), "at": time.time(), "data": refused}
    assert post(client, body, secret=settings.EDGE_SECRET).status_code == 200
    event = AuditEvent.objects.get(action="whip.delete")
    assert (event.outcome, event.actor, event.session_public_id, event.target) == (
        "refused", "whip:0123456789abcdef", str(session.public_id), "console")
    assert event.detail == {"reason": refused["reason"], "refusals_not_reported_before": 3}
    # a WHIP refusal for a session the site does not know is audited too, without a session
    body = {"type": "whip.publish", "session_id": "not-a-session", "at": time.time(),
            "data": {"outcome": "refused", "reason": "token refused: bad token", "token": "", "resource": ""}}
    assert post(client, body, secret=settings.EDGE_SECRET).status_code == 200
    event = AuditEvent.objects.get(action="whip.publish")
    assert (event.outcome, event.actor, event.session_public_id) == ("refused", "whip:no token", "")


def test_unknown_sessions_and_garbled_bodies_get_4xx(client, db, settings):
    unknown = {"type": "publisher.up", "session_id": "00000000-0000-0000-0000-000000000000", "at": time.time()}
    assert post(client, unknown, secret=settings.EDGE_SECRET).status_code == 404
    assert post(client, {"nothing": 1}, secret=settings.EDGE_SECRET).status_code == 400

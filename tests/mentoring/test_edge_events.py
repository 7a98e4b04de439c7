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


NONCE_IN_ANOTHER_PROCESS = """
import sys, django
django.setup()
from django.conf import settings
from orstream.edgeclient import WebhookNonces
print(settings.CACHES["default"]["BACKEND"], WebhookNonces().first_use(sys.argv[1], expires=float(sys.argv[2])))
"""


def test_a_webhook_accepted_by_one_site_process_is_refused_by_another(tmp_path):
    """Replay protection across site processes: two processes, each with its own Redis client,
    share the nonces through the cache on REDIS_URL (locmem only when Redis is not set)."""
    import os
    import secrets
    import subprocess
    import sys
    from pathlib import Path

    assert os.environ.get("REDIS_URL"), "this test is about Redis: set REDIS_URL"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "orstream.settings", "ORSTREAM_VAR_DIR": str(tmp_path),
           "ORSTREAM_CHANNEL_PREFIX": f"test-{secrets.token_hex(4)}"}
    nonce, expires = secrets.token_hex(16), str(time.time() + 60)

    def other_process(n: str) -> str:
        result = subprocess.run([sys.executable, "-c", NONCE_IN_ANOTHER_PROCESS, n, expires], cwd=root, env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    assert other_process(nonce) == "django.core.cache.backends.redis.RedisCache True"
    assert other_process(nonce) == "django.core.cache.backends.redis.RedisCache False"
    assert other_process(secrets.token_hex(16)).endswith("True"), "a fresh nonce is still accepted"


def test_without_redis_the_nonces_live_in_the_process(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env |= {"DJANGO_SETTINGS_MODULE": "orstream.settings", "ORSTREAM_VAR_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", NONCE_IN_ANOTHER_PROCESS, "ab" * 16, str(time.time() + 60)],
                            cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "django.core.cache.backends.locmem.LocMemCache True", result.stderr

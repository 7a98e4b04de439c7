"""Presence is true: a participant whose consumer or server process died is marked gone within
seconds, and their one-time link admits them again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from django.conf import settings
from django.utils import timezone

from mentoring import services
from mentoring.models import Connection, PresenceEvent
from tests.e2e.conftest import free_port, stop, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def test_a_connection_nobody_refreshes_is_gone_and_says_so_once(session, carol, consenting_patient):
    services.presence_record(participant=carol, kind="joined", channel_name="specific.dead")
    assert services.presence_connected(session=session) == [carol]
    Connection.objects.update(seen_at=timezone.now() - timedelta(seconds=services.PRESENCE_STALE_SECONDS + 1))
    assert services.presence_connected(session=session) == []
    assert services.presence_connected(session=session) == []
    assert PresenceEvent.objects.filter(participant=carol, kind="left").count() == 1


def test_a_one_time_link_whose_consumer_died_admits_its_specialist_again(session, alice, consenting_patient):
    specialist = services.participant_add(session=session, role="specialist", display_name="Dr Spec", by=alice)
    token = services.join_token_mint(participant=specialist, valid_for=timedelta(minutes=20), one_time=True)
    admission = services.join_token_check(token=token, consume=True)
    services.presence_record(participant=specialist, kind="joined", channel_name="specific.a", token=admission.token)
    with pytest.raises(services.JoinRefused) as refused:
        services.join_token_check(token=token, consume=True)  # open on another screen meanwhile
    assert refused.value.reason == "used"
    Connection.objects.update(seen_at=timezone.now() - timedelta(seconds=services.PRESENCE_STALE_SECONDS + 1))
    assert services.join_token_check(token=token, consume=True).participant == specialist


def server(port: int, log: Path) -> subprocess.Popen[bytes]:
    db = settings.DATABASES["default"]
    user = f"{db['USER']}:{db['PASSWORD']}@" if db.get("PASSWORD") else f"{db['USER']}@" if db.get("USER") else ""
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{user}{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "ORSTREAM_PUBLIC_URL": "http://127.0.0.1:8000",
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "orstream.serve", "-b", "127.0.0.1", "-p", str(port), "orstream.asgi:application"],
            cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
        )
    wait_for_port(port, process, what="site")
    return process


async def open_join(port: int, session_id: str, token: str) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse, dict]:
    client = aiohttp.ClientSession()
    ws = await client.ws_connect(f"http://127.0.0.1:{port}/ws/sessions/{session_id}/", origin="http://127.0.0.1:8000")
    await ws.send_json({"type": "join", "token": token})
    return client, ws, json.loads((await ws.receive(timeout=10)).data)


@pytest.mark.django_db(transaction=True)
def test_a_server_killed_with_its_specialist_connected_leaves_no_ghost(session, alice, carol, consenting_patient, tmp_path):
    if not os.environ.get("REDIS_URL"):
        pytest.fail("two server processes share presence through Redis: set REDIS_URL")
    specialist = services.participant_add(session=session, role="specialist", display_name="Dr Spec", by=alice)
    one_time = services.join_token_mint(participant=specialist, valid_for=timedelta(minutes=20), one_time=True)
    watcher_token = services.join_token_mint(participant=carol)
    sid = str(session.public_id)
    a_port, b_port = free_port(), free_port()
    a, b = server(a_port, tmp_path / "a.log"), server(b_port, tmp_path / "b.log")

    async def journey() -> float:
        watcher_client, watcher, welcome = await open_join(b_port, sid, watcher_token)
        assert welcome["type"] == "welcome"
        spec_client, _, spec_welcome = await open_join(a_port, sid, one_time)
        assert spec_welcome["type"] == "welcome"
        while True:  # the watcher sees the specialist arrive
            message = json.loads((await watcher.receive(timeout=10)).data)
            if message["type"] == "presence" and message["participant"]["name"] == "Dr Spec":
                break
        a.send_signal(signal.SIGKILL)  # the specialist's server dies: no disconnect, no "left"
        killed = time.monotonic()
        while True:
            message = json.loads((await watcher.receive(timeout=20)).data)
            if message["type"] == "presence" and message["event"] == "left" and message["participant"]["name"] == "Dr Spec":
                gone_after = time.monotonic() - killed
                break
        again_client, _, again = await open_join(b_port, sid, one_time)
        assert again["type"] == "welcome", again
        for client in (watcher_client, spec_client, again_client):
            await client.close()
        return gone_after

    try:
        gone_after = asyncio.run(journey())
    finally:
        stop(a)
        stop(b)
    print(f"the killed server's specialist was marked gone after {gone_after:.1f} s")
    assert gone_after < 15

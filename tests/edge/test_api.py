"""The edge API over real HTTP: signatures, refusals, and a viewer driven end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from orstream.edge.__main__ import build
from orstream.edge.api import announce_start
from orstream.edge.config import EdgeConfig
from orstream.edge.events import WebhookSender, WhipAudit
from orstream.edge.protocol import (
    NONCE_HEADER,
    NonceCache,
    SignatureError,
    sign,
    verify,
    whip_token_id,
    whip_token_mint,
)

from .peers import (
    RecordingDecoder,
    as_high_profile_offer,
    publisher_accept,
    publisher_offer,
    viewer_accept,
    viewer_offer,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def recording_viewers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aiortc.rtcrtpreceiver.get_decoder", lambda codec: RecordingDecoder())


class Hooks:
    """A stand-in control plane that receives the edge's webhooks and checks their signatures."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.events: list[dict[str, Any]] = []
        self.refuse_next = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        verify(secret=self.secret, method="POST", path=request.path, body=body, headers=request.headers)
        if self.refuse_next:
            self.refuse_next -= 1
            return web.Response(status=503)
        self.events.append(json.loads(body))
        return web.json_response({"ok": True})

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


@pytest.fixture
async def hooks(secret: str) -> AsyncIterator[tuple[Hooks, str]]:
    receiver = Hooks(secret)
    app = web.Application()
    app.router.add_post("/edge/events/", receiver.handle)
    server = TestServer(app)
    await server.start_server()
    yield receiver, str(server.make_url("/edge/events/"))
    await server.close()


@pytest.fixture
async def client(secret: str, hooks: tuple[Hooks, str], tmp_path: Path) -> AsyncIterator[TestClient]:
    config = EdgeConfig(secret=secret, webhook_url=hooks[1], media_dir=tmp_path / "spool", max_body_bytes=64 * 1024)
    async with TestClient(TestServer(build(config))) as test_client:
        yield test_client


async def call(
    client: TestClient, method: str, path: str, body: Any = None, *, secret: str = "test-edge-secret", now: float | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    headers = sign(secret=secret, method=method, path=path, body=payload, now=now)
    response = await client.request(method, path, data=payload, headers=headers)
    text = await response.text()
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text


async def test_health_needs_no_signature_and_everything_else_does(client: TestClient) -> None:
    response = await client.get("/health")
    assert response.status == 200 and (await response.json())["ok"] is True
    for method, path in [("GET", "/metrics"), ("POST", "/sessions"), ("GET", "/sessions/s1/stats")]:
        response = await client.request(method, path)
        assert response.status == 401
        assert "signature" in (await response.json())["error"]


async def test_bad_and_expired_signatures_are_refused(client: TestClient) -> None:
    status, body = await call(client, "POST", "/sessions", {"session_id": "s1"}, secret="not-the-secret")
    assert status == 403 and body["error"] == "signature refused: bad signature"
    status, body = await call(client, "POST", "/sessions", {"session_id": "s1"}, now=time.time() - 3600)
    assert status == 403 and "expired" in body["error"]
    # a signature for one body does not cover another
    headers = sign(secret="test-edge-secret", method="POST", path="/sessions", body=b'{"session_id": "a"}')
    response = await client.post("/sessions", data=b'{"session_id": "b"}', headers=headers)
    assert response.status == 403


async def test_a_signed_request_is_good_once_and_covers_its_query(client: TestClient) -> None:
    body = b'{"session_id": "s1"}'
    headers = sign(secret="test-edge-secret", method="POST", path="/sessions", body=body)
    assert (await client.post("/sessions", data=body, headers=headers)).status == 201
    replayed = await client.post("/sessions", data=body, headers=headers)
    assert replayed.status == 403 and (await replayed.json())["error"] == "signature refused: replayed request"
    # the query string is part of what is signed
    headers = sign(secret="test-edge-secret", method="GET", path="/sessions/s1/stats", body=b"")
    assert (await client.get("/sessions/s1/stats?verbose=1", headers=headers)).status == 403
    headers = sign(secret="test-edge-secret", method="GET", path="/sessions/s1/stats?verbose=1", body=b"")
    assert (await client.get("/sessions/s1/stats?verbose=1", headers=headers)).status == 200
    # no nonce, or one that is not 32 hex digits
    headers = sign(secret="test-edge-secret", method="GET", path="/sessions/s1/stats", body=b"")
    del headers[NONCE_HEADER]
    assert (await client.get("/sessions/s1/stats", headers=headers)).status == 401
    headers = sign(secret="test-edge-secret", method="GET", path="/sessions/s1/stats", body=b"", nonce="x" * 32)
    assert (await client.get("/sessions/s1/stats", headers=headers)).status == 403


def test_the_nonce_cache_forgets_only_what_has_expired_and_is_bounded() -> None:
    cache = NonceCache(capacity=3)
    now = 1000.0
    assert cache.first_use("a" * 32, expires=now + 60, now=now)
    assert not cache.first_use("a" * 32, expires=now + 60, now=now + 59)
    assert cache.first_use("b" * 32, expires=now + 60, now=now) and cache.first_use("c" * 32, expires=now + 60, now=now)
    with pytest.raises(SignatureError, match="too many"):
        cache.first_use("d" * 32, expires=now + 60, now=now + 1)  # full of live nonces: refuse, forget none
    assert not cache.first_use("a" * 32, expires=now + 60, now=now + 2)
    assert cache.first_use("d" * 32, expires=now + 121, now=now + 61) and len(cache) == 1  # the rest expired


async def test_malformed_oversized_and_unknown_are_clear_4xx(client: TestClient) -> None:
    status, body = await call(client, "POST", "/sessions", raw=b"{not json")
    assert status == 400 and "JSON" in body["error"]
    status, body = await call(client, "POST", "/sessions", {"session_id": ""})
    assert status == 400
    status, body = await call(client, "POST", "/sessions", raw=b"x" * (65 * 1024))
    assert status == 413 and "too large" in body["error"]
    status, body = await call(client, "GET", "/sessions/nope/stats")
    assert status == 404 and "unknown session" in body["error"]
    status, body = await call(client, "POST", "/sessions/nope/viewers", {"participant_id": "p", "role": "mentor", "sdp": "v=0"})
    assert status == 404
    assert (await call(client, "POST", "/sessions", {"session_id": "s1"}))[0] == 201
    assert (await call(client, "POST", "/sessions", {"session_id": "s1"}))[0] == 200  # idempotent
    status, body = await call(client, "POST", "/sessions/s1/viewers", {"participant_id": "p", "role": "mentor"})
    assert status == 400 and "sdp" in body["error"]
    status, body = await call(client, "POST", "/sessions/s1/viewers", {"participant_id": "p", "role": "mentor", "sdp": "hello"})
    assert status == 400 and "session description" in body["error"]
    status, body = await call(client, "POST", "/sessions/s1/viewers", {"participant_id": "p", "role": "x", "sdp": "v", "evil": 1})
    assert status == 400 and "evil" in body["error"]
    status, body = await call(client, "POST", "/sessions/s1/source", {"url": "/no/such/file.mp4"})
    assert status == 422 and "cannot open" in body["error"]
    status, body = await call(client, "DELETE", "/sessions/s1/participants/ghost")
    assert status == 404
    status, body = await call(client, "DELETE", "/sessions/s1/recording")
    assert status == 404
    # the edge is still fine
    assert (await client.get("/health")).status == 200


async def test_viewer_offers_without_h264_or_garbled_are_refused(client: TestClient, aac_clip: Path) -> None:
    await call(client, "POST", "/sessions", {"session_id": "s1"})
    assert (await call(client, "POST", "/sessions/s1/source", {"url": str(aac_clip), "loop": True}))[0] == 200
    viewer = await viewer_offer()
    sdp = viewer.pc.localDescription.sdp
    vp8_only = "\r\n".join(
        line for line in sdp.split("\r\n") if "H264" not in line and "profile-level-id" not in line
    )
    status, body = await call(client, "POST", "/sessions/s1/viewers", {"participant_id": "p", "role": "resident", "sdp": vp8_only})
    assert status == 400 and "H.264" in body["error"]
    # a Constrained Baseline-only viewer cannot take a High profile source
    status, body = await call(client, "POST", "/sessions/s1/viewers", {"participant_id": "p", "role": "resident", "sdp": sdp})
    assert status == 400 and "cannot decode" in body["error"]
    garbled = sdp.replace("a=fingerprint:", "a=fingerprint:xx").replace("a=ice-ufrag", "a=ice-ufragx")
    status, body = await call(client, "POST", "/sessions/s1/viewers", {"participant_id": "p", "role": "resident", "sdp": as_high_profile_offer(garbled)})
    assert status == 400
    await viewer.close()


async def test_a_payload_type_that_is_not_a_number_is_a_400_that_says_so(client: TestClient, aac_clip: Path) -> None:
    await call(client, "POST", "/sessions", {"session_id": "s1"})
    await call(client, "POST", "/sessions", {"session_id": "s2"})
    assert (await call(client, "POST", "/sessions/s1/source", {"url": str(aac_clip), "loop": True}))[0] == 200
    viewer = await viewer_offer()
    sdp = as_high_profile_offer(viewer.pc.localDescription.sdp)
    pt = re.search(r"a=rtpmap:(\d+) H264/90000", sdp)
    assert pt
    for bad in (sdp.replace(f"a=rtpmap:{pt.group(1)} ", "a=rtpmap:abc ", 1), sdp.replace(f"a=fmtp:{pt.group(1)} ", "a=fmtp:9x ", 1)):
        for path in ("/sessions/s1/viewers", "/sessions/s2/publisher"):
            offer = {"participant_id": "p", "sdp": bad} | ({"role": "resident"} if "viewers" in path else {})
            status, body = await call(client, "POST", path, offer)
            assert status == 400, body
            assert "payload type" in body["error"] and "numbers from 0 to 127" in body["error"]
    await viewer.close()


async def test_a_viewer_end_to_end_with_stats_clock_metrics_webhooks_and_kick(
    client: TestClient, aac_clip: Path, hooks: tuple[Hooks, str]
) -> None:
    receiver, _ = hooks
    receiver.refuse_next = 1  # the first webhook is retried after a 503
    await call(client, "POST", "/sessions", {"session_id": "s1"})
    status, body = await call(client, "POST", "/sessions/s1/source", {"url": str(aac_clip), "loop": True})
    assert status == 200
    viewer = await viewer_offer()
    offer = {"participant_id": "alice", "role": "mentor", "sdp": as_high_profile_offer(viewer.pc.localDescription.sdp)}
    status, answer = await call(client, "POST", "/sessions/s1/viewers", offer)
    assert status == 200 and answer["type"] == "answer"
    await viewer_accept(viewer, answer["sdp"])
    await wait_for(lambda: len(viewer.frames("video")) > 10)

    status, stats = await call(client, "GET", "/sessions/s1/stats")
    assert status == 200
    (alice,) = stats["viewers"]
    assert alice["participant_id"] == "alice" and alice["packets_sent"] > 10 and alice["bytes_sent"] > 0
    assert alice["lag_ms"] is not None and alice["lag_ms"] < 200
    status, clock = await call(client, "GET", "/sessions/s1/clock")
    assert clock["video"]["clock_rate"] == 90000 and clock["video"]["ingest_time"] > time.time() - 5
    status, text = await call(client, "GET", "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["orstream_edge_viewers"].samples[0].value == 1
    assert families["orstream_edge_sessions"].samples[0].value == 1
    assert families["orstream_edge_packets_sent"].samples[0].value > 10  # counters: "_total" samples
    assert all(f.documentation for f in families.values()), "every metric has HELP text"
    assert "orstream_edge_process_resident_memory_bytes" in families  # process metrics too

    status, _ = await call(client, "DELETE", "/sessions/s1/participants/alice")
    assert status == 200
    await wait_for(lambda: viewer.pc.connectionState in ("closed", "failed") or viewer.pc.iceConnectionState in ("closed", "failed"), timeout=40)
    await wait_for(lambda: "viewer.left" in receiver.types())
    assert {"publisher.up", "viewer.joined", "viewer.left"} <= set(receiver.types())
    joined = next(e for e in receiver.events if e["type"] == "viewer.joined")
    assert joined["session_id"] == "s1" and joined["data"] == {"participant_id": "alice", "role": "mentor"}
    assert (await call(client, "DELETE", "/sessions/s1"))[0] == 200
    assert (await call(client, "GET", "/sessions/s1/stats"))[0] == 404
    await viewer.close()


async def test_whip_needs_a_token_for_that_session(client: TestClient, secret: str) -> None:
    await call(client, "POST", "/sessions", {"session_id": "s1"})
    response = await client.post("/whip/s1", data="v=0", headers={"Content-Type": "application/sdp"})
    assert response.status == 401
    other = whip_token_mint(secret=secret, session_id="s2", ttl=60)
    response = await client.post("/whip/s1", data="v=0", headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {other}"})
    assert response.status == 403
    expired = whip_token_mint(secret=secret, session_id="s1", ttl=-10)
    response = await client.post("/whip/s1", data="v=0", headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {expired}"})
    assert response.status == 403
    good = whip_token_mint(secret=secret, session_id="s1", ttl=60)
    response = await client.post("/whip/s1", data="v=0", headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {good}"})
    assert response.status == 400  # authorised, but not a session description


async def whip(client: TestClient, method: str, path: str, token: str, sdp: str = "") -> Any:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}
    return await client.request(method, path, data=sdp, headers=headers)


async def test_a_whip_token_acts_only_on_the_publisher_it_created_and_every_act_is_audited(
    client: TestClient, secret: str, ts_clip: Path, hooks: tuple[Hooks, str]
) -> None:
    receiver, _ = hooks
    await call(client, "POST", "/sessions", {"session_id": "s1"})
    console = await publisher_offer(str(ts_clip))
    status, answer = await call(client, "POST", "/sessions/s1/publisher", {"participant_id": "console", "sdp": console.pc.localDescription.sdp})
    assert status == 200
    await publisher_accept(console, answer["sdp"])
    mentor = await viewer_offer()
    await wait_for(lambda: "publisher.up" in receiver.types())
    offer = {"participant_id": "mentor", "role": "mentor", "sdp": as_high_profile_offer(mentor.pc.localDescription.sdp)}
    status, answer = await call(client, "POST", "/sessions/s1/viewers", offer)
    assert status == 200
    await viewer_accept(mentor, answer["sdp"])
    token = whip_token_mint(secret=secret, session_id="s1", ttl=600)
    obs = await publisher_offer(str(ts_clip))
    try:
        # The console publishes: a WHIP client cannot take its place, nor remove it or the mentor.
        response = await whip(client, "POST", "/whip/s1", token, obs.pc.localDescription.sdp)
        assert response.status == 409 and "another publisher" in (await response.json())["error"]
        for someone in ("console", "mentor"):
            response = await whip(client, "DELETE", f"/whip/s1/{someone}", token)
            assert response.status == 403 and "only the WHIP session it created" in (await response.json())["error"]
        status, stats = await call(client, "GET", "/sessions/s1/stats")
        assert stats["publisher"]["participant_id"] == "console" and [v["participant_id"] for v in stats["viewers"]] == ["mentor"]

        # Once the console is gone, the token publishes; another token cannot end that, its own can.
        assert (await call(client, "DELETE", "/sessions/s1/participants/console"))[0] == 200
        response = await whip(client, "POST", "/whip/s1", token, obs.pc.localDescription.sdp)
        assert response.status == 201
        resource = response.headers["Location"].rsplit("/", 1)[1]
        assert resource.startswith("whip-") and token not in response.headers["Location"]
        other = whip_token_mint(secret=secret, session_id="s1", ttl=600)
        assert (await whip(client, "DELETE", f"/whip/s1/{resource}", other)).status == 403
        assert (await whip(client, "DELETE", f"/whip/s1/{resource}", token)).status == 200
        assert (await call(client, "GET", "/sessions/s1/stats"))[1]["publisher"] is None
    finally:
        await obs.close()
        await console.close()
        await mentor.close()
    await wait_for(lambda: receiver.types().count("whip.delete") == 4)
    acts = [(e["type"], e["data"]["outcome"], e["data"]["reason"]) for e in receiver.events if e["type"].startswith("whip.")]
    assert acts == [
        ("whip.publish", "refused", "another publisher (the OR console or another WHIP client) is live in this session; it must stop first"),
        ("whip.delete", "refused", "a WHIP token can end only the WHIP session it created"),
        ("whip.delete", "refused", "a WHIP token can end only the WHIP session it created"),
        ("whip.publish", "allowed", "publishing"),
        ("whip.delete", "refused", "a WHIP token can end only the WHIP session it created"),
        ("whip.delete", "allowed", "ended"),
    ]
    whip_events = [e for e in receiver.events if e["type"].startswith("whip.")]
    assert {e["data"]["token"] for e in whip_events} == {whip_token_id(token), whip_token_id(other)}
    assert all(token not in json.dumps(e) and other not in json.dumps(e) for e in receiver.events)


def test_refused_whip_acts_are_reported_at_a_bounded_rate_with_the_count_left_out() -> None:
    webhooks = WebhookSender(url="", secret="s")
    audit = WhipAudit(webhooks, rate=0.0001, burst=5)
    for _ in range(100):
        audit.report("whip.publish", "s1", outcome="refused", reason="token refused: bad token", token="junk")
    assert len(webhooks.recent) == 5 and audit.unreported == 95
    audit.report("whip.publish", "s1", outcome="allowed", reason="publishing", token="good")
    assert len(webhooks.recent) == 6 and webhooks.recent[-1].data["refusals_not_reported_before"] == 95


def test_the_edge_never_imports_django() -> None:
    code = (
        "import sys\n"
        "import orstream.edge.api, orstream.edge.hub, orstream.edge.ingest, orstream.edge.send, orstream.edge.receive,"
        " orstream.edge.events, orstream.edge.config, orstream.edge.peer, orstream.edge.h264, orstream.edge.__main__\n"
        "assert 'django' not in sys.modules, sorted(m for m in sys.modules if m.startswith('django'))\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


async def test_recording_writes_segments_and_reports_them(
    client: TestClient, aac_clip: Path, hooks: tuple[Hooks, str], tmp_path: Path
) -> None:
    receiver, _ = hooks
    recording_id = "3f1c2a5e-8d7b-4c1e-9a2f-0b6d4e8c7a11"
    await call(client, "POST", "/sessions", {"session_id": "s1"})
    await call(client, "POST", "/sessions/s1/source", {"url": str(aac_clip), "loop": True})
    status, body = await call(client, "POST", "/sessions/s1/recording", {"recording_id": recording_id, "segment_seconds": 1})
    assert status == 201, body
    status, body = await call(client, "POST", "/sessions/s1/recording", {"recording_id": recording_id})
    assert status == 409
    await wait_for(lambda: "segment.closed" in receiver.types(), timeout=10)
    status, body = await call(client, "DELETE", "/sessions/s1/recording")
    assert status == 200
    await wait_for(lambda: "recording.stopped" in receiver.types())
    segments = [e["data"] for e in receiver.events if e["type"] == "segment.closed"]
    stopped = next(e["data"] for e in receiver.events if e["type"] == "recording.stopped")
    assert stopped["segments"] == len(segments) >= 2
    assert body["segments"] == len(segments), "the stop's reply counts them too, webhook or not"
    first = segments[0]
    assert first["recording_public_id"] == recording_id
    assert first["path"].startswith(recording_id + "/")
    assert (tmp_path / "spool" / first["path"]).stat().st_size == first["size"] > 0
    assert first["video_codec"] == "h264" and first["video_frames"] > 0


async def test_each_start_has_its_own_boot_id_announced_to_the_control_plane(
    secret: str, hooks: tuple[Hooks, str], tmp_path: Path
) -> None:
    """A restarted edge knows no session: "edge.started" with a fresh boot id tells the control
    plane to put its live sessions back."""
    receiver, url = hooks
    boots = []
    for _ in range(2):
        app = build(EdgeConfig(secret=secret, webhook_url=url, media_dir=tmp_path / "spool"))
        async with TestClient(TestServer(app)) as edge_client:
            health = await (await edge_client.get("/health")).json()
            announce_start(app)
            await wait_for(lambda: receiver.types().count("edge.started") == len(boots) + 1)
            boots.append(health["boot_id"])
    assert len(set(boots)) == 2
    announced = [e for e in receiver.events if e["type"] == "edge.started"]
    assert [e["data"]["boot_id"] for e in announced] == boots
    assert all(e["session_id"] == "" for e in announced)

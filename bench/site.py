"""``make security``, the site's part: a chat flood and a WebSocket fuzz at a running site while a
second participant goes on working.

Starts the site as it runs for real (``python -m orstream.serve``, daphne) on a fresh database
(the embedded default: SQLite in a temporary directory and the in-memory channel layer; or
PostgreSQL and Redis when ``--database-url`` and ``--redis-url`` are given), seeds one live
session through the services (``python -m bench.site seed``), then:

1. **flood**: a resident sends valid chat frames of the largest length allowed
   (``MAX_CHAT_CHARS``) as fast as the socket takes them, and reconnects each time the site cuts
   it off, for ``--flood-seconds``. Meanwhile a mentor draws five strokes a second and chats
   every 1.2 s, and times each message's round trip through the site (sent to its broadcast
   back). Figures: the site's RSS before, at the end of and after the flood; the mentor's p50 and
   p95 latency before and during it; frames sent, chat rows stored, closes by code.
2. **fuzz**: ``--frames`` mutated frames (valid messages of every type with fields dropped,
   retyped, nested, oversized; broken JSON; binary; unknown types; bad join tokens) over many
   connections, joined or not. Outcomes by error code and close code, the tracebacks in the
   site's log (0 expected), the site's health and whether the mentor stayed connected.

Deterministic for a seed, apart from timing. Used by tests/mentoring/test_flood.py;
``python -m bench.site`` prints a table and one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
FUZZ_PEOPLE = 40
STROKE = {"type": "stroke", "tool": "freehand", "color": "#ffeb3b", "points": [[0.1, 0.2], [0.3, 0.4]], "stroke_id": "s"}
VALID: list[dict[str, Any]] = [
    {"type": "chat", "text": "Look at the vessel on the left"},
    STROKE,
    {"type": "clear"},
    {"type": "talking", "talking": True},
    {"type": "ping"},
    {"type": "latency", "ms": 120},
    {"type": "clock"},
    {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", "media": "watch"},
    {"type": "join", "token": "x"},
]
WEIRD: list[Any] = [
    None, True, False, 0, -1, 1e308, -1e308, 2**64, "", " ", "\x00", "\udc80" * 3, "é" * 300, "a" * 3000,
    [], {}, [[0.5, 0.5]] * 3, [[2, 2]], [["a", "b"]], [[0.1]], {"$ne": 1}, "NaN", "v=0", "v=0\r\n" * 200,
]


# ------------------------------------------------------------------ the site and its data


def site_env(work: Path, port: int, database_url: str | None, redis_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "ORSTREAM_", "DJANGO_"))}
    env.update(
        PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", ORSTREAM_VAR_DIR=str(work / "var"),
        ORSTREAM_PUBLIC_URL=f"http://127.0.0.1:{port}", ALLOWED_HOSTS="127.0.0.1",
        # No edge: offers and clock requests get the site's "media server unreachable" answer.
        ORSTREAM_EDGE_URL="http://127.0.0.1:9", ORSTREAM_EDGE_SECRET="bench-site-edge-secret",
        DJANGO_SETTINGS_MODULE="orstream.settings", CELERY_TASK_ALWAYS_EAGER="true",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis_url:
        env["REDIS_URL"] = redis_url
        env["ORSTREAM_CHANNEL_PREFIX"] = f"bench-site-{os.getpid()}"
    return env


def seed() -> dict[str, Any]:
    """In a child process with the site's environment: one live, consented session, a mentor and
    a resident with their links. Prints them as JSON."""
    import django

    django.setup()
    from datetime import timedelta

    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.utils import timezone

    from consent import services as consent_services
    from mentoring import services

    call_command("migrate", verbosity=0)
    coordinator = User.objects.create_user("bench-coordinator", password=None)
    surgeon = User.objects.create_user("bench-surgeon", password=None)
    room = services.room_create(name=f"Bench OR {time.time_ns()}")
    start = timezone.now().replace(microsecond=0)
    session = services.session_schedule(
        room=room, procedure="Bench procedure", surgeon=surgeon, planned_start=start,
        planned_end=start + timedelta(hours=2), time_zone="UTC", created_by=coordinator, patient_ref="BENCH-0001",
    )
    purposes = ["record", "live_internal", "live_external", "archive_training", "research"]
    form = consent_services.consent_form_create(title="Bench consent", version="1", text="...", purposes=purposes)
    consent_services.consent_record(
        session=session, form=form, decisions={p: True for p in purposes}, obtained_by=coordinator, attestation="bench"
    )
    services.session_start(session=session, by=coordinator)
    tokens: dict[str, Any] = {}
    for role in ("mentor", "resident"):
        participant = services.participant_add(session=session, role=role, display_name=f"Bench {role}", by=coordinator)
        tokens[role] = services.join_token_mint(participant=participant)
    # The fuzz's own people, talking and listening roles: each may open a dozen connections a
    # minute (WS_JOINS_PER_MINUTE) and each connection takes only a few bad frames.
    tokens["fuzz"] = [
        services.join_token_mint(
            participant=services.participant_add(session=session, role=role, display_name=f"Fuzz {role} {n}", by=coordinator)
        )
        for n in range(FUZZ_PEOPLE // 2)
        for role in ("mentor", "resident")
    ]
    return {"session": str(session.public_id), "tokens": tokens}


def count(session_id: str) -> dict[str, int]:
    """In a child process: the chat rows and audit events the run left."""
    import django

    django.setup()
    from consent.models import AuditEvent
    from mentoring.models import Annotation

    return {
        "chat_rows": Annotation.objects.filter(session__public_id=session_id, kind="chat").count(),
        "annotation_rows": Annotation.objects.filter(session__public_id=session_id).count(),
        "audit_events": AuditEvent.objects.count(),
    }


def child(command: str, env: dict[str, str], *args: str) -> Any:
    result = subprocess.run(
        [sys.executable, "-m", "bench.site", command, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"bench.site {command} failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for process {pid}")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


# ------------------------------------------------------------------ the participants


class Mentor:
    """Draws and chats at a person's pace and times each message's round trip through the site."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.latencies: list[tuple[float, float]] = []  # (sent at, ms)
        self.closed: int | None = None
        self.invalid = 0  # messages a browser could not parse
        self.ws: Any = None

    async def run(self, http: aiohttp.ClientSession, url: str, origin: str, token: str, stop: asyncio.Event) -> None:
        async with http.ws_connect(url, origin=origin, max_msg_size=0) as ws:
            self.ws = ws
            await ws.send_json({"type": "join", "token": token})
            reader = asyncio.create_task(self.read(ws))
            n = 0
            try:
                while not stop.is_set() and not ws.closed:
                    n += 1
                    key = f"m-{n}"
                    self.sent[key] = time.monotonic()
                    if n % 6 == 0:
                        await ws.send_json({"type": "chat", "text": key})
                    else:
                        await ws.send_json({**STROKE, "stroke_id": key})
                    await asyncio.sleep(0.2)
            finally:
                self.closed = ws.close_code if ws.closed else None
                reader.cancel()

    async def read(self, ws: Any) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                data = strict_json(message.data)
            except ValueError:
                self.invalid += 1
                continue
            if data.get("type") == "annotation":
                key = data.get("stroke_id") or data.get("text")
                began = self.sent.pop(key, None) if isinstance(key, str) else None
                if began is not None:
                    self.latencies.append((began, (time.monotonic() - began) * 1000))


async def flooder(http: aiohttp.ClientSession, url: str, origin: str, token: str, until: float, figures: Counter[str]) -> None:
    """Valid chat frames at the largest allowed length, as fast as they go; back in at once when cut off."""
    frame = json.dumps({"type": "chat", "text": "x" * 2000})
    while time.monotonic() < until:
        try:
            async with http.ws_connect(url, origin=origin, max_msg_size=0) as ws:
                figures["connections"] += 1
                await ws.send_json({"type": "join", "token": token})
                drain = asyncio.create_task(drain_all(ws, figures))
                while not ws.closed and time.monotonic() < until:
                    await ws.send_str(frame)
                    figures["frames_sent"] += 1
                    await asyncio.sleep(0)
                await asyncio.wait_for(drain, timeout=5) if ws.closed else drain.cancel()
                if ws.close_code is not None:
                    figures[f"closed {ws.close_code}"] += 1
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as failure:
            figures[f"connection failed ({type(failure).__name__})"] += 1
            await asyncio.sleep(0.05)


def strict_json(text: str) -> Any:
    """JSON as a browser reads it: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


async def flood_alone(url: str, origin: str, token: str, seconds: float) -> dict[str, int]:
    figures = Counter[str]()
    async with aiohttp.ClientSession() as http:
        await flooder(http, url, origin, token, time.monotonic() + seconds, figures)
    return dict(figures)


async def drain_all(ws: Any, figures: Counter[str]) -> None:
    async for message in ws:
        if message.type == aiohttp.WSMsgType.TEXT:
            try:
                data = strict_json(message.data)
            except ValueError:
                figures["invalid JSON from the site"] += 1
                continue
            if data.get("type") == "error":
                figures[f"error {data.get('code')}"] += 1


# ------------------------------------------------------------------ the fuzz


def mutate(rng: random.Random, token: str) -> str | bytes:
    """One mutated frame: a valid message of some type, bent."""
    roll = rng.random()
    if roll < 0.05:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
    if roll < 0.12:
        text = json.dumps(rng.choice(VALID))
        cut = rng.randint(0, len(text))
        return text[:cut] + "".join(rng.choice("{}[]\",:\\") for _ in range(rng.randint(0, 5)))
    if roll < 0.16:
        depth = rng.choice([50, 500, 5000, 50000])
        return "[" * depth + "]" * depth if rng.random() < 0.5 else '{"type":' * depth + '"chat"' + "}" * depth
    if roll < 0.19:
        return json.dumps({"type": "chat", "text": "y" * rng.choice([2001, 16_000, 70_000])})
    message: dict[str, Any] = dict(rng.choice(VALID))
    if message["type"] == "join":
        message["token"] = rng.choice([token, token[:-2] + "zz", token + "a", "", None, 5, "a" * 9000])
    for _ in range(rng.randint(1, 3)):
        action = rng.random()
        keys = list(message)
        if action < 0.35 and keys:
            message[rng.choice(keys)] = rng.choice(WEIRD)
        elif action < 0.5 and keys:
            message.pop(rng.choice(keys))
        elif action < 0.7:
            message[rng.choice(["media_time", "points", "tool", "color", "text", "ms", "sdp", "media", "talking", "x"])] = rng.choice(WEIRD)
        elif action < 0.8:
            message["type"] = rng.choice(["chat ", "CHAT", "annotation", "welcome", "__init__", "on_chat", "", "stroke\x00", "join"])
        elif action < 0.9:
            message["media_time"] = rng.choice([float("nan"), float("inf"), -float("inf"), 1e300, "1.5", [1]])
        else:
            message = {"type": message.get("type"), "payload": message}
    try:
        return json.dumps(message, allow_nan=True)
    except (TypeError, ValueError):
        return json.dumps({"type": "chat", "text": repr(message)[:100]})


async def fuzz(
    http: aiohttp.ClientSession, url: str, origin: str, tokens: list[str], frames: int, seed: int, figures: Counter[str]
) -> int:
    """``frames`` mutated frames over connections of a few dozen each, most of them joined first,
    by each of ``tokens`` in turn."""
    rng = random.Random(seed)
    sent = 0
    while sent < frames:
        token = tokens[figures["connections"] % len(tokens)]
        try:
            async with http.ws_connect(url, origin=origin, max_msg_size=0) as ws:
                figures["connections"] += 1
                if rng.random() < 0.8:
                    await ws.send_json({"type": "join", "token": token})
                drain = asyncio.create_task(drain_all(ws, figures))
                for _ in range(rng.randint(5, 40)):
                    if ws.closed or sent >= frames:
                        break
                    frame = mutate(rng, token)
                    await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
                    sent += 1
                    await asyncio.sleep(rng.choice([0, 0, 0.001, 0.01]))
                await asyncio.sleep(0.05)
                await ws.close()
                await asyncio.wait_for(drain, timeout=5)
                figures[f"closed {ws.close_code}"] += 1
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as failure:
            figures[f"connection failed ({type(failure).__name__})"] += 1
    return sent


# ------------------------------------------------------------------ the run


def log_figures(log: Path) -> dict[str, int]:
    text = log.read_text(errors="replace")
    return {"log_lines": len(text.splitlines()), "tracebacks": len(re.findall(r"^Traceback \(most recent call last\)", text, re.M))}


async def drive(
    *, url: str, origin: str, data: dict[str, Any], pid: int, flood_seconds: float, frames: int, seed: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    ws_url = f"{url.replace('http', 'ws', 1)}/ws/sessions/{data['session']}/"
    # Figures from a shared machine mean little without its load: printed with them.
    result: dict[str, Any] = {"load_average_at_start": round(os.getloadavg()[0], 2)}
    async with aiohttp.ClientSession() as http:
        stop = asyncio.Event()
        mentor = Mentor()
        working = asyncio.create_task(mentor.run(http, ws_url, origin, data["tokens"]["mentor"], stop))
        await asyncio.sleep(5)  # the baseline: the mentor alone
        result["rss_before_mb"] = rss_mb(pid)
        flood_began = time.monotonic()
        say(f"flooding for {flood_seconds:g} s")
        # The flooder runs in a process of its own: on this process's loop it would delay the
        # mentor's own reads and stamps, and its figures would be the bench's, not the site's.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.site", "flood", ws_url, origin, data["tokens"]["resident"], str(flood_seconds),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate()
        flood = Counter[str](json.loads(out.decode().strip().splitlines()[-1]))
        flood_ended = time.monotonic()
        result["rss_after_flood_mb"] = rss_mb(pid)
        await asyncio.sleep(5)
        result["rss_settled_mb"] = rss_mb(pid)
        say(f"fuzzing with {frames} frames")
        fuzzed = Counter[str]()
        result["frames_fuzzed"] = await fuzz(http, ws_url, origin, data["tokens"]["fuzz"], frames, seed, fuzzed)
        result["rss_after_fuzz_mb"] = rss_mb(pid)
        await asyncio.sleep(1)
        stop.set()
        await asyncio.wait_for(working, timeout=10)
    before = [ms for at, ms in mentor.latencies if at < flood_began]
    during = [ms for at, ms in mentor.latencies if flood_began <= at < flood_ended]
    result.update(
        flood_seconds=round(flood_ended - flood_began, 1),
        flood=dict(sorted(flood.items())),
        fuzz=dict(sorted(fuzzed.items())),
        mentor_messages_before=len(before), mentor_p50_ms_before=percentile(before, 0.5), mentor_p95_ms_before=percentile(before, 0.95),
        mentor_messages_during=len(during), mentor_p50_ms_during=percentile(during, 0.5), mentor_p95_ms_during=percentile(during, 0.95),
        mentor_lost=len([k for k, t in mentor.sent.items() if t < time.monotonic() - 5]),
        mentor_stayed_connected=mentor.closed is None,
        mentor_invalid_json=mentor.invalid,
        mentor_mean_ms_all=round(statistics.fmean(ms for _, ms in mentor.latencies), 1) if mentor.latencies else None,
    )
    return result


def run(
    *, flood_seconds: float = 20, frames: int = 3000, seed: int = 1, work: Path | None = None,
    database_url: str | None = None, redis_url: str | None = None, say: Callable[[str], None] = print,
) -> dict[str, Any]:
    import socket

    with tempfile.TemporaryDirectory(prefix="orstream-site-bench-") as scratch:
        base = work or Path(scratch)
        (base / "var").mkdir(parents=True, exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        env = site_env(base, port, database_url, redis_url)
        data = child("seed", env)
        log = base / "site.log"
        with log.open("wb") as handle:
            site = subprocess.Popen(
                [sys.executable, "-m", "orstream.serve", "-b", "127.0.0.1", "-p", str(port), "orstream.asgi:application"],
                cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"{url}/healthz", timeout=2).close()
                    break
                except OSError:
                    if site.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the site did not start: {log.read_text()[-2000:]}") from None
                    time.sleep(0.2)
            result = asyncio.run(
                drive(url=url, origin=url, data=data, pid=site.pid, flood_seconds=flood_seconds, frames=frames, seed=seed, say=say)
            )
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=5).close()
                result["site_alive"] = site.poll() is None
            except OSError:
                result["site_alive"] = False
        finally:
            site.terminate()
            try:
                site.wait(timeout=10)
            except subprocess.TimeoutExpired:
                site.kill()
        result.update(child("count", env, data["session"]))
        result.update(log_figures(log))
        result["profile"] = "postgresql+redis" if database_url and redis_url else "embedded (sqlite, in-memory layer)"
        return result


def table(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"site ({r['profile']}), load average {r['load_average_at_start']} at the start",
            f"chat flood {r['flood_seconds']} s: {r['flood'].get('frames_sent', 0)} frames of 2,000 characters over "
            f"{r['flood'].get('connections', 0)} connections; outcomes {r['flood']}",
            f"  chat rows stored {r['chat_rows']} (all participants), site RSS {r['rss_before_mb']} MB before, "
            f"{r['rss_after_flood_mb']} MB after, {r['rss_settled_mb']} MB 5 s later",
            f"  mentor round trip p50/p95: {r['mentor_p50_ms_before']}/{r['mentor_p95_ms_before']} ms before "
            f"({r['mentor_messages_before']} messages), {r['mentor_p50_ms_during']}/{r['mentor_p95_ms_during']} ms during "
            f"({r['mentor_messages_during']}); lost {r['mentor_lost']}, stayed connected {r['mentor_stayed_connected']}, "
            f"invalid JSON received {r['mentor_invalid_json']}",
            f"websocket fuzz: {r['frames_fuzzed']} mutated frames; outcomes {r['fuzz']}",
            f"  site RSS after {r['rss_after_fuzz_mb']} MB; audit events {r['audit_events']}",
            f"site log: {r['log_lines']} lines, tracebacks {r['tracebacks']}; site alive {r['site_alive']}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["seed"]:
        print(json.dumps(seed()))
        return 0
    if argv[:1] == ["flood"]:
        url, origin, token, seconds = argv[1:5]
        print(json.dumps(asyncio.run(flood_alone(url, origin, token, float(seconds)))))
        return 0
    if argv[:1] == ["count"]:
        print(json.dumps(count(argv[1])))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.site", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--flood-seconds", type=float, default=20)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, help="keep the site's database and log here")
    parser.add_argument("--database-url", help="run the site on this PostgreSQL database (a scratch one: it is migrated)")
    parser.add_argument("--redis-url", help="and this Redis for its channel layer and cache")
    args = parser.parse_args(argv)
    result = run(
        flood_seconds=args.flood_seconds, frames=args.frames, seed=args.seed, work=args.work,
        database_url=args.database_url, redis_url=args.redis_url, say=lambda text: print(text, file=sys.stderr),
    )
    print(table(result))
    print(json.dumps({"security_site": result}, default=str))
    ok = result["site_alive"] and not result["tracebacks"] and result["mentor_stayed_connected"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

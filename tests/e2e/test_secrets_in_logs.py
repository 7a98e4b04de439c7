"""No secret in any log line of any process, in either profile.

Each test starts a whole stack the way it is run for real: the embedded default exactly as
`make run` does (migrate, seed_demo, the devserver starting the edge and the site), and the
production profile with the commands docker-compose.yml runs (the site, a Celery worker, an
edge) on PostgreSQL and Redis. A coordinator signs in, goes live, invites someone, calls in a
specialist and revokes a link; every participant's page is opened in Chromium and joins; the
API, its docs, the admin and the library are opened; a WHIP client knocks on the edge. Then
every line every process wrote is searched for each join token (and its signature alone), the
TURN credentials the pages received, the edge secret, the WHIP bearer, the coordinator's
password and the secret key.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

from mentoring.management.commands.seed_demo import DEMO_CLIP, DEMO_LINKS
from orstream.edge import demo, protocol

from .conftest import CHROMIUM, CHROMIUM_ARGS, free_port, stop, wait_for_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
JOIN = re.compile(r"https?://[^\s\"'<>]+/join/([^/\s\"'<>]+)/")


@dataclass
class Stack:
    url: str
    edge_url: str
    var: Path
    env: dict[str, str]
    logs: list[Path] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, name: str, command: list[str], *, wait: bool = False) -> subprocess.Popen[bytes]:
        log = self.var.parent / f"{name}.log"
        self.logs.append(log)
        with log.open("ab") as handle:
            process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT)
        if wait:
            assert process.wait(timeout=120) == 0, f"{' '.join(command)} failed: {log.read_text()[-2000:]}"
        else:
            self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop(process)

    def output(self) -> str:
        return "".join(log.read_text(errors="replace") for log in self.logs)


def base_env(tmp_path: Path) -> dict[str, str]:
    var = tmp_path / "var"
    var.mkdir()
    # A small clip: the devserver only generates its 4K clip when none is there.
    demo.generate(var / DEMO_CLIP, width=640, height=360, fps=30, seconds=2.0)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "CELERY_", "DJANGO_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        ORSTREAM_VAR_DIR=str(var),
        ORSTREAM_EDGE_SECRET=secrets.token_hex(16),
        ORSTREAM_TURN_URLS="turn:127.0.0.1:3478",
        ORSTREAM_TURN_SECRET=secrets.token_hex(16),
        LOG_LEVEL="DEBUG",
    )
    return env


def compose_command(service: str, **replace: str) -> list[str]:
    """The command docker-compose.yml runs for ``service``, with this interpreter and loopback."""
    command = list(COMPOSE["services"][service]["command"])
    command[:1] = [sys.executable] if command[0] == "python" else [sys.executable, "-m", command[0]]
    for flag, value in replace.items():
        option = {"bind": "-b", "port": "-p", "host": "--host", "edge_port": "--port"}[flag]
        command[command.index(option) + 1] = value
    return command


def embedded_stack(tmp_path: Path) -> Stack:
    env = base_env(tmp_path)
    port, edge_port = free_port(), free_port()
    env.update(PORT=str(port), EDGE_PORT=str(edge_port), ORSTREAM_PUBLIC_URL=f"http://127.0.0.1:{port}")
    stack = Stack(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{edge_port}", Path(env["ORSTREAM_VAR_DIR"]), env)
    # What `make run` runs, in its order.
    stack.run("make-run", [sys.executable, "manage.py", "migrate", "--noinput"], wait=True)
    stack.run("make-run", [sys.executable, "manage.py", "seed_demo"], wait=True)
    site = stack.run("make-run", [sys.executable, "-m", "orstream.devserver"])
    wait_for_port(port, site, timeout=60, what="devserver")
    return stack


def own_redis_db(url: str) -> str:
    """Another database of the same Redis, emptied: the session's own Celery worker (other journeys
    use it) must not take this stack's jobs, whose files it cannot see."""
    import redis

    parts = urllib.parse.urlsplit(url)
    other = parts._replace(path=f"/{(int(parts.path.strip('/') or 0) + 8) % 16}").geturl()
    redis.Redis.from_url(other).flushdb()
    return other


def production_stack(tmp_path: Path) -> Stack:
    env = base_env(tmp_path)
    db = settings.DATABASES["default"]
    user = f"{db['USER']}:{db['PASSWORD']}@" if db.get("PASSWORD") else f"{db['USER']}@" if db.get("USER") else ""
    port, edge_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    env.update(
        ORSTREAM_PROFILE="production",
        SECRET_KEY=secrets.token_urlsafe(40),
        DATABASE_URL=f"postgres://{user}{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        REDIS_URL=own_redis_db(os.environ["REDIS_URL"]),
        ORSTREAM_CHANNEL_PREFIX=f"secrets-{secrets.token_hex(4)}",
        ALLOWED_HOSTS="127.0.0.1",
        ORSTREAM_PUBLIC_URL=url,
        CSRF_TRUSTED_ORIGINS=url,
        ORSTREAM_EDGE_URL=f"http://127.0.0.1:{edge_port}",
        # Plain HTTP on loopback: no TLS terminator in front of the site here.
        SECURE_SSL_REDIRECT="false",
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        MEDIA_ROOT=str(tmp_path / "var" / "media"),
        ORSTREAM_EDGE_WEBHOOK_URL=f"{url}/edge/events/",
        ORSTREAM_EDGE_MEDIA_DIR=str(tmp_path / "var" / "media" / "live"),
    )
    stack = Stack(url, f"http://127.0.0.1:{edge_port}", Path(env["ORSTREAM_VAR_DIR"]), env)
    stack.run("seed", [sys.executable, "manage.py", "collectstatic", "--noinput"], wait=True)  # as the image does
    stack.run("seed", [sys.executable, "manage.py", "seed_demo"], wait=True)
    edge = stack.run("edge", compose_command("edge", host="127.0.0.1", edge_port=str(edge_port)))
    wait_for_port(edge_port, edge, what="edge")
    stack.run("worker", compose_command("worker"))
    web = stack.run("web", compose_command("web", bind="127.0.0.1", port=str(port)))
    wait_for_port(port, web, timeout=60, what="site")
    return stack


def new_page(browser: Any, seen: list[str]) -> Any:
    """A page in its own context that keeps every WebSocket frame it receives, and every
    Content-Security-Policy violation its pages hit (as a "csp:" line)."""
    page = browser.new_context().new_page()
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: seen.append(str(payload))))
    page.on("console", lambda m: seen.append(f"csp: {page.url}: {m.text}") if "Content Security Policy" in m.text else None)
    return page


def visit_everything(stack: Stack, browser: Any) -> list[str]:
    """Do what people do on every page; return the secrets they were given or used."""
    links = (stack.var / DEMO_LINKS).read_text()
    password = re.search(r"as coordinator / (\S+)", links).group(1)  # type: ignore[union-attr]
    tokens = JOIN.findall(links)
    assert len(tokens) == 5
    frames: list[str] = []
    began = time.monotonic()

    coordinator = new_page(browser, frames)
    coordinator.goto(f"{stack.url}/accounts/login/")
    coordinator.fill("input[name=username]", "coordinator")
    coordinator.fill("input[name=password]", password)
    coordinator.get_by_role("button", name="Sign in").click()
    coordinator.wait_for_url(re.compile(r".*/$"))
    coordinator.get_by_role("link", name=re.compile("Demo")).first.click()
    coordinator.get_by_role("button", name="Go live").click()
    coordinator.get_by_role("link", name="Open the live view").wait_for()
    detail = coordinator.url
    invite = coordinator.locator("form[action$='/participants/']")
    invite.locator("input[name=display_name]").fill("Dr Invited")
    invite.locator("input[name=email]").fill("invited@hospital.example")
    coordinator.get_by_role("button", name="Add and send link").click()
    tokens += JOIN.findall(coordinator.content())
    coordinator.locator("form[action$='/specialist/'] input[name=display_name]").fill("Dr Specialist")
    coordinator.get_by_role("button", name="Create one-time link").click()
    tokens += JOIN.findall(coordinator.content())
    assert len(tokens) == 7, "the invitation and the specialist link are shown once on the page"

    pages = []
    for token in tokens:
        page = new_page(browser, frames)
        page.goto(f"{stack.url}/join/{token}/")
        pages.append(page)
    print(f"{time.monotonic() - began:.1f} s: pages opened")
    for page in pages:
        page.wait_for_function("() => window.orstream && window.orstream.link.joined", timeout=30_000)
    pages[0].wait_for_timeout(3000)  # the console publishes, the viewers' offers go to the edge
    for page in pages:
        page.context.close()  # what they logged is written; two cores need not decode seven videos on

    for path in ["/", "/recordings/", "/admin/", "/api/sessions/", "/api/docs/", "/healthz"]:
        coordinator.goto(stack.url + path)
    assert coordinator.request.get(f"{stack.url}/api/schema/").ok
    coordinator.goto(detail)
    coordinator.get_by_role("link", name="Open the live view").click()
    coordinator.wait_for_timeout(2000)
    # A revoked link, an altered one and one from nowhere: each refused and logged.
    coordinator.goto(detail)
    coordinator.get_by_role("button", name="Revoke the links of Dr Invited").click()
    coordinator.wait_for_load_state()
    if coordinator.locator("#confirm-yes").count():
        coordinator.locator("#confirm-yes").click()
    coordinator.locator("tr", has_text="Dr Invited").locator(".revoked").wait_for()
    for token in (tokens[5], tokens[5][:-3] + "abc", "not-a-token"):
        new_page(browser, frames).goto(f"{stack.url}/join/{token}/")

    session_id = re.search(r"/sessions/([0-9a-f-]{36})/", detail).group(1)  # type: ignore[union-attr]
    whip = protocol.whip_token_mint(secret=stack.env["ORSTREAM_EDGE_SECRET"], session_id=session_id, ttl=60)
    for method in ("POST", "DELETE"):
        request = urllib.request.Request(
            f"{stack.edge_url}/whip/{session_id}" + ("/nobody" if method == "DELETE" else ""),
            data=b"v=0 junk" if method == "POST" else None,
            method=method,
            headers={"Authorization": f"Bearer {whip}", "Content-Type": "application/sdp"},
        )
        try:
            urllib.request.urlopen(request, timeout=5).close()
        except OSError:
            pass  # refused or not found: what matters is what the edge logged about it

    # The same pages hold the site's Content-Security-Policy in this profile (tests/e2e/test_csp.py).
    violations = [frame for frame in frames if frame.startswith("csp: ")]
    assert not violations, "\n".join(violations)
    turn = [server["credential"] for frame in frames if '"welcome"' in frame for server in json.loads(frame)["ice_servers"]]
    assert turn, "the pages received TURN credentials"
    signatures = [t.rsplit(":", 1)[-1] for t in tokens]
    return [*tokens, *signatures, *turn, whip, password, stack.env["ORSTREAM_EDGE_SECRET"],
            stack.env["ORSTREAM_TURN_SECRET"], stack.env.get("SECRET_KEY", "embedded-demo-key")]


def assert_no_secret_in(output: str, secrets_used: list[str]) -> None:
    assert "GET /join/<token>/" in output, "the access log is there, with the join path redacted"
    leaked = []
    for secret in secrets_used:
        for line in output.splitlines():
            if secret in line:
                leaked.append(f"{secret[:8]}... in: {line[:200]}")
                break
    assert not leaked, "\n".join(leaked)


def test_no_secret_reaches_the_logs_of_make_run(tmp_path, browser):
    assert CHROMIUM.exists() and CHROMIUM_ARGS
    began = time.monotonic()
    stack = embedded_stack(tmp_path)
    print(f"{time.monotonic() - began:.1f} s: make run is up")
    try:
        secrets_used = visit_everything(stack, browser)
    finally:
        stack.stop()
    assert_no_secret_in(stack.output(), secrets_used)


def test_no_secret_reaches_the_logs_of_the_production_stack(tmp_path, browser):
    stack = production_stack(tmp_path)
    try:
        secrets_used = visit_everything(stack, browser)
    finally:
        stack.stop()
    assert_no_secret_in(stack.output(), secrets_used)

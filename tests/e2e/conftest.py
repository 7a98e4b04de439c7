"""Real pages in real headless Chromium against the real ASGI app (daphne, Channels on Redis,
PostgreSQL) and, where media is involved, a real edge process.

The site runs in a subprocess on the test database, so the tests commit their data
(``django_db(transaction=True)``). Chromium is Debian's (/usr/bin/chromium), driven by Playwright
for Python; it is never downloaded. A missing browser fails these tests: it never skips them.

Journey fixtures (``embedded_site``: what `make run` gives; ``celery_worker`` and ``worker_site``:
the site on a real Celery worker) are in tests/e2e/stack.py, documented there.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hospital import servers as hospital_servers

from .stack import (  # noqa: F401
    EDGE_SECRET,
    Worker,
    celery_worker,
    database_url_for_subprocess,
    embedded_site,
    shared_file_env,
)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("ORSTREAM_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
]

# Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make between
# page steps are plain synchronous code all the same.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def browsers_yield_cpu(niceness: int = 10) -> int:
    """Lower the CPU priority of the Chromium processes this test process started; returns how many.

    In a hospital the site and the edge run on a server of their own and each viewer decodes on
    their own computer. Here every page shares the two cores with the site, and three pages
    decoding 4K leave the site a sliver of them. A test that times the site's reaction runs its
    browsers niced, so the servers get the cores first, as on their own machine; the pages still
    get every cycle the servers leave."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split at the last ')'.
        names[int(entry.name)] = stat[stat.index("(") + 1 : stat.rindex(")")]
        children.setdefault(int(stat[stat.rindex(")") + 2 :].split()[1]), []).append(int(entry.name))
    niced, todo = 0, list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        if "chrom" in names.get(pid, "") or "headless_shell" in names.get(pid, ""):
            try:
                os.setpriority(os.PRIO_PROCESS, pid, niceness)
                niced += 1
            except OSError:  # gone meanwhile
                pass
    return niced


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], *, timeout: float = 30, what: str = "server") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the {what} exited with code {process.returncode}; see its log under test-artifacts/")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the {what} did not listen on port {port} within {timeout} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class EdgeProcess:
    """``python -m orstream.edge`` on a fixed port, which a test may restart."""

    def __init__(self, port: int, webhook_url: str, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.webhook_url = webhook_url
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "ORSTREAM_EDGE_SECRET": EDGE_SECRET,
            "ORSTREAM_EDGE_WEBHOOK_URL": self.webhook_url,
            # The same spool as the site and this test process (settings.RECORDINGS_SPOOL_DIR).
            **shared_file_env(),
        }
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orstream.edge", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, self.process, what="edge")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None


class Site:
    def __init__(self, url: str, edge: EdgeProcess) -> None:
        self.url = url
        self.edge = edge

    def join_url(self, token: str) -> str:
        return f"{self.url}/join/{token}/"


def start_site(*, eager: bool, name: str) -> Iterator[Site]:
    """The ASGI site (daphne through runserver, which also serves the static files) on the test
    database, and an edge process it drives. Both log to test-artifacts/. With ``eager`` off the
    site's jobs go through Redis to a real worker (the ``celery_worker`` fixture)."""
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    if not os.environ.get("REDIS_URL"):
        raise pytest.UsageError("the browser tests need the Redis channel layer: set REDIS_URL")
    port, edge_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    edge = EdgeProcess(edge_port, f"{url}/edge/events/", artifacts / f"{name}-edge.log")
    env = {
        **os.environ,
        **shared_file_env(),
        "DATABASE_URL": database_url_for_subprocess(),
        "DEBUG": "true",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "ORSTREAM_PUBLIC_URL": url,
        "ORSTREAM_EDGE_URL": edge.url,
        "ORSTREAM_EDGE_SECRET": EDGE_SECRET,
        "CELERY_TASK_ALWAYS_EAGER": "true" if eager else "false",
        # The key the hospital tests' token endpoint knows this site's FHIR client by.
        "ORSTREAM_FHIR_PRIVATE_KEY": hospital_servers.client_key_pair()[0],
    }
    log = (artifacts / f"{name}-site.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process, what="site")
        edge.start()
        yield Site(url, edge)
    finally:
        edge.stop()
        stop(process)


@pytest.fixture(scope="session")
def site(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Site]:
    """The site with eager Celery (jobs run inside the site process), and its edge."""
    yield from start_site(eager=True, name="e2e")


@pytest.fixture(scope="session")
def worker_site(celery_worker: Worker) -> Iterator[Site]:  # noqa: F811
    """The site with its jobs on a real Celery worker (``celery_worker``), and its edge."""
    yield from start_site(eager=False, name="e2e-worker")


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    # One browser per test: Playwright's sync API holds an event loop in this thread while it
    # runs, which the asyncio tests that follow in the same run must not find there.
    # A missing browser is a failure of the environment, reported as such.
    # A test marked ``chromium_args("--flag", ...)`` gets a browser started with those flags too.
    assert CHROMIUM.exists(), f"Chromium is missing at {CHROMIUM}: run `make browser` (apt-get install chromium)"
    from playwright.sync_api import sync_playwright

    marker = request.node.get_closest_marker("chromium_args")
    args = CHROMIUM_ARGS + (list(marker.args) if marker else [])
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """open_page(url, width=1280, height=720): a page in its own browser context (its own person)."""
    contexts: list[Any] = []

    def opener(url: str, *, width: int = 1280, height: int = 720) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        who = f"page {len(contexts)}"
        page.on("console", lambda message: print(f"{time.monotonic():.1f} [{who} console] {message.text}"))
        if os.environ.get("E2E_DEBUG"):
            context.add_init_script("window.ORSTREAM_DEBUG = true")
        page.on("pageerror", lambda error: print(f"[page error] {error}"))
        page.goto(url)
        return page

    yield opener
    for context in contexts:
        context.close()


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def off_loop(function: Any, /, **kwargs: Any) -> Any:
    """Call a service that broadcasts (async_to_sync) from a thread without Playwright's loop."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def run() -> Any:
        try:
            return function(**kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()

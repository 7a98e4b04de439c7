"""The whole stack for journey tests, started the way people start it.

Fixtures (registered in tests/e2e/conftest.py, so any e2e test can ask for them):

``embedded_site``
    What ``make run`` gives, started the way the Makefile starts it: ``manage.py migrate``,
    ``manage.py seed_demo``, then ``python -m orstream.devserver`` (which starts the edge itself),
    with no DATABASE_URL, REDIS_URL or CELERY_TASK_ALWAYS_EAGER: SQLite under a fresh temporary
    ORSTREAM_VAR_DIR, the in-memory channel layer, eager Celery. Free ports for PORT and EDGE_PORT.
    The 4K demo clip is generated once into test-artifacts/cache/ and linked into each var dir.
    ORSTREAM_EXPORT_DESTINATIONS is ``<var dir>/exports`` (``site.export_dir``). The fixture
    yields an ``EmbeddedSite``: ``url``, ``edge_url``, ``var_dir``, ``username``/``password``
    (the coordinator seed_demo wrote to var/demo-links.txt), ``links`` (role label -> join URL, as written, e.g.
    ``links["Mentor"]``, ``links["Surgeon / OR console"]``), ``process`` (the devserver), ``log`` (its
    output), ``manage(*args)`` (a manage.py command on the same database, e.g.
    ``site.manage("audit_verify")``), ``shell(code)`` (``manage.py shell -c``: prints become the
    returned text) and ``children()`` (pids the devserver started: the site, the edge, the scheduler).

``celery_worker``
    A real ``celery -A orstream.celery worker`` subprocess (solo pool) on the test PostgreSQL and
    Redis, with the test process's MEDIA_ROOT and RECORDINGS_SPOOL_DIR. Yields a ``Worker``
    (``process``, ``log``, ``kill()``, ``start()`` to start another after a kill). Session-scoped.

``worker_site``
    Like ``site`` (daphne via runserver on the test PostgreSQL, Channels on Redis, a real edge) but
    with CELERY_TASK_ALWAYS_EAGER=false: its jobs go through Redis to ``celery_worker``.

Everything logs under test-artifacts/. These start real processes: run them under the shared lock
(``flock /tmp/orstream-heavy.lock ...``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EDGE_SECRET = "e2e-edge-secret"  # what the sites, the worker and the edges of these tests share
ARTIFACTS = ROOT / "test-artifacts"
CACHE = ARTIFACTS / "cache"
# What orstream.devserver generates, with the same parameters; made once per machine.
DEMO_CLIP_PARAMS = {"width": 3840, "height": 2160, "fps": 30, "seconds": 10.0}
# Variables that would turn the embedded default into something else.
NOT_EMBEDDED = (
    "DATABASE_URL", "REDIS_URL", "CELERY_TASK_ALWAYS_EAGER", "ORSTREAM_PROFILE", "MEDIA_ROOT",
    "ORSTREAM_RECORDINGS_SPOOL_DIR", "ORSTREAM_EDGE_URL", "ORSTREAM_EDGE_SECRET", "ORSTREAM_PUBLIC_URL",
    "ORSTREAM_EXPORT_DESTINATIONS", "DJANGO_ALLOW_ASYNC_UNSAFE",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_url(url: str, process: subprocess.Popen[bytes], *, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the {what} exited with code {process.returncode}; see {log}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers: up
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the {what} did not answer {url} within {timeout} s; see {log}")


def stop_process(process: subprocess.Popen[bytes], *, timeout: float = 15) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def demo_clip() -> Path:
    """The devserver's 4K demo clip, generated once into test-artifacts/cache/ (atomically)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    clip = CACHE / "demo-4k.mp4"
    if not clip.exists():
        from orstream.edge import demo

        partial = CACHE / f".demo-4k.{os.getpid()}.mp4"
        demo.generate(partial, **DEMO_CLIP_PARAMS)  # type: ignore[arg-type]
        partial.replace(clip)
    return clip


def embedded_env(var_dir: Path, port: int, edge_port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NOT_EMBEDDED}
    env.update({
        "ORSTREAM_VAR_DIR": str(var_dir),
        "PORT": str(port),
        "EDGE_PORT": str(edge_port),
        # The Makefile's `run: export ORSTREAM_PUBLIC_URL ?= http://127.0.0.1:$(PORT)`.
        "ORSTREAM_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "ORSTREAM_EXPORT_DESTINATIONS": str(var_dir / "exports"),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


@dataclass
class EmbeddedSite:
    url: str
    edge_url: str
    var_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    username: str = "coordinator"
    password: str = ""
    links: dict[str, str] = field(default_factory=dict)

    @property
    def export_dir(self) -> Path:
        return self.var_dir / "exports"

    def manage(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``manage.py <args>`` on this site's database and settings."""
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
            check=check, timeout=timeout,
        )

    def shell(self, code: str) -> str:
        """Run ``code`` in ``manage.py shell -c`` on this site's database; returns what it printed."""
        return self.manage("shell", "--no-imports", "-c", code).stdout

    def children(self) -> list[int]:
        """Pids of the processes the devserver started (the site, the edge, the job scheduler), oldest first."""
        pids: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            pids += [int(p) for p in task.read_text().split()]
        return sorted(pids)


def parse_seed_output(text: str) -> tuple[str, dict[str, str]]:
    """(coordinator password, {role label: join URL}) from what ``manage.py seed_demo`` writes."""
    found = re.search(r"as coordinator / (\S+)", text)
    if found is None:
        raise AssertionError(f"seed_demo wrote no coordinator password:\n{text}")
    links = {m["role"].strip(): m["url"] for m in re.finditer(r"^ {4}(?P<role>\S.*?)\s+(?P<url>https?://\S+/join/\S+)$", text, re.M)}
    return found[1], links


def start_embedded_site(var_dir: Path, *, log_name: str = "e2e-embedded", **extra_env: str) -> EmbeddedSite:
    """Migrate, seed and start ``python -m orstream.devserver`` on ``var_dir``; see the module doc."""
    ARTIFACTS.mkdir(exist_ok=True)
    var_dir.mkdir(parents=True, exist_ok=True)
    (var_dir / "exports").mkdir(exist_ok=True)
    clip = var_dir / "demo-4k.mp4"
    if not clip.exists():
        clip.symlink_to(demo_clip())
    port, edge_port = free_port(), free_port()
    env = embedded_env(var_dir, port, edge_port, **extra_env)
    log = ARTIFACTS / f"{log_name}.log"
    for step in (["migrate", "--noinput"], ["seed_demo"]):
        done = subprocess.run([sys.executable, "manage.py", *step], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        with log.open("a") as handle:
            handle.write(done.stdout + done.stderr)
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(step)} failed ({done.returncode}): {done.stderr[-2000:]}")
    # seed_demo keeps the password and the links (secrets) in a file only its owner reads.
    from mentoring.management.commands.seed_demo import DEMO_LINKS

    password, links = parse_seed_output((var_dir / DEMO_LINKS).read_text())
    handle = log.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "orstream.devserver"], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    site = EmbeddedSite(
        url=f"http://127.0.0.1:{port}", edge_url=f"http://127.0.0.1:{edge_port}", var_dir=var_dir, env=env,
        process=process, log=log, password=password, links=links,
    )
    try:
        wait_for_url(f"{site.edge_url}/health", process, timeout=60, what="edge (devserver)", log=log)
        wait_for_url(f"{site.url}/accounts/login/", process, timeout=60, what="site (devserver)", log=log)
    except BaseException:
        stop_embedded_site(site)
        raise
    return site


def go_live_as_coordinator(page: Any, site: EmbeddedSite) -> None:
    """Sign in as the seeded coordinator on ``page`` and take the demo session live."""
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{site.url}/accounts/login/")
    page.get_by_label("User name").fill(site.username)
    page.get_by_label("Password").fill(site.password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Demo: microsurgical anastomosis").first.click()
    page.get_by_role("button", name="Go live").click()


def stop_embedded_site(site: EmbeddedSite) -> None:
    stop_process(site.process, timeout=20)
    # Whatever the devserver left behind (it is its own process group).
    try:
        os.killpg(site.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def embedded_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedSite]:
    """``make run`` in a fresh var dir; see the module docstring."""
    site = start_embedded_site(tmp_path_factory.mktemp("embedded-var"))
    try:
        yield site
    finally:
        stop_embedded_site(site)


def database_url_for_subprocess() -> str:
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor != "postgresql":
        raise pytest.UsageError("a real worker shares the database with this process: set DATABASE_URL to PostgreSQL")
    user = f"{db['USER']}:{db['PASSWORD']}@" if db.get("PASSWORD") else f"{db['USER']}@" if db.get("USER") else ""
    return f"postgres://{user}{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def shared_file_env() -> dict[str, str]:
    """MEDIA_ROOT and the recordings spool of this test process, and one allowed export folder
    (test-artifacts/e2e-exports), for every process of the stack (site, edge, worker)."""
    from django.conf import settings

    return {
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "ORSTREAM_RECORDINGS_SPOOL_DIR": str(settings.RECORDINGS_SPOOL_DIR),
        "ORSTREAM_EXPORT_DESTINATIONS": str(ARTIFACTS / "e2e-exports"),
    }


class Worker:
    """``celery -A orstream.celery worker`` on the test PostgreSQL and Redis."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "orstream.celery", "worker", "--pool=solo", "--concurrency=1",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO"],
            cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while b"ready." not in self.log.read_bytes()[-20000:]:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Celery worker exited with code {self.process.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker was not ready within 60 s; see {self.log}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@pytest.fixture(scope="session")
def celery_worker(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Worker]:
    """A real Celery worker on the test database and Redis; see the module docstring."""
    from django.conf import settings

    if not settings.REDIS_URL:
        raise pytest.UsageError("a real worker needs the Redis broker: set REDIS_URL")
    ARTIFACTS.mkdir(exist_ok=True)
    env = {
        **os.environ, **shared_file_env(),
        "DATABASE_URL": database_url_for_subprocess(),
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "PYTHONPATH": str(ROOT),
        # The worker calls the edges too (a withdrawal's effects): it signs with their secret.
        "ORSTREAM_EDGE_SECRET": EDGE_SECRET,
        # This worker takes the default queue only; archive encodes go to workers of their own
        # (tests/recordings/test_archive_worker.py), and none is left queued for a later run.
        "ORSTREAM_ARCHIVE_AUTO": "false",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    from orstream.celery import app

    app.control.purge()  # nothing left over from an earlier run
    worker = Worker(env, ARTIFACTS / "e2e-worker.log")
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()

"""`make run`: the embedded demo. Starts the site (daphne), one edge on 127.0.0.1 and the job
scheduler, supervises the edge and the scheduler, makes the demo clip once in the background, and
stops everything together.

- The site answers at once; the first time, the 4K demo clip is made meanwhile (the room's feed
  shows as being prepared) and the demo feed starts by itself in live sessions once it is ready.
- An edge that exits while the demo runs (a crash, ``kill -9``) is started again within
  ``EDGE_RESTART_WITHIN`` seconds; the site stays up and re-attaches the live sessions when the
  new edge announces itself ("edge.started"). A site that exits stops the demo.
- The scheduler is Celery beat on the database schedule, as in production: the finalize sweep
  every minute, retention every night. The embedded default has no worker, so beat runs each due
  job itself (eager mode); a recording whose edge notice was lost is still finalized.

Not for production: there the site, workers and edges are separate services, each restarted by
its own supervisor (docker-compose.yml).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

# A crashed edge is running again within this many seconds (the first restart is immediate; an
# edge that keeps dying at start-up is retried at this pace rather than in a tight loop).
EDGE_RESTART_WITHIN = 2.0
# An edge that ran this long before it exited counts as having started well.
EDGE_STABLE_AFTER = 10.0
POLL = 0.1
DEMO_SECONDS = 10.0


def wait_for(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return True
        except OSError:
            time.sleep(0.2)
    return False


class Supervisor:
    """Keeps one process (the edge, the scheduler) running: started again at once when it exits,
    until ``stop``."""

    def __init__(self, command: Sequence[str], env: dict[str, str], *, name: str = "media edge") -> None:
        self.name = name
        self.command = list(command)
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restarts = 0
        self.quick_exits = 0
        self.next_start = 0.0

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, env=self.env)
        self.started_at = time.monotonic()

    def check(self) -> None:
        """Called every POLL seconds: restart the process if it has exited."""
        process = self.process
        now = time.monotonic()
        if process is None:
            if now >= self.next_start:
                self.start()
            return
        code = process.poll()
        if code is None:
            return
        ran = now - self.started_at
        self.quick_exits = 0 if ran >= EDGE_STABLE_AFTER else self.quick_exits + 1
        self.restarts += 1
        self.process = None
        # Immediately after a crash of a running process; at EDGE_RESTART_WITHIN intervals when it
        # keeps failing at start-up (a port in use, a broken configuration).
        delay = 0.0 if self.quick_exits <= 1 else EDGE_RESTART_WITHIN * 0.9
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        print(f"orstream: the {self.name} stopped ({how}); starting it again", file=sys.stderr, flush=True)
        self.next_start = now + delay
        if delay == 0.0:
            self.start()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


class DemoClip:
    """Makes the demo clip in a process of its own, under a temporary name renamed when complete
    (mentoring.services.room_feed_state reads that name as "being prepared")."""

    def __init__(self, path: Path, feed_preparing_suffix: str, *, options: Sequence[str] = ()) -> None:
        self.path = path
        self.part = path.with_name(path.name + feed_preparing_suffix)
        self.options = ["--seconds", str(DEMO_SECONDS), *options]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.part.unlink(missing_ok=True)  # left by an interrupted run
        self.part.touch()
        print(f"orstream: making the demo clip ({self.path.name}: 3840x2160, 30 fps, H.264 + Opus tone) in the background; "
              "the demo picture starts by itself when it is ready", flush=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orstream.edge.demo", str(self.part), *self.options],
            # Below the site and the edge: pages and live video keep their share of the CPU.
            preexec_fn=lambda: os.nice(10),
        )

    def finished(self) -> bool | None:
        """True once when the clip is complete, False if making it failed, None meanwhile."""
        if self.process is None:
            return None
        code = self.process.poll()
        if code is None:
            return None
        self.process = None
        if code != 0:
            self.part.unlink(missing_ok=True)
            print(f"orstream: the demo clip could not be made (exit code {code}); the demo room has no picture",
                  file=sys.stderr, flush=True)
            return False
        os.replace(self.part, self.path)
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        if self.process is not None:
            self.part.unlink(missing_ok=True)


def demo_feed_start(clip: Path) -> None:
    """Start the now-ready demo feed in the live sessions of the rooms it feeds."""
    from mentoring import services
    from mentoring.models import OperatingRoom

    for room in OperatingRoom.objects.filter(ingest_url=str(clip)):
        started = services.room_feed_start(room=room)
        if started:
            print(f"orstream: the demo picture is ready and playing in {room.name}", flush=True)
    print("orstream: the demo clip is ready", flush=True)


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orstream.settings")
    import django

    django.setup()
    from django.conf import settings

    from mentoring.management.commands.seed_demo import DEMO_CLIP
    from mentoring.services import FEED_PREPARING_SUFFIX

    port = int(os.environ.get("PORT", "8000"))
    edge_port = int(os.environ.get("EDGE_PORT", "8010"))
    clip = DemoClip(Path(settings.VAR_DIR) / DEMO_CLIP, FEED_PREPARING_SUFFIX)
    env = {
        **os.environ,
        "ORSTREAM_EDGE_SECRET": settings.EDGE_SECRET,
        "ORSTREAM_EDGE_WEBHOOK_URL": f"http://127.0.0.1:{port}/edge/events/",
        # The edge writes segments where the site reads them: one setting for both.
        "ORSTREAM_RECORDINGS_SPOOL_DIR": str(settings.RECORDINGS_SPOOL_DIR),
        "ORSTREAM_EDGE_URL": f"http://127.0.0.1:{edge_port}",
    }
    site = subprocess.Popen(
        [sys.executable, "-m", "orstream.serve", "-b", "127.0.0.1", "-p", str(port), "orstream.asgi:application"], env=env
    )
    edge = Supervisor([sys.executable, "-m", "orstream.edge", "--host", "127.0.0.1", "--port", str(edge_port)], env)
    edge.start()
    beat = Supervisor([sys.executable, "-m", "celery", "-A", "orstream.celery", "beat", "--loglevel=INFO"], env, name="job scheduler")
    beat.start()
    if not clip.path.exists():
        clip.start()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    code = 0
    try:
        if wait_for(f"http://127.0.0.1:{port}/healthz", 30):
            print(f"orstream is running at http://127.0.0.1:{port}/ (edge on 127.0.0.1:{edge_port}); Ctrl-C stops it", flush=True)
        while not stopping:
            if site.poll() is not None:
                print(f"orstream: the site stopped (exit code {site.returncode}); stopping the demo", file=sys.stderr, flush=True)
                code = 1
                break
            edge.check()
            beat.check()
            if clip.finished():
                demo_feed_start(clip.path)
            time.sleep(POLL)
    except KeyboardInterrupt:
        pass
    finally:
        clip.stop()
        beat.stop()
        edge.stop()
        if site.poll() is None:
            site.terminate()
        try:
            site.wait(timeout=10)
        except subprocess.TimeoutExpired:
            site.kill()
    return code


if __name__ == "__main__":
    sys.exit(main())

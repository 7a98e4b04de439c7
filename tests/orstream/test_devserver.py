"""`make run`'s supervision: a crashed edge is started again at once, an edge that keeps failing
is retried at a bounded pace, and the demo clip appears under its name only once complete.
(The whole demo, site and edge together, is driven in tests/e2e/test_journey_restart.py.)"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from orstream.devserver import EDGE_RESTART_WITHIN, DemoClip, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
FAILING = [sys.executable, "-c", "raise SystemExit(3)"]


def run_checks(supervisor: Supervisor, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        supervisor.check()
        time.sleep(0.05)


def test_a_killed_edge_is_started_again_at_once():
    supervisor = Supervisor(SLEEPER, dict(os.environ))
    supervisor.start()
    try:
        first = supervisor.process
        assert first is not None
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        killed = time.monotonic()
        supervisor.check()
        assert supervisor.process is not None and supervisor.process.pid != first.pid
        assert supervisor.process.poll() is None
        assert time.monotonic() - killed < EDGE_RESTART_WITHIN
        assert supervisor.restarts == 1
    finally:
        supervisor.stop()
    assert supervisor.process is None


def test_an_edge_that_keeps_failing_at_start_up_is_retried_at_a_bounded_pace():
    supervisor = Supervisor(FAILING, dict(os.environ))
    supervisor.start()
    try:
        run_checks(supervisor, 4.5)
    finally:
        supervisor.stop()
    # Not a tight loop (that would be dozens), yet never longer than EDGE_RESTART_WITHIN apart.
    assert 2 <= supervisor.restarts <= 6


def test_the_demo_clip_is_made_under_a_temporary_name_then_renamed(tmp_path: Path):
    clip = DemoClip(tmp_path / "demo.mp4", ".part", options=["--width", "320", "--height", "240", "--seconds", "1"])
    clip.start()
    assert clip.part.exists() and not clip.path.exists(), "a half-written clip is never taken for the feed"
    deadline = time.monotonic() + 120
    done = None
    while done is None and time.monotonic() < deadline:
        done = clip.finished()
        time.sleep(0.1)
    assert done is True
    assert clip.path.stat().st_size > 0 and not clip.part.exists()
    assert clip.finished() is None, "reported once"

"""`make run`: the embedded demo. Generates the demo clip once, starts one edge on 127.0.0.1 and
the site (daphne) beside it, and stops both together.

Not for production: there the site, workers and edges are separate services (docker-compose.yml).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def wait_for(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return True
        except OSError:
            time.sleep(0.2)
    return False


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orstream.settings")
    import django

    django.setup()
    from django.conf import settings

    from mentoring.management.commands.seed_demo import DEMO_CLIP
    from orstream.edge import demo

    port = int(os.environ.get("PORT", "8000"))
    edge_port = int(os.environ.get("EDGE_PORT", "8010"))
    clip = Path(settings.VAR_DIR) / DEMO_CLIP
    if not clip.exists():
        print(f"generating the demo clip ({clip.name}: 3840x2160, 30 fps, H.264 + Opus tone), once...", flush=True)
        demo.generate(clip, width=3840, height=2160, fps=30, seconds=20.0)
    env = {
        **os.environ,
        "ORSTREAM_EDGE_SECRET": settings.EDGE_SECRET,
        "ORSTREAM_EDGE_WEBHOOK_URL": f"http://127.0.0.1:{port}/edge/events/",
        # The edge writes segments where the site reads them: one setting for both.
        "ORSTREAM_RECORDINGS_SPOOL_DIR": str(settings.RECORDINGS_SPOOL_DIR),
        "ORSTREAM_EDGE_URL": f"http://127.0.0.1:{edge_port}",
    }
    edge = subprocess.Popen([sys.executable, "-m", "orstream.edge", "--host", "127.0.0.1", "--port", str(edge_port)], env=env)
    if not wait_for(f"http://127.0.0.1:{edge_port}/health", 15):
        edge.terminate()
        print("the edge did not start: see its output above", file=sys.stderr)
        return 1
    site = subprocess.Popen(
        [sys.executable, "-m", "orstream.serve", "-b", "127.0.0.1", "-p", str(port), "orstream.asgi:application"], env=env
    )
    print(f"orstream is running at http://127.0.0.1:{port}/ (edge on 127.0.0.1:{edge_port}); Ctrl-C stops both", flush=True)

    def stop(*_: object) -> None:
        for process in (site, edge):
            if process.poll() is None:
                process.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        while site.poll() is None and edge.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop()
        for process in (site, edge):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The audit chain on the embedded default (SQLite) with several writers at once, as the devserver
has them: the withdrawal's request, the consumers and the edge's webhooks. Every event is written
and the chain holds; no writer is refused with "database is locked"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

WRITERS = r"""
import threading
import django
django.setup()
from django.core.management import call_command
from django.db import connection
from consent import services
from consent.audit import audit_head, audit_record, audit_verify

call_command("migrate", "consent", verbosity=0)
errors, start = [], threading.Barrier(6)

def writer(n):
    start.wait()
    try:
        for i in range(40):
            audit_record(action="test.write", actor=f"writer:{n}", target=str(i))
    except Exception as error:
        errors.append(repr(error))
    finally:
        connection.close()

threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("errors", errors[:3])
print("events", audit_head()[0])
print("chain", audit_verify())
"""


def test_concurrent_audit_writers_on_the_embedded_database_all_succeed(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_TASK_ALWAYS_EAGER")}
    env = {**clean, "ORSTREAM_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "orstream.settings", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", WRITERS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    assert lines["errors"] == "[]"
    assert lines["events"] == "240"
    assert lines["chain"] == "None"

"""The journey fixtures themselves: `make run`'s embedded site answers as printed, a real worker
takes jobs from Redis."""

from __future__ import annotations

import time
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e]


def test_the_embedded_site_runs_as_make_run_prints_it(embedded_site: Any, open_page: Any) -> None:
    assert {"Mentor", "Surgeon / OR console", "Conference-room display", "Coordinator"} <= set(embedded_site.links), embedded_site.links
    page = open_page(f"{embedded_site.url}/accounts/login/")
    page.get_by_label("User name").fill(embedded_site.username)
    page.get_by_label("Password").fill(embedded_site.password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Demo: microsurgical anastomosis").first.wait_for(timeout=15_000)
    # SQLite under the var dir, as `make run` gives; the devserver started the site, the edge and
    # the job scheduler.
    assert (embedded_site.var_dir / "orstream.sqlite3").exists()
    assert len(embedded_site.children()) == 3
    assert "sqlite" in embedded_site.shell("from django.db import connection; print(connection.vendor)")


@pytest.mark.django_db(transaction=True)
@pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored")
def test_the_celery_worker_runs_jobs_sent_through_redis(celery_worker: Any) -> None:
    from orstream.celery import app

    app.send_task("recordings.tasks.recording_sweep")
    deadline = time.monotonic() + 60
    while b"recordings.tasks.recording_sweep" not in celery_worker.log.read_bytes() or b"succeeded" not in celery_worker.log.read_bytes():
        assert time.monotonic() < deadline, "the worker did not run the job within 60 s"
        time.sleep(0.2)

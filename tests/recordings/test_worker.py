"""Jobs on a real Celery worker (Redis broker, PostgreSQL) killed with SIGKILL half-way: an erasure
stays marked erasing and running it again finishes it; an archive killed between a save and its
row update, run again, overwrites its own copy at the same key and finishes cleanly."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.utils import timezone

from consent.audit import audit_verify
from consent.models import AuditEvent
from recordings.models import Recording, Segment

ROOT = Path(__file__).resolve().parents[2]
FILES = 80
PAUSE = 0.1  # seconds between files: 8 s for the whole erasure, time enough to kill it half-way

pytestmark = [
    # Committed rows, so the worker (another process) sees them. No serialized rollback: reloading
    # the migrations' rows collides with the content types an earlier transactional test's flush
    # recreated, and pytest-django runs every non-transactional test (which need them) first anyway.
    pytest.mark.django_db(transaction=True),
    # send_task always goes to the broker, which is the point here, even when the suite runs eager.
    pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored"),
]


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def worker_env(settings: Any, **extra: str) -> dict[str, str]:
    """The environment of a real worker on this test's database, broker, storage and spool."""
    if not django_settings.REDIS_URL or connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)")
    db = connection.settings_dict
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "ORSTREAM_RECORDINGS_SPOOL_DIR": str(settings.RECORDINGS_SPOOL_DIR),
        "PYTHONPATH": str(ROOT),
        **extra,
    }


@pytest.fixture
def start_worker(tmp_path: Path, settings: Any) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    env = worker_env(settings, ORSTREAM_RECORDINGS_ERASE_PAUSE_SECONDS=str(PAUSE))
    workers: list[subprocess.Popen[bytes]] = []
    log = (tmp_path / "worker.log").open("ab")

    def start() -> subprocess.Popen[bytes]:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "orstream.celery", "worker", "--pool=solo", "--concurrency=1",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        workers.append(worker)
        return worker

    from orstream.celery import app

    app.control.purge()
    yield start
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
        worker.wait(timeout=10)
    log.close()


@pytest.fixture
def big_recording(session: Any, bob: Any, tmp_path: Path, settings: Any) -> Recording:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RECORDINGS_SPOOL_DIR = tmp_path / "spool"
    recording = Recording.objects.create(session=session, started_by=bob, status=Recording.Status.AVAILABLE)
    for index in range(FILES):
        key = default_storage.save(f"recordings/{recording.prefix}/seg-{index:05d}.mp4", ContentFile(b"\0" * 1024))
        Segment.objects.create(
            recording=recording, index=index, path=f"{recording.prefix}/seg-{index:05d}.mp4", size=1024, sha256="0" * 64,
            duration=1, video_frames=30, audio_frames=50, video_codec="h264", audio_codec="opus", width=320, height=240,
            fps=30, archived_key=key,
        )
    return recording


def remaining(recording: Recording) -> int:
    """Segment files still in storage (by the names they were archived under)."""
    names = [f"recordings/{recording.prefix}/seg-{index:05d}.mp4" for index in range(FILES)]
    return sum(1 for name in names if default_storage.exists(name))


def test_an_erasure_killed_mid_way_completes_when_run_again(
    big_recording: Recording, start_worker: Callable[[], subprocess.Popen[bytes]]
) -> None:
    from orstream.celery import app

    first = start_worker()
    assert remaining(big_recording) == FILES
    app.send_task("recordings.tasks.recording_erase", args=[big_recording.pk])
    wait_for(lambda: 0 < remaining(big_recording) < FILES * 3 // 4, timeout=60, what="the erasure to be under way")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)

    big_recording.refresh_from_db()
    left = remaining(big_recording)
    assert big_recording.status == Recording.Status.ERASING
    assert 0 < left < FILES, "the kill must land half-way for this test to mean anything"
    steps = list(AuditEvent.objects.filter(action="recording.erase").values_list("detail__step", flat=True))
    assert steps == ["started"]

    start_worker()
    app.send_task("recordings.tasks.recording_erase", args=[big_recording.pk])
    wait_for(
        lambda: Recording.objects.get(pk=big_recording.pk).status == Recording.Status.ERASED,
        timeout=60, what="the erasure to finish",
    )
    assert remaining(big_recording) == 0
    steps = list(AuditEvent.objects.filter(action="recording.erase").values_list("detail__step", flat=True))
    assert steps == ["started", "resumed", "completed"]
    assert audit_verify() is None


ARCHIVE_SEGMENTS = 6
ARCHIVE_SEGMENT_BYTES = 48 * 1024 * 1024  # reading a copy back takes long enough to land a kill in


@pytest.fixture
def verified_recording(session: Any, bob: Any, tmp_path: Path, settings: Any) -> Recording:
    """Verified, not archived yet: large segments on the spool (archiving copies, it does not decode)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RECORDINGS_SPOOL_DIR = tmp_path / "spool"
    recording = Recording.objects.create(
        session=session, started_by=bob, status=Recording.Status.AVAILABLE, verified_at=timezone.now(),
        expected_segments=ARCHIVE_SEGMENTS,
    )
    folder = Path(settings.RECORDINGS_SPOOL_DIR) / recording.prefix
    folder.mkdir(parents=True)
    for index in range(ARCHIVE_SEGMENTS):
        data = os.urandom(ARCHIVE_SEGMENT_BYTES)
        (folder / f"seg-{index:05d}.mp4").write_bytes(data)
        Segment.objects.create(
            recording=recording, index=index, path=f"{recording.prefix}/seg-{index:05d}.mp4", size=len(data),
            sha256=hashlib.sha256(data).hexdigest(), duration=1, video_frames=30, audio_frames=50, video_codec="h264",
            audio_codec="opus", width=320, height=240, fps=30,
        )
    return recording


def test_an_archive_killed_between_a_save_and_its_row_update_completes_cleanly_when_run_again(
    verified_recording: Recording, start_worker: Callable[[], subprocess.Popen[bytes]]
) -> None:
    from orstream.celery import app

    recording = verified_recording
    first = start_worker()
    app.send_task("recordings.tasks.recording_archive", args=[recording.pk])

    def saved_not_recorded() -> int | None:
        """A segment whose copy is whole in storage while its row does not say so yet."""
        for segment in Segment.objects.filter(recording=recording, archived_key="").order_by("index"):
            key = f"recordings/{recording.prefix}/seg-{segment.index:05d}.mp4"
            if default_storage.exists(key) and default_storage.size(key) == segment.size:
                return segment.index
        return None

    deadline = time.monotonic() + 120
    caught = None
    while caught is None:
        assert time.monotonic() < deadline, "the archive did not get under way"
        assert Segment.objects.filter(recording=recording, archived_key="").exists(), "archived before the kill landed"
        caught = saved_not_recorded()
        if caught is None:
            time.sleep(0.002)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)

    # The kill landed between the save and the row update: the copy is there, the row says nothing.
    segment = Segment.objects.get(recording=recording, index=caught)
    assert segment.archived_key == ""
    assert default_storage.exists(f"recordings/{recording.prefix}/seg-{caught:05d}.mp4")

    start_worker()
    app.send_task("recordings.tasks.recording_archive", args=[recording.pk])
    wait_for(lambda: Recording.objects.get(pk=recording.pk).archived_at is not None, timeout=120, what="the archive to finish")

    names = [f"seg-{index:05d}.mp4" for index in range(ARCHIVE_SEGMENTS)]
    # One object per segment at its fixed key: the rerun overwrote, it left no renamed copy.
    assert sorted(default_storage.listdir(f"recordings/{recording.prefix}")[1]) == names
    for segment in Segment.objects.filter(recording=recording).order_by("index"):
        assert segment.archived_key == f"recordings/{recording.prefix}/seg-{segment.index:05d}.mp4"
        with default_storage.open(segment.archived_key, "rb") as handle:
            assert hashlib.file_digest(handle, "sha256").hexdigest() == segment.sha256
    assert not any((Path(django_settings.RECORDINGS_SPOOL_DIR) / recording.prefix).glob("seg-*.mp4"))

"""The archive on real Celery workers (Redis broker, PostgreSQL, the site's process queueing as in
production): two workers encode two chunks at the same time; a worker process killed with
SIGKILL in the middle of a chunk's encode has its chunk taken back by the queue and encoded again,
and the copy still passes its checks with no stray file left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage

from recordings.models import ArchiveChunk, ArchiveCopy, Recording
from recordings.services import archive, common
from tests.recordings.archive_fixtures import stored_recording, textured_segments
from tests.recordings.test_worker import wait_for, worker_env

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored"),
]


@pytest.fixture
def queue(settings: Any, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start real workers; while the test runs, this process queues to Redis like the site does."""
    from orstream.celery import app

    env = worker_env(settings, ORSTREAM_ARCHIVE_AUTO="false")
    workers: list[subprocess.Popen[bytes]] = []
    log = (tmp_path / "workers.log").open("ab")

    def start(*, name: str, pool: str = "solo") -> subprocess.Popen[bytes]:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "orstream.celery", "worker", f"--pool={pool}", "--concurrency=1",
             "-Q", "celery,archive", "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        workers.append(worker)
        return worker

    app.control.purge()
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield start
    app.conf.task_always_eager = eager
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
        worker.wait(timeout=10)
    log.close()


def _recording(session: Any, bob: Any, folder: Path, spool: Path, *, width: int, height: int) -> Recording:
    segments = textured_segments(folder, width=width, height=height, seconds=4, segment_seconds=2)
    return stored_recording(session, bob, segments, spool, width=width, height=height)


def _accepted(copy: ArchiveCopy, timeout: float) -> ArchiveCopy:
    wait_for(lambda: ArchiveCopy.objects.get(pk=copy.pk).status in ("accepted", "flagged"), timeout=timeout, what="the archive")
    copy.refresh_from_db()
    assert copy.status == ArchiveCopy.Status.ACCEPTED, copy.note
    return copy


@pytest.fixture
def gate(settings: Any) -> None:
    # 2 s chunks (an IDR every second): two chunks. Small pictures score lower than 4K at one CRF;
    # the thresholds here are for the mechanics, test_archive_4k holds the defaults.
    settings.ARCHIVE_CHUNK_SECONDS = 2.0
    settings.ARCHIVE_AV1_CRF = 20
    settings.ARCHIVE_VMAF_MEAN_MIN = 80.0
    settings.ARCHIVE_VMAF_CHUNK_MIN = 75.0


def test_two_workers_encode_two_chunks_at_the_same_time(
    session: Any, consenting_patient: Any, bob: Any, alice: Any, spool: Path, tmp_path: Path, settings: Any,
    gate: None, queue: Callable[..., subprocess.Popen[bytes]],
) -> None:
    settings.ARCHIVE_AV1_PRESET = "6"  # slow enough that each chunk keeps its worker busy for a while
    recording = _recording(session, bob, tmp_path / "clip", spool, width=480, height=270)
    queue(name="one")
    queue(name="two")

    copy = _accepted(archive.archive_request(recording=recording, by=alice), timeout=180)

    first, second = ArchiveChunk.objects.filter(archive=copy).order_by("index")
    assert first.worker_pid != second.worker_pid
    assert first.started_at and second.started_at and first.finished_at and second.finished_at
    # Each started before the other finished: they were encoded in parallel.
    assert first.started_at < second.finished_at and second.started_at < first.finished_at
    assert (first.runs, second.runs) == (1, 1)
    assert copy.video_frames == 120
    assert common._storage_keys_under(copy.folder) == [copy.key]


def test_a_worker_killed_mid_chunk_has_its_chunk_encoded_again(
    session: Any, consenting_patient: Any, bob: Any, alice: Any, spool: Path, tmp_path: Path, settings: Any,
    gate: None, queue: Callable[..., subprocess.Popen[bytes]],
) -> None:
    settings.ARCHIVE_AV1_PRESET = "6"
    recording = _recording(session, bob, tmp_path / "clip", spool, width=480, height=270)
    # A prefork worker: the chunk runs in a child process, the one killed here, as a crash or the
    # kernel's OOM killer would. The parent sees it die and, with reject_on_worker_lost, puts the
    # unacknowledged message back on the queue.
    queue(name="prefork", pool="prefork")
    copy = archive.archive_request(recording=recording, by=alice)

    def encoding() -> ArchiveChunk | None:
        chunk = ArchiveChunk.objects.filter(archive=copy, index=0, status=ArchiveChunk.Status.ENCODING).first()
        if chunk is None or not chunk.output_key:
            return None
        partial = Path(default_storage.path(chunk.output_key + ".part"))
        return chunk if partial.exists() and partial.stat().st_size > 0 else None

    deadline = time.monotonic() + 120
    chunk = encoding()
    while chunk is None:
        assert time.monotonic() < deadline, "the first chunk never got under way"
        time.sleep(0.01)
        chunk = encoding()
    assert chunk.worker_pid is not None
    os.kill(chunk.worker_pid, signal.SIGKILL)  # the encoder is writing this chunk right now

    copy = _accepted(copy, timeout=180)

    chunk.refresh_from_db()
    assert chunk.runs == 2  # taken twice: the killed run and the one that finished it
    assert chunk.status == ArchiveChunk.Status.DONE and chunk.vmaf_mean is not None
    assert copy.video_frames == 120
    # No half-written chunk or encoder output left behind: only the joined copy.
    assert common._storage_keys_under(copy.folder) == [copy.key]

"""Recordings archived to an S3-compatible object store (a local moto S3 server stands in for
MinIO or AWS), read back for export with their checksums verified."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.test import override_settings

from recordings import services
from recordings.models import Recording

from .fixtures import ClipFacts, clip, clip_facts, spool, stopped_recording  # noqa: F401

BUCKET = "orstream-recordings"


@pytest.fixture
def s3_server(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path / "moto.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "the S3 server did not start"
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def s3_storage(s3_server: str) -> Iterator[Any]:
    credentials = {"aws_access_key_id": "orstream", "aws_secret_access_key": "orstream-secret", "region_name": "us-east-1"}
    client = boto3.client("s3", endpoint_url=s3_server, **credentials)
    client.create_bucket(Bucket=BUCKET)
    storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": BUCKET, "endpoint_url": s3_server, "access_key": "orstream",
            "secret_key": "orstream-secret", "region_name": "us-east-1", "default_acl": "private",
            "file_overwrite": False,
        },
    }
    with override_settings(STORAGES={"default": storage, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}):
        yield client


def test_archived_segments_land_in_the_bucket_intact_and_export_from_it(
    stopped_recording: Recording, s3_storage: Any, clip_facts: ClipFacts, tmp_path: Path, alice: Any, settings: Any  # noqa: F811
) -> None:
    recording = services.recording_archive(recording=services.recording_finalize(recording=stopped_recording))
    keys = {o["Key"] for o in s3_storage.list_objects_v2(Bucket=BUCKET)["Contents"]}
    for segment in recording.segments.all():
        assert segment.archived_key in keys
        body = s3_storage.get_object(Bucket=BUCKET, Key=segment.archived_key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == segment.sha256
    assert not any("CASE-0042" in key for key in keys), "no patient reference in object keys"

    share = tmp_path / "share"
    share.mkdir()
    settings.EXPORT_DESTINATIONS = [str(share)]
    job = services.export_request(recording=recording, destination=share, by=alice)
    services.recording_export(job=job)
    job.refresh_from_db()
    assert job.sha256_verified
    copied = sorted((share / recording.prefix).glob("*.mp4"))
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in copied] == [
        s.sha256 for s in recording.segments.order_by("index")
    ]

"""Documentation journey: a procedure is recorded as a clinical record and reaches the library.

Driven as a coordinator would, through the pages: consent recorded on the consent page -> Go live
-> the live view shows the 4K demo feed -> Start recording, ~20 s, Stop -> the recording becomes
available in the library -> it plays in the library's video element (frames advance) -> a
download with a Range request decodes with PyAV at 3840x2160 with the frame count the edge
reported and an audio stream -> an export to an allowed folder with a verified checksum ->
`manage.py audit_verify` passes. Once on the embedded default (what `make run` gives: SQLite,
in-memory channel layer, eager Celery, the devserver's own edge) and once on PostgreSQL + Redis
with a real Celery worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import av
import pytest

from .conftest import ROOT, screenshot
from .stack import demo_clip, shared_file_env

pytestmark = [pytest.mark.e2e]

RECORD_SECONDS = 20
PURPOSES = ["record", "live_internal", "live_external", "archive_training", "research"]


@dataclass
class Stack:
    """What the journey needs to know about the site it drives."""

    url: str
    username: str
    password: str
    procedure: str
    export_dir: Path
    # The edge's report for each segment of a recording, as registered: [(index, video_frames)].
    edge_reported: Callable[[str], list[tuple[int, int]]]
    audit_verify: Callable[[], subprocess.CompletedProcess[str]]


def sign_in(page: Any, stack: Stack) -> None:
    page.goto(f"{stack.url}/accounts/login/")
    page.get_by_label("User name").fill(stack.username)
    page.get_by_label("Password").fill(stack.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def record_consent(page: Any) -> None:
    """On the session page: open the consent page and record the patient's agreement to every use."""
    page.get_by_role("link", name="Record or withdraw consent").click()
    page.locator("#consent-form").wait_for()
    for purpose in PURPOSES:
        page.locator(f'.decision-row[data-purpose="{purpose}"] input[value="granted"]').check()
    page.get_by_label("Attestation").fill("Signed form scanned to the ward file.")
    page.get_by_role("button", name="Save consent").click()
    page.locator('#in-force tr[data-purpose="record"] .decision.granted').wait_for(timeout=15_000)
    page.get_by_role("link", name="Back to the session").click()


def video_frames_shown(page: Any) -> int:
    return int(page.evaluate("() => document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames"))


def wait_until(condition: Callable[[], Any], *, timeout: float, what: str, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def documentation_journey(open_page: Any, stack: Stack, name: str) -> None:
    page = open_page(f"{stack.url}/accounts/login/", width=1400, height=900)
    sign_in(page, stack)

    # The session, from the coordinator's list.
    page.get_by_role("link", name=stack.procedure).first.click()
    page.wait_for_url("**/sessions/*/")
    session_url = page.url
    session_id = session_url.rstrip("/").rsplit("/", 1)[1]

    record_consent(page)
    page.get_by_role("button", name="Go live").click()
    page.get_by_role("link", name="Open the live view").click()
    page.wait_for_url("**/live/")
    # The demo feed plays in the live view before anything is recorded.
    page.wait_for_function("() => document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames > 10", timeout=60_000)
    assert page.evaluate("() => document.getElementById('video').videoWidth") == 3840

    start = page.get_by_role("button", name="Start recording")
    wait_until(start.is_enabled, timeout=30, what="Start recording to be offered", every=0.5)
    start.click()
    page.wait_for_function("() => document.getElementById('recording-state').dataset.state === 'recording'", timeout=30_000)
    screenshot(page, f"{name}-recording")
    time.sleep(RECORD_SECONDS)
    page.get_by_role("button", name="Stop recording").click()
    page.wait_for_function("() => document.getElementById('recording-state').dataset.state !== 'recording'", timeout=60_000)

    # The library lists it once it is verified and available.
    def listed() -> bool:
        page.goto(f"{stack.url}/recordings/?session={session_id}")
        return page.get_by_role("link", name=stack.procedure).count() > 0

    wait_until(listed, timeout=240, what="the recording to become available in the library", every=3)
    page.get_by_role("link", name=stack.procedure).first.click()
    page.wait_for_url("**/recordings/*/")
    recording_id = page.url.rstrip("/").rsplit("/", 1)[1]

    # It plays: frames advance in the library's video element.
    page.wait_for_function("() => document.getElementById('player').dataset.state === 'ready'", timeout=60_000)
    page.evaluate("() => { const v = document.getElementById('video'); v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.getElementById('video').currentTime > 1", timeout=60_000)
    shown = video_frames_shown(page)
    page.wait_for_function(
        f"() => document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames > {shown + 15}", timeout=60_000
    )
    assert page.evaluate("() => [document.getElementById('video').videoWidth, document.getElementById('video').videoHeight]") == [3840, 2160]
    screenshot(page, f"{name}-library")
    page.evaluate("() => document.getElementById('video').pause()")

    # Downloaded with a Range request (how a browser resumes a broken download), then decoded.
    reported = stack.edge_reported(recording_id)
    assert reported and [index for index, _ in reported] == list(range(len(reported)))
    downloads = []
    for index, frames in reported:
        response = page.request.get(f"{stack.url}/recordings/{recording_id}/download/{index}.mp4", headers={"Range": "bytes=0-"})
        assert response.status == 206, response.status
        assert response.headers["content-range"].startswith("bytes 0-")
        body = response.body()
        assert response.headers["content-range"] == f"bytes 0-{len(body) - 1}/{len(body)}"
        path = stack.export_dir.parent / f"{name}-download-{index}.mp4"
        path.write_bytes(body)
        downloads.append(path)
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            assert container.streams.audio, "the recording has no audio stream"
            assert (video.codec_context.width, video.codec_context.height) == (3840, 2160)
            video.thread_type = "AUTO"
            decoded = sum(1 for _ in container.decode(video=0))
        assert decoded == frames, f"part {index}: {decoded} frames decoded, the edge reported {frames}"
    assert sum(frames for _, frames in reported) >= (RECORD_SECONDS - 5) * 25

    # Exported to the allowed folder, every file checked against its checksum.
    page.locator("#destination").select_option(str(stack.export_dir))
    page.get_by_role("button", name="Export a verified copy").click()
    page.get_by_text("Export finished").wait_for(timeout=120_000)
    folder = stack.export_dir / recording_id
    sums = dict(reversed(line.split("  ", 1)) for line in (folder / "SHA256SUMS").read_text().splitlines())
    assert sorted(sums) == [f"seg-{index:05d}.mp4" for index, _ in reported]
    for file, digest in sums.items():
        assert hashlib.sha256((folder / file).read_bytes()).hexdigest() == digest
    for index, path in enumerate(downloads):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sums[f"seg-{index:05d}.mp4"]
        path.unlink()
    assert json.loads((folder / "recording.json").read_text())["video"]["width"] == 3840
    screenshot(page, f"{name}-exported")

    verified = stack.audit_verify()
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_recording_reaches_the_library_on_the_embedded_default(embedded_site: Any, open_page: Any) -> None:
    def edge_reported(recording_id: str) -> list[tuple[int, int]]:
        code = (
            "from recordings.models import Segment; import json; "
            f"print(json.dumps(list(Segment.objects.filter(recording__public_id='{recording_id}')"
            ".order_by('index').values_list('index', 'video_frames'))))"
        )
        return [tuple(row) for row in json.loads(embedded_site.shell(code).strip().splitlines()[-1])]  # type: ignore[misc]

    stack = Stack(
        url=embedded_site.url, username=embedded_site.username, password=embedded_site.password,
        procedure="Demo: microsurgical anastomosis", export_dir=embedded_site.export_dir,
        edge_reported=edge_reported, audit_verify=lambda: embedded_site.manage("audit_verify", check=False),
    )
    documentation_journey(open_page, stack, "journey-documentation-embedded")
    # The scheduler `make run` starts runs the finalize sweep (every minute) with no worker, so a
    # recording whose edge notices were lost is still finalized.
    deadline = time.monotonic() + 90
    while "Task recordings.tasks.recording_sweep[" not in embedded_site.log.read_text() and time.monotonic() < deadline:
        time.sleep(1)
    swept = [line for line in embedded_site.log.read_text().splitlines() if "Task recordings.tasks.recording_sweep[" in line]
    assert swept and "succeeded" in swept[0], f"make run's scheduler did not run the finalize sweep: {swept[:1]}"


@pytest.mark.django_db(transaction=True)
def test_a_recording_reaches_the_library_on_postgresql_redis_and_a_real_worker(
    worker_site: Any, open_page: Any, settings: Any
) -> None:
    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from consent import services as consent_services
    from mentoring import services
    from orstream import roles
    from recordings.models import Segment

    from .stack import database_url_for_subprocess

    # The server processes know Django's default hashers, not the fast one the tests use.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    coordinator = User.objects.create_user("casey", password="journey-pass-Xy9!", first_name="Casey", last_name="Coord")
    coordinator.groups.add(Group.objects.get_or_create(name=roles.COORDINATOR)[0])
    surgeon = User.objects.create_user("sam", first_name="Sam", last_name="Surgeon")
    room = services.room_create(name="OR 3", location="Theatre block B", ingest_url=str(demo_clip()))
    begin = timezone.now().replace(microsecond=0) + timedelta(minutes=1)
    procedure = "Microvascular free flap (journey)"
    services.session_schedule(
        room=room, procedure=procedure, surgeon=surgeon, planned_start=begin, planned_end=begin + timedelta(hours=3),
        time_zone="Europe/Paris", created_by=coordinator, patient_ref="CASE-7731",
    )
    consent_services.consent_form_create(
        title="Recording and teleconsultation consent", version="3", text="The hospital's consent form.", purposes=PURPOSES
    )
    export_dir = Path(shared_file_env()["ORSTREAM_EXPORT_DESTINATIONS"])
    export_dir.mkdir(parents=True, exist_ok=True)

    def edge_reported(recording_id: str) -> list[tuple[int, int]]:
        return list(Segment.objects.filter(recording__public_id=recording_id).order_by("index").values_list("index", "video_frames"))

    def audit_verify() -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DATABASE_URL": database_url_for_subprocess(), "PYTHONPATH": str(ROOT)}
        return subprocess.run([sys.executable, "manage.py", "audit_verify"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    stack = Stack(
        url=worker_site.url, username="casey", password="journey-pass-Xy9!", procedure=procedure, export_dir=export_dir,
        edge_reported=edge_reported, audit_verify=audit_verify,
    )
    documentation_journey(open_page, stack, "journey-documentation-worker")

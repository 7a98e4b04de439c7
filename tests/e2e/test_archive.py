"""The long-term archive in a real browser: once its original is replaced by the accepted AV1
copy, the recording plays in the library from that copy, frames advancing, and the records office
sees the copy's scores and sizes on the page and in the storage report."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.storage import default_storage

from recordings import encode
from recordings.models import ArchiveCopy, Recording
from recordings.services import archive
from tests.recordings.archive_fixtures import stored_recording, textured_segments

from .conftest import screenshot
from .test_library import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _stored(session: Any, bob: Any, folder: Path, *, bitrate: int | None = None) -> Iterator[Recording]:
    spool = Path(settings.RECORDINGS_SPOOL_DIR)
    segments = textured_segments(folder, width=320, height=240, seconds=4, segment_seconds=2, bitrate=bitrate)
    recording = stored_recording(session, bob, segments, spool, width=320, height=240)
    try:
        yield recording
    finally:
        shutil.rmtree(spool / recording.prefix, ignore_errors=True)
        shutil.rmtree(Path(default_storage.path(f"recordings/{recording.prefix}")), ignore_errors=True)


@pytest.fixture
def stored(session: Any, consenting_patient: Any, bob: Any, tmp_path: Path) -> Iterator[Recording]:
    """An available recording on the site's own spool and storage, not archived yet."""
    yield from _stored(session, bob, tmp_path / "clip")


@pytest.fixture
def compact(session: Any, consenting_patient: Any, bob: Any, tmp_path: Path) -> Iterator[Recording]:
    """Like ``stored``, recorded at 40 kbit/s: no archive copy of it can be smaller."""
    yield from _stored(session, bob, tmp_path / "compact", bitrate=40_000)


@pytest.fixture
def archived_recording(stored: Recording, alice: Any) -> Recording:
    """``stored``, archived as AV1 (jobs run in this process, eager) and its original removed: the
    copy is all that is left to play."""
    with pytest.MonkeyPatch.context() as patch:
        # Small pictures score lower than 4K at one CRF: thresholds for this 320x240 clip.
        patch.setattr(settings, "ARCHIVE_AV1_CRF", 20, raising=False)
        patch.setattr(settings, "ARCHIVE_VMAF_MEAN_MIN", 80.0, raising=False)
        patch.setattr(settings, "ARCHIVE_VMAF_CHUNK_MIN", 75.0, raising=False)
        copy = archive.archive_request(recording=stored, by=alice)
    copy.refresh_from_db()
    assert copy.status == ArchiveCopy.Status.ACCEPTED, copy.note
    archive.archive_originals_remove(archive=copy)
    stored.refresh_from_db()
    return stored


def test_an_archived_recording_plays_as_av1_in_the_library(
    site: Any, open_page: Any, archived_recording: Recording, alice: Any, settings: Any
) -> None:
    copy = ArchiveCopy.objects.get(recording=archived_recording)
    assert not any(default_storage.exists(f"recordings/{archived_recording.prefix}/seg-{i:05d}.mp4") for i in range(2))
    assert encode.media_probe([archive.archive_file_path(key=copy.key)]).video_codec == "av1"

    page = sign_in(open_page, site, alice, settings, f"/recordings/{archived_recording.public_id}/")
    page.wait_for_function("() => document.getElementById('player').dataset.state === 'ready'", timeout=15_000)
    assert page.locator("#part-label").inner_text() == ""  # one part: the archive copy
    page.evaluate("() => { const v = document.getElementById('video'); v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.getElementById('video').currentTime > 1.5", timeout=20_000)
    decoded = page.evaluate("() => document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames")
    page.wait_for_function(
        f"() => document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames > {decoded + 10}", timeout=20_000
    )
    size = page.evaluate("() => [document.getElementById('video').videoWidth, document.getElementById('video').videoHeight]")
    assert size == [320, 240]
    card = page.locator("#archive")
    assert "Accepted" in card.inner_text()
    assert "this copy is what plays, downloads and exports" in card.inner_text()
    screenshot(page, "archive-av1-playing")

    page.get_by_role("link", name="Storage report").click()
    page.get_by_role("heading", name="Storage report").wait_for()
    row = page.locator(f"tr[data-recording='{archived_recording.public_id}']")
    assert "Accepted" in row.inner_text()
    screenshot(page, "archive-storage-report")


def test_the_records_office_makes_an_archive_copy_from_the_recording_page(
    site: Any, open_page: Any, stored: Recording, alice: Any, settings: Any
) -> None:
    page = sign_in(open_page, site, alice, settings, f"/recordings/{stored.public_id}/")
    page.get_by_role("heading", name="Long-term archive").wait_for()
    assert "No archive copy yet" in page.locator("#archive").inner_text()
    # The site runs its jobs eagerly (the embedded profile): the copy is made before the page returns.
    page.get_by_role("button", name="Make an archive copy").click()
    page.get_by_text("Archive copy asked for.").wait_for(timeout=120_000)

    copy = ArchiveCopy.objects.get(recording=stored)
    assert copy.status in (ArchiveCopy.Status.ACCEPTED, ArchiveCopy.Status.FLAGGED)
    card = page.locator("#archive").inner_text()
    assert f"AV1 copy: {copy.get_status_display()}" in card
    assert f"{copy.vmaf_mean:.2f} on average" in card
    if copy.status == ArchiveCopy.Status.FLAGGED:  # the site's default thresholds are for 4K footage
        assert "The archive copy was not accepted" in card
    screenshot(page, "archive-card")


def test_the_records_office_reads_that_a_compact_original_is_kept_as_the_archive(
    site: Any, open_page: Any, compact: Recording, alice: Any, settings: Any
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (("ARCHIVE_AV1_CRF_MAX", 30), ("ARCHIVE_VMAF_MEAN_MIN", 80.0), ("ARCHIVE_VMAF_CHUNK_MIN", 75.0)):
            patch.setattr(settings, name, value, raising=False)
        copy = archive.archive_request(recording=compact, by=alice)
    copy.refresh_from_db()
    assert copy.status == ArchiveCopy.Status.KEPT, copy.note

    page = sign_in(open_page, site, alice, settings, "/recordings/")
    page.get_by_role("heading", name="Recordings library").wait_for()
    assert page.locator("#archive-flags").count() == 0  # nothing for a person to do
    page.goto(f"{site.url}/recordings/{compact.public_id}/")
    card = page.locator("#archive")
    card.get_by_text("Original kept as the archive").first.wait_for()
    assert "Nothing needs doing" in card.locator(".archive-kept").inner_text()
    assert card.get_by_role("alert").count() == 0
    assert f"Quality chosen for this recording: CRF {copy.crf}" in card.inner_text()
    assert card.get_by_role("button", name="Make an archive copy").count() == 0
    screenshot(page, "archive-original-kept")

    page.get_by_role("link", name="Storage report").click()
    page.get_by_role("heading", name="Storage report").wait_for()
    row = page.locator(f"tr[data-recording='{compact.public_id}']").inner_text()
    assert "Original kept as the archive" in row and "nothing to do" in row

"""The recordings library in a real browser: a resident finds a recording and it plays, across its
parts, with the mentor's drawing replayed over the picture at the moment it was drawn."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from consent import services as consent_services
from mentoring.models import Annotation
from recordings.models import Recording
from tests.recordings.fixtures import ClipFacts, clip, clip_facts, register_segments  # noqa: F401

from .conftest import off_loop, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def playable_recording(session: Any, consenting_patient: Any, bob: Any, carol: Any, clip: Path, clip_facts: ClipFacts) -> Iterator[Recording]:  # noqa: F811
    """Two parts of the generated clip on the site's own spool (the server process reads the same
    settings), available, with one arrow drawn half a second into the recording."""
    recording = Recording.objects.create(
        session=session, started_by=bob, status=Recording.Status.FINALIZING, ended_at=timezone.now()
    )
    spool = Path(settings.RECORDINGS_SPOOL_DIR)
    try:
        register_segments(recording, clip, clip_facts, spool, 2)
        Recording.objects.filter(pk=recording.pk).update(
            status=Recording.Status.AVAILABLE, duration=2 * clip_facts.duration, width=320, height=240, tags=["teaching"]
        )
        Annotation.objects.create(
            session=session, participant=carol, kind="stroke", media_time=recording.started_at.timestamp() + 0.5,
            payload={"tool": "arrow", "color": "#ffeb3b", "points": [[0.2, 0.2], [0.6, 0.5]], "stroke_id": "s1"},
        )
        recording.refresh_from_db()
        yield recording
    finally:
        shutil.rmtree(spool / recording.prefix, ignore_errors=True)


def sign_in(open_page: Any, site: Any, user: Any, settings: Any, then: str) -> Any:
    """Sign ``user`` in through the login page and land on ``then``."""
    # The server process knows Django's default hashers, not the fast one the cast was made with.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    user.set_password("browser-pass-Xy9!")
    user.save(update_fields=["password"])
    page = open_page(f"{site.url}/accounts/login/?next={then}")
    page.get_by_label("User name").fill(user.username)
    page.get_by_label("Password").fill("browser-pass-Xy9!")
    page.get_by_role("button", name="Sign in").click()
    return page


def test_a_resident_finds_a_recording_and_it_plays_with_the_drawing_replayed(
    site: Any, open_page: Any, playable_recording: Recording, resident: Any, dave: Any, settings: Any
) -> None:
    page = sign_in(open_page, site, dave, settings, "/recordings/")
    page.get_by_role("heading", name="Recordings library").wait_for()
    page.get_by_role("link", name=playable_recording.session.procedure).click()
    page.wait_for_url(f"**/recordings/{playable_recording.public_id}/")

    # Loaded and ready: the "loading" panel gives way; nothing drawn before the stroke's time.
    page.wait_for_function("() => document.getElementById('player').dataset.state === 'ready'", timeout=15_000)
    assert page.locator("#replay").get_attribute("data-strokes") == "0"
    # Muted, a page may start playback without a click (Chromium's autoplay policy).
    page.evaluate("() => { const v = document.getElementById('video'); v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.getElementById('video').currentTime > 0.8", timeout=15_000)
    assert page.locator("#player").get_attribute("data-state") == "playing"
    assert page.locator("#replay").get_attribute("data-strokes") == "1"
    screenshot(page, "library")

    # The second part follows the first, as one timeline.
    page.wait_for_function("() => document.getElementById('part-label').textContent.includes('part 2 of 2')", timeout=15_000)
    page.wait_for_function("() => document.getElementById('video').currentTime > 0.3", timeout=15_000)
    position = page.locator("#position").inner_text()
    assert position.startswith("0:0") and int(position[-1]) >= 2


def test_staff_withdraw_consent_with_one_confirmed_action_and_the_recording_leaves_the_library(
    site: Any, open_page: Any, playable_recording: Recording, consenting_patient: Any, alice: Any, settings: Any
) -> None:
    session = playable_recording.session
    page = sign_in(open_page, site, alice, settings, f"/consent/sessions/{session.public_id}/")
    page.get_by_role("heading", name="Consent in force").wait_for()
    # The withdrawal stays folded until asked for; keyboard only: focus it, open it, confirm.
    confirm = page.get_by_role("button", name="Yes, withdraw consent now")
    assert not confirm.is_visible()
    page.locator("details.withdraw summary").focus()
    page.keyboard.press("Enter")
    page.get_by_label("Reason (optional; no names)").fill("asked on the ward round")
    confirm.focus()
    page.keyboard.press("Enter")
    page.get_by_text("Consent withdrawn.").wait_for()
    assert "No consent in force" in page.locator("#in-force").inner_text()
    screenshot(page, "consent-withdrawn")
    consenting_patient.refresh_from_db()
    playable_recording.refresh_from_db()
    assert consenting_patient.withdrawn_at is not None
    assert playable_recording.status == Recording.Status.RESTRICTED
    page.goto(f"{site.url}/recordings/")
    assert page.locator("#recordings").count() == 0
    assert "There is no recording you may watch yet" in page.locator("main").inner_text()


def test_a_recording_locked_while_it_plays_stops_with_the_reason_in_words(
    site: Any, open_page: Any, playable_recording: Recording, consenting_patient: Any, resident: Any, dave: Any, alice: Any, settings: Any
) -> None:
    page = sign_in(open_page, site, dave, settings, f"/recordings/{playable_recording.public_id}/")
    page.wait_for_function("() => document.getElementById('player').dataset.state === 'ready'", timeout=15_000)
    off_loop(consent_services.consent_withdraw, record=consenting_patient, by=alice)
    # The first part is already loaded and plays on; the second is refused by the server.
    page.evaluate("() => { const v = document.getElementById('video'); v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.getElementById('player').dataset.state === 'error'", timeout=15_000)
    panel = page.locator("#player-status").inner_text()
    assert "The recording cannot be played" in panel
    assert "patient withdrew consent" in panel
    screenshot(page, "library-locked")

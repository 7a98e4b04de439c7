"""Training in a real browser: a programme director assigns two faculty to a resident's recording;
both score it blind with OSATS, commenting at moments of the video; the resident sees the result
and their progress chart; the reliability table shows the ICC; a model procedure is curated and
the resident watches it from the library."""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from recordings.models import Recording
from tests.conftest import make_user
from tests.recordings.fixtures import ClipFacts, clip, clip_facts, register_segments  # noqa: F401
from training import reliability, services
from training.models import Assessment, Instrument

from .conftest import screenshot
from .test_library import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def published_instruments() -> None:
    """The instruments the data migration publishes. A browser test before this one commits its
    data and is flushed afterwards, which empties every table, these included: load them again."""
    from django.apps import apps

    importlib.import_module("training.migrations.0002_published_instruments").instruments_load(apps, None)


@pytest.fixture
def operated_recording(session: Any, consenting_patient: Any, bob: Any, clip: Path, clip_facts: ClipFacts) -> Iterator[Recording]:  # noqa: F811
    """Two parts of the generated clip on the site's spool, available, consented for training."""
    recording = Recording.objects.create(session=session, started_by=bob, status=Recording.Status.FINALIZING, ended_at=timezone.now())
    spool = Path(settings.RECORDINGS_SPOOL_DIR)
    try:
        register_segments(recording, clip, clip_facts, spool, 2)
        Recording.objects.filter(pk=recording.pk).update(status=Recording.Status.AVAILABLE, duration=2 * clip_facts.duration, width=320, height=240)
        recording.refresh_from_db()
        yield recording
    finally:
        shutil.rmtree(spool / recording.prefix, ignore_errors=True)


FRANK = [4, 3, 4, 2, 5, 3, 4]  # total 25
GRACE = [4, 2, 5, 2, 4, 3, 3]  # total 23


def score_all(page: Any, values: list[int]) -> None:
    keys = Instrument.objects.get(slug="osats-grs").items.values_list("key", flat=True)
    for key, value in zip(keys, values, strict=True):
        page.check(f"input[name='score-{key}'][value='{value}']")
    page.get_by_role("button", name="Submit", exact=True).click()
    page.get_by_text("Assessment submitted").wait_for()


def ready(page: Any) -> None:
    page.wait_for_function("() => ['ready', 'playing'].includes(document.getElementById('player').dataset.state)", timeout=15_000)


def test_two_faculty_score_blind_and_the_resident_sees_progress_and_a_model_procedure(
    site: Any, open_page: Any, operated_recording: Recording, dave: Any, settings: Any
) -> None:
    recording = operated_recording
    programme = services.programme_create(name="Neurosurgery residency", specialty="Neurosurgery")
    henry, frank, grace = (make_user(n, first=n.capitalize(), last=last) for n, last in
                           (("henry", "Director"), ("frank", "Faculty"), ("grace", "Faculty")))
    services.programme_member_add(programme=programme, user=henry, role="director")
    services.programme_member_add(programme=programme, user=frank, role="faculty")
    services.programme_member_add(programme=programme, user=grace, role="faculty")
    services.programme_member_add(programme=programme, user=dave, role="resident", year=2)
    services.performance_record(session=recording.session, programme=programme, resident=dave, by=recording.session.surgeon,
                                parts=[(recording, 0.0, recording.duration or 4.0, "whole procedure")])

    # The director assigns both faculty with OSATS.
    director = sign_in(open_page, site, henry, settings, f"/training/recordings/{recording.public_id}/")
    director.get_by_role("heading", name="Assessments").wait_for()
    for rater in ("Frank Faculty", "Grace Faculty"):
        director.get_by_label("Rater").select_option(label=rater)
        director.get_by_label("Instrument").select_option(label="OSATS · Objective Structured Assessment of Technical Skill: global rating scale")
        director.get_by_role("button", name="Assign").click()
        director.get_by_text(f"{rater} is assigned to rate with OSATS").wait_for()
    first = Assessment.objects.get(rater=frank)

    # Frank scores on the timeline: a comment at a moment of the video, then every item, and submits.
    rater = sign_in(open_page, site, frank, settings, "/training/")
    rater.get_by_role("link", name="Score Dave Resident").click()
    ready(rater)
    rater.evaluate("() => { const v = document.getElementById('video'); v.currentTime = 1.5; }")
    rater.wait_for_function("() => document.getElementById('comment-at').textContent === '0:01'")
    rater.get_by_label("On item").select_option(label="Respect for tissue")
    rater.get_by_label("Comment at the current moment").fill("gentle retraction of the cerebellum")
    rater.get_by_role("button", name="Add the comment").click()
    rater.get_by_text("Comment added at that moment.").wait_for()
    ready(rater)
    rater.get_by_role("button", name="Play from 0:01").click()
    rater.wait_for_function("() => Math.abs(document.getElementById('video').currentTime - 1.5) < 0.2")
    screenshot(rater, "training-assess")
    score_all(rater, FRANK)

    # Grace, not yet submitted, cannot read Frank's scores; once she submits she can.
    second = sign_in(open_page, site, grace, settings, "/training/")
    second.get_by_role("link", name="Score Dave Resident").click()
    second.get_by_text("submitted, hidden until you submit yours").wait_for()
    blind = second.context.new_page()
    blind.goto(f"{site.url}/training/assessments/{first.public_id}/")
    blind.get_by_text("Assessments are blind").wait_for()
    assert "25" not in blind.locator("main").inner_text()
    api = blind.goto(f"{site.url}/api/training/assessments/{first.public_id}/")
    assert api is not None and api.status == 403
    # Frank's comment is a private bookmark: the library's player does not list it for Grace yet.
    blind.goto(f"{site.url}/recordings/{recording.public_id}/")
    ready(blind)
    assert "gentle retraction" not in blind.locator("#marks").inner_text()
    ready(second)
    score_all(second, GRACE)
    second.get_by_role("link", name="25").wait_for()

    # The resident sees the results and the progress chart, and a comment opens the video at its moment.
    resident = sign_in(open_page, site, dave, settings, "/training/progress/")
    chart = resident.locator("#chart-osats-grs")
    chart.wait_for()
    assert chart.get_attribute("data-points") == "2"
    assert resident.locator("#chart-osats-grs circle.point").count() == 2
    assert resident.locator("#chart-osats-grs polyline").count() == 1
    resident.get_by_text("gentle retraction of the cerebellum").wait_for()
    screenshot(resident, "training-progress")
    resident.get_by_role("link", name="0:01").click()
    resident.wait_for_url(f"**/recordings/{recording.public_id}/?t=1.5")
    resident.wait_for_function("() => Math.abs(document.getElementById('video').currentTime - 1.5) < 0.2", timeout=15_000)
    # In the library's player the comment is one of the marks, and jumps there like a bookmark.
    resident.evaluate("() => { const v = document.getElementById('video'); v.pause(); v.currentTime = 0.2; }")
    resident.wait_for_function("() => document.getElementById('video').currentTime < 0.5")
    resident.locator("#marks li.private button", has_text="gentle retraction of the cerebellum").click()
    resident.wait_for_function("() => Math.abs(document.getElementById('video').currentTime - 1.5) < 0.2", timeout=15_000)

    # The reliability table shows the ICC for OSATS.
    director.goto(f"{site.url}/training/reliability/")
    overall = director.locator("#reliability-osats-grs tr.overall")
    overall.wait_for()
    expected = reliability.icc_all([list(pair) for pair in zip(FRANK, GRACE, strict=True)])["ICC(A,1)"]
    assert overall.locator("td.icc-single").inner_text() == f"{expected.value:.2f} [{expected.low:.2f}, {expected.high:.2f}]"
    assert overall.locator("td.reading").inner_text() == reliability.icc_reading(expected.value)
    screenshot(director, "training-reliability")

    # Frank curates the recording into a collection; the resident watches it from the library.
    rater.goto(f"{site.url}/training/library/")
    rater.get_by_label("Title").fill("Model microvascular decompression")
    rater.get_by_label("Specialty").fill("Neurosurgery")
    rater.get_by_label("Procedure (as sessions name it)").fill(recording.session.procedure)
    rater.get_by_role("button", name="Create the collection").click()
    rater.get_by_text("created").wait_for()
    rater.goto(f"{site.url}/training/recordings/{recording.public_id}/")
    rater.get_by_label("Teaching note").fill("Watch the exposure of the root entry zone")
    rater.get_by_role("button", name="Add to the collection").click()
    rater.get_by_text("Added to").wait_for()

    resident.goto(f"{site.url}/training/library/")
    resident.get_by_role("link", name="Model microvascular decompression").click()
    resident.get_by_text("Watch the exposure of the root entry zone").wait_for()
    screenshot(resident, "training-library")
    resident.get_by_role("link", name=f"Watch {recording.session.procedure}").click()
    resident.wait_for_url(f"**/recordings/{recording.public_id}/*")
    resident.wait_for_function("() => ['ready', 'playing'].includes(document.getElementById('player').dataset.state)", timeout=15_000)
    resident.evaluate("() => { const v = document.getElementById('video'); v.muted = true; return v.play(); }")
    resident.wait_for_function("() => document.getElementById('video').currentTime > 0.5", timeout=15_000)

"""A rater's time-stamped comments are private bookmarks of the recording: the library's player
lists them and jumps to them like any mark, for the rater, and for the others only once the
blinding rule lets them read the assessment (never another rater before they submit)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from recordings import services as recording_services
from recordings.models import Bookmark, Recording
from training import services

from .test_services import scored, two_raters  # noqa: F401

pytestmark = pytest.mark.django_db

COMMENT = "gentle retraction of the cerebellum"


def marks_seen(user: Any, recording: Recording) -> list[tuple[float, str]]:
    """The marks the library's player page gives ``user`` (its bootstrap data)."""
    client = Client()
    client.force_login(user)
    response = client.get(f"/recordings/{recording.public_id}/")
    assert response.status_code == 200
    return [(m["t"], m["label"]) for m in response.context["playback"]["bookmarks"]]


def submit(assessment: Any, rater: Any) -> None:
    scored(assessment, rater)
    services.assessment_submit(assessment=assessment, user=rater)


def test_a_comment_is_a_private_bookmark_shown_to_others_only_under_the_blinding_rule(
    two_raters: Any, recording: Recording, frank: Any, grace: Any, henry: Any, trainee: Any, alice: Any, bob: Any,  # noqa: F811
) -> None:
    first, second = two_raters
    comment = services.assessment_comment_add(
        assessment=first, user=frank, media_time=42.5, text=COMMENT, item_key="respect-for-tissue"
    )
    mark = Bookmark.objects.get(pk=comment.bookmark_id)
    assert (mark.recording_id, mark.media_time, mark.private, mark.created_by_id) == (recording.pk, 42.5, True, frank.pk)
    assert mark.label == f"OSATS · Respect for tissue: {COMMENT}"
    assert comment.media_time == 42.5
    shown = (42.5, mark.label)

    # Before Frank submits: only Frank; not Grace, the director, the resident, the records office or the surgeon.
    assert shown in marks_seen(frank, recording)
    for other in (grace, henry, trainee, alice, bob):
        assert shown not in marks_seen(other, recording), other.username
    page = Client()
    page.force_login(grace)
    assert COMMENT not in page.get(f"/recordings/{recording.public_id}/").content.decode()

    # Frank submits: the director and the resident now see it; Grace, blind, still does not.
    submit(first, frank)
    assert shown in marks_seen(henry, recording)
    assert shown in marks_seen(trainee, recording)
    assert shown not in marks_seen(grace, recording)
    assert shown not in marks_seen(alice, recording)

    # Grace submits her own: now she sees Frank's comment on the timeline too.
    submit(second, grace)
    assert shown in marks_seen(grace, recording)


def test_a_comment_outside_the_recording_says_so_and_leaves_no_bookmark(two_raters: Any, frank: Any) -> None:  # noqa: F811
    first, _ = two_raters
    with pytest.raises(services.TrainingError, match="within the recording"):
        services.assessment_comment_add(assessment=first, user=frank, media_time=500, text="late")
    assert not Bookmark.objects.filter(private=True).exists()


def test_a_chapter_cannot_be_private(recording: Recording, bob: Any) -> None:
    with pytest.raises(recording_services.RecordingError, match="cannot be private"):
        recording_services.bookmark_add(recording=recording, user=bob, media_time=1.0, label="Exposure", kind="chapter", private=True)


def test_the_player_tells_a_private_mark_from_a_public_one(two_raters: Any, recording: Recording, frank: Any) -> None:  # noqa: F811
    first, _ = two_raters
    recording_services.bookmark_add(recording=recording, user=frank, media_time=1.0, label="Exposure")
    services.assessment_comment_add(assessment=first, user=frank, media_time=3.0, text="steady")
    client = Client()
    client.force_login(frank)
    marks = client.get(f"/recordings/{recording.public_id}/").context["playback"]["bookmarks"]
    assert [(m["label"], m["private"]) for m in marks] == [("Exposure", False), ("OSATS: steady", True)]

"""The library's pages: who sees which recording, the player page, marks, the records office's
actions, and export progress over the recording's WebSocket."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from consent import services as consent_services
from consent.models import AuditEvent
from mentoring import services as mentoring_services
from mentoring.models import Annotation, Session
from recordings import services
from recordings.models import Bookmark, ExportJob, Recording
from tests.conftest import ALL_PURPOSES, make_user


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def listed(client: Client, query: str = "") -> list[str]:
    response = client.get(f"/recordings/{query}")
    assert response.status_code == 200
    return [str(r.public_id) for r in response.context["recordings"]]


def playback(response: Any) -> dict[str, Any]:
    return response.context["playback"]


def second_session(*, alice: Any, bob: Any, dave: Any, training: bool, consent_form: Any, room_name: str = "OR 5") -> Session:
    """Another procedure with dave as resident, its patient agreeing to everything but, unless
    ``training``, keeping the recording for training; and an available recording of it."""
    room = mentoring_services.room_create(name=room_name)
    start = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    other = mentoring_services.session_schedule(
        room=room, procedure="Carotid endarterectomy", surgeon=bob, planned_start=start,
        planned_end=start + timedelta(hours=2), time_zone="UTC", created_by=alice, patient_ref="CASE-0077",
    )
    mentoring_services.participant_add(session=other, role="resident", display_name="Dave", email=dave.email, user=dave, by=alice)
    consent_services.consent_record(
        session=other, form=consent_form, decisions={p: (training or p != "archive_training") for p in ALL_PURPOSES},
        obtained_by=alice, attestation="Signed form",
    )
    Recording.objects.create(session=other, status=Recording.Status.AVAILABLE, duration=4.0, tags=["vascular"])
    return other


# ---------------------------------------------------------------- who sees what


def test_a_resident_sees_only_recordings_whose_patient_agreed_to_training(
    available_recording: Recording, resident: Any, dave: Any, alice: Any, bob: Any, consent_form: Any
) -> None:
    not_for_training = second_session(alice=alice, bob=bob, dave=dave, training=False, consent_form=consent_form)
    assert listed(signed_in(dave)) == [str(available_recording.public_id)]
    assert signed_in(dave).get(f"/recordings/{available_recording.public_id}/").status_code == 200
    hidden = not_for_training.recordings.get()
    refused = signed_in(dave).get(f"/recordings/{hidden.public_id}/")
    assert refused.status_code == 403
    assert "did not consent to its use for training" in refused.content.decode()
    # The coordinator sees both.
    assert set(listed(signed_in(alice))) == {str(available_recording.public_id), str(hidden.public_id)}


def test_an_outsider_sees_nothing_and_gets_a_refusal_page(available_recording: Recording, eve: Any) -> None:
    client = signed_in(eve)
    assert listed(client) == []
    response = client.get(f"/recordings/{available_recording.public_id}/")
    assert response.status_code == 403
    assert "You cannot watch this recording" in response.content.decode()
    assert AuditEvent.objects.filter(action="recording.view", outcome="refused", actor=f"user:{eve.pk}").exists()


def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in(available_recording: Recording) -> None:
    response = Client().get(f"/recordings/{available_recording.public_id}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_a_restricted_recording_is_neither_listed_nor_playable(
    available_recording: Recording, consenting_patient: Any, alice: Any, fake_edge: Any
) -> None:
    consent_services.consent_withdraw(record=consenting_patient, by=alice)
    available_recording.refresh_from_db()
    assert available_recording.status == Recording.Status.RESTRICTED
    client = signed_in(alice)
    assert listed(client) == []
    page = client.get(f"/recordings/{available_recording.public_id}/")
    assert page.status_code == 403
    assert "restricted" in page.content.decode()
    assert client.get(f"/recordings/{available_recording.public_id}/parts/0.mp4").status_code == 403
    assert client.get(f"/recordings/{available_recording.public_id}/download/0.mp4").status_code == 403


def test_erased_and_failed_recordings_are_never_listed(available_recording: Recording, alice: Any) -> None:
    Recording.objects.create(session=available_recording.session, status=Recording.Status.ERASED)
    Recording.objects.create(session=available_recording.session, status=Recording.Status.FAILED)
    assert listed(signed_in(alice)) == [str(available_recording.public_id)]


# ---------------------------------------------------------------- search


def test_the_library_filters_by_procedure_room_surgeon_dates_and_tag(
    available_recording: Recording, alice: Any, bob: Any, dave: Any, consent_form: Any
) -> None:
    other = second_session(alice=alice, bob=bob, dave=dave, training=True, consent_form=consent_form).recordings.get()
    claire = make_user("claire", first="Claire", last="Surgeon")
    Session.objects.filter(pk=other.session_id).update(surgeon=claire)
    Recording.objects.filter(pk=other.pk).update(started_at=timezone.now() - timedelta(days=30))
    client = signed_in(alice)
    mine, theirs = str(available_recording.public_id), str(other.public_id)
    assert listed(client, "?procedure=microvascular") == [mine]
    assert listed(client, "?q=carotid") == [theirs]
    assert listed(client, "?room=OR+5") == [theirs]
    assert listed(client, "?surgeon=claire") == [theirs]
    assert listed(client, "?surgeon=bob") == [mine]
    assert listed(client, "?tag=vascular") == [theirs]
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    assert listed(client, f"?since={since}") == [mine]
    assert listed(client, f"?until={since}") == [theirs]
    assert listed(client, f"?session={available_recording.session.public_id}") == [mine]
    # Nonsense in a filter is ignored rather than an error.
    assert set(listed(client, "?since=yesterday&session=not-a-uuid")) == {mine, theirs}


# ---------------------------------------------------------------- the player page


def test_the_player_gets_every_part_in_order_with_its_start(available_recording: Recording, bob: Any, clip_facts: Any) -> None:
    response = signed_in(bob).get(f"/recordings/{available_recording.public_id}/")
    assert response.status_code == 200
    parts = playback(response)["parts"]
    assert [p["url"] for p in parts] == [f"/recordings/{available_recording.public_id}/parts/{i}.mp4" for i in (0, 1)]
    assert parts[0]["start"] == 0
    assert parts[1]["start"] == pytest.approx(clip_facts.duration, abs=0.01)
    assert 'id="video"' in response.content.decode()


def test_strokes_replay_at_their_time_from_the_recording_start(available_recording: Recording, carol: Any, bob: Any) -> None:
    start = available_recording.started_at.timestamp()
    stroke = {"tool": "arrow", "color": "#ffeb3b", "points": [[0.1, 0.1], [0.5, 0.5]]}
    Annotation.objects.create(session=available_recording.session, participant=carol, kind="stroke", media_time=start + 1.5, payload=stroke)
    Annotation.objects.create(session=available_recording.session, participant=carol, kind="clear", media_time=start + 3.0)
    # Drawn on the live picture before the recording began: not part of the recording.
    Annotation.objects.create(session=available_recording.session, participant=carol, kind="stroke", media_time=start - 60, payload=stroke)
    # No media time: placed by when the server stored it.
    Annotation.objects.create(
        session=available_recording.session, participant=carol, kind="stroke", payload=stroke,
        at=available_recording.started_at + timedelta(seconds=2),
    )
    Annotation.objects.create(session=available_recording.session, participant=carol, kind="chat", media_time=start + 1, payload={"text": "hi"})
    replay = playback(signed_in(bob).get(f"/recordings/{available_recording.public_id}/"))["annotations"]
    assert [(a["kind"], a["t"]) for a in replay] == [("stroke", 1.5), ("stroke", 2.0), ("clear", 3.0)]
    assert replay[0]["points"] == [[0.1, 0.1], [0.5, 0.5]]


# ---------------------------------------------------------------- bookmarks and chapters


def test_a_resident_bookmarks_a_moment_and_sees_it_on_the_page(available_recording: Recording, resident: Any, dave: Any) -> None:
    client = signed_in(dave)
    response = client.post(
        f"/recordings/{available_recording.public_id}/bookmarks/", {"media_time": "1.25", "label": "clip applied"},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["bookmark"] == {
        "id": Bookmark.objects.get().pk, "t": 1.25, "label": "clip applied", "kind": "bookmark", "private": False,
    }
    marks = playback(client.get(f"/recordings/{available_recording.public_id}/"))["bookmarks"]
    assert [(m["t"], m["label"]) for m in marks] == [(1.25, "clip applied")]


def test_chapters_are_for_faculty_the_surgeon_and_the_records_office(available_recording: Recording, resident: Any, dave: Any, bob: Any) -> None:
    url = f"/recordings/{available_recording.public_id}/bookmarks/"
    chapter = {"media_time": "0.5", "label": "Exposure", "kind": "chapter"}
    assert signed_in(dave).post(url, chapter, HTTP_ACCEPT="application/json").status_code == 403
    assert signed_in(bob).post(url, chapter, HTTP_ACCEPT="application/json").status_code == 200
    assert list(Bookmark.objects.values_list("kind", "label")) == [("chapter", "Exposure")]


@pytest.mark.parametrize(
    ("form", "words"),
    [({"media_time": "9999", "label": "late"}, "within the recording"), ({"media_time": "1", "label": "  "}, "label"), ({"label": "x"}, "time")],
)
def test_a_bad_mark_is_refused_with_what_to_fix(available_recording: Recording, bob: Any, form: dict[str, str], words: str) -> None:
    response = signed_in(bob).post(f"/recordings/{available_recording.public_id}/bookmarks/", form, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert words in response.json()["message"]
    assert not Bookmark.objects.exists()


def test_an_outsider_cannot_bookmark(available_recording: Recording, eve: Any) -> None:
    response = signed_in(eve).post(f"/recordings/{available_recording.public_id}/bookmarks/", {"media_time": "1", "label": "x"})
    assert response.status_code == 403
    assert not Bookmark.objects.exists()


# ---------------------------------------------------------------- records office


def test_the_coordinator_holds_and_releases_a_recording(available_recording: Recording, alice: Any) -> None:
    client = signed_in(alice)
    url = f"/recordings/{available_recording.public_id}/hold/"
    assert client.post(url, {"hold": "1", "reason": "Claim 2024-17"}).status_code == 302
    available_recording.refresh_from_db()
    assert available_recording.legal_hold and available_recording.legal_hold_reason == "Claim 2024-17"
    assert "Release the legal hold" in client.get(f"/recordings/{available_recording.public_id}/").content.decode()
    client.post(url, {"hold": "0"})
    available_recording.refresh_from_db()
    assert not available_recording.legal_hold


def test_only_the_records_office_changes_a_hold_or_erases(available_recording: Recording, bob: Any) -> None:
    client = signed_in(bob)
    assert client.post(f"/recordings/{available_recording.public_id}/hold/", {"hold": "1", "reason": "x"}).status_code == 403
    assert client.post(f"/recordings/{available_recording.public_id}/erase/", {"reason": "x"}).status_code == 403
    available_recording.refresh_from_db()
    assert available_recording.status == Recording.Status.AVAILABLE and not available_recording.legal_hold
    page = client.get(f"/recordings/{available_recording.public_id}/").content.decode()
    assert 'id="hold-form"' not in page and "Request erasure" not in page and 'id="export-form"' not in page
    assert "Part 1 (MP4)" in page  # the surgeon may download, though


def test_erasure_requested_from_the_page_takes_the_recording_out_of_the_library(available_recording: Recording, alice: Any) -> None:
    client = signed_in(alice)
    response = client.post(f"/recordings/{available_recording.public_id}/erase/", {"reason": "Patient request R-12"})
    assert response.status_code == 302
    available_recording.refresh_from_db()
    assert available_recording.status in (Recording.Status.ERASING, Recording.Status.ERASED)
    assert listed(client) == []


def test_a_held_recording_is_not_erased(available_recording: Recording, alice: Any) -> None:
    services.recording_legal_hold(recording=available_recording, hold=True, reason="Claim", by=alice)
    response = signed_in(alice).post(f"/recordings/{available_recording.public_id}/erase/", {"reason": "x"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert "legal hold" in response.json()["message"]
    available_recording.refresh_from_db()
    assert available_recording.status == Recording.Status.AVAILABLE


def test_the_coordinator_exports_to_a_configured_destination(available_recording: Recording, alice: Any, tmp_path: Path, settings: Any) -> None:
    target = tmp_path / "network-share"
    target.mkdir()
    settings.EXPORT_DESTINATIONS = [str(target)]
    response = signed_in(alice).post(
        f"/recordings/{available_recording.public_id}/export/", {"destination": str(target)}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 200, response.content
    job = ExportJob.objects.get()
    assert response.json()["job"] == str(job.public_id)
    assert job.destination == str(target) and job.requested_by == alice


def test_an_export_elsewhere_than_the_configured_destinations_is_refused(available_recording: Recording, alice: Any, tmp_path: Path, settings: Any) -> None:
    settings.EXPORT_DESTINATIONS = [str(tmp_path / "share")]
    response = signed_in(alice).post(
        f"/recordings/{available_recording.public_id}/export/", {"destination": "/etc"}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 400
    assert not ExportJob.objects.exists()


def test_a_surgeon_cannot_export(available_recording: Recording, bob: Any, tmp_path: Path, settings: Any) -> None:
    settings.EXPORT_DESTINATIONS = [str(tmp_path)]
    response = signed_in(bob).post(f"/recordings/{available_recording.public_id}/export/", {"destination": str(tmp_path)}, HTTP_ACCEPT="application/json")
    assert response.status_code == 403
    assert not ExportJob.objects.exists()


def test_the_surgeon_downloads_a_part_and_it_is_audited(available_recording: Recording, bob: Any, clip: Path) -> None:
    response = signed_in(bob).get(f"/recordings/{available_recording.public_id}/download/1.mp4")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    assert b"".join(response.streaming_content) == clip.read_bytes()
    assert AuditEvent.objects.filter(action="recording.download", outcome="allowed", actor=f"user:{bob.pk}").exists()


def test_a_download_resumes_with_a_range_request(available_recording: Recording, bob: Any, clip: Path) -> None:
    data = clip.read_bytes()
    response = signed_in(bob).get(f"/recordings/{available_recording.public_id}/download/0.mp4", headers={"Range": "bytes=1000-"})
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    assert response["Content-Disposition"].startswith("attachment;")
    assert b"".join(response.streaming_content) == data[1000:]


def test_a_resident_may_watch_but_not_download(available_recording: Recording, resident: Any, dave: Any) -> None:
    response = signed_in(dave).get(f"/recordings/{available_recording.public_id}/download/0.mp4")
    assert response.status_code == 403
    assert AuditEvent.objects.filter(action="recording.download", outcome="refused", actor=f"user:{dave.pk}").exists()


# ---------------------------------------------------------------- progress over the WebSocket


async def progress_socket(recording: Recording, user: Any | None) -> tuple[WebsocketCommunicator, bool, Any]:
    from orstream.asgi import application

    headers = [(b"origin", b"http://127.0.0.1:8000")]
    if user is not None:
        client = Client()
        await database_sync_to_async(client.force_login)(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    communicator = WebsocketCommunicator(application, f"/ws/recordings/{recording.public_id}/", headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code


@pytest.mark.django_db(transaction=True)
async def test_export_progress_reaches_a_coordinator_on_the_recording_socket(available_recording: Recording, alice: Any) -> None:
    communicator, connected, _ = await progress_socket(available_recording, alice)
    assert connected
    await database_sync_to_async(services.recording_progress_send)(recording=available_recording, stage="export", percent=42)
    assert await communicator.receive_json_from(timeout=5) == {"type": "progress", "stage": "export", "percent": 42}
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_resident_allowed_to_watch_follows_progress_too(available_recording: Recording, resident: Any, dave: Any) -> None:
    communicator, connected, _ = await progress_socket(available_recording, dave)
    assert connected
    await database_sync_to_async(services.recording_progress_send)(recording=available_recording, stage="archive", percent=100)
    assert (await communicator.receive_json_from(timeout=5))["percent"] == 100
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("who", ["eve", None])
async def test_an_outsider_or_anonymous_socket_is_refused_and_hears_nothing(available_recording: Recording, eve: Any, who: str | None) -> None:
    communicator, connected, code = await progress_socket(available_recording, eve if who else None)
    assert not connected
    assert code == 4403
    refused = await database_sync_to_async(AuditEvent.objects.filter(action="recording.progress", outcome="refused").count)()
    assert refused == 1


def failed_recording(session: Session, bob: Any) -> Recording:
    return Recording.objects.create(
        session=session, started_by=bob, status=Recording.Status.FAILED, ended_at=timezone.now(),
        error="Segments are missing: registered [1].",
    )


def test_a_failed_recording_tells_the_coordinator_what_to_do_on_the_session_page_and_in_the_library(
    session: Session, bob: Any, alice: Any
) -> None:
    recording = failed_recording(session, bob)
    coordinator = signed_in(alice)
    for url in (f"/sessions/{session.public_id}/", "/recordings/"):
        page = coordinator.get(url).content.decode()
        assert "Recordings that need you" in page, url
        assert "Part of this recording never reached the server." in page
        assert "Nothing has been deleted" in page
        assert f"/recordings/{recording.public_id}/retry/" in page


def test_the_live_view_says_the_last_recording_failed(session: Session, bob: Any, alice: Any) -> None:
    failed_recording(session, bob)
    state = signed_in(alice).get(f"/live/{session.public_id}/state/").json()
    assert state["recording"]["state"] == "off"
    assert state["recording"]["problem"].startswith("Part of this recording never reached the server.")


def test_others_are_not_shown_the_recordings_a_coordinator_must_see_to(
    session: Session, bob: Any, dave: Any, resident: Any
) -> None:
    failed_recording(session, bob)
    assert "Recordings that need you" not in signed_in(dave).get("/recordings/").content.decode()


def test_check_again_sends_a_failed_recording_back_to_be_verified(session: Session, bob: Any, alice: Any, spool: Path) -> None:
    recording = failed_recording(session, bob)
    response = signed_in(alice).post(f"/recordings/{recording.public_id}/retry/", {"next": f"/sessions/{session.public_id}/"})
    assert response.status_code == 302 and response["Location"] == f"/sessions/{session.public_id}/"
    recording.refresh_from_db()
    # Nothing on the spool for it: verification waits for the edge (the sweep reports it if it never comes).
    assert recording.status == Recording.Status.FINALIZING and recording.error == ""
    assert signed_in(bob).post(f"/recordings/{recording.public_id}/retry/").status_code == 403

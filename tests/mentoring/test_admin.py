"""The mentoring admin changes nothing past the services: a role change, revoking links and a
session's status go through them, audited, and a live participant is dropped at once."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import Client

from consent.models import AuditEvent
from mentoring.models import JoinToken, Participant, Session

from .test_consumer_limits import closed_with
from .test_consumers import join, mint, next_of

pytestmark = pytest.mark.django_db(transaction=True)


def staff_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@hospital.example", "root-pass-Xy9!"))
    return client


def audited(action: str, participant: Participant) -> bool:
    return AuditEvent.objects.filter(action=action, target=f"participant:{participant.public_id}").exists()


async def test_revoking_links_in_the_admin_drops_the_live_mentor_and_is_audited(session, carol, consenting_patient):
    client = await sync_to_async(staff_client)()
    communicator, welcome = await join(session, await mint(participant=carol))
    assert welcome["type"] == "welcome"
    response = await sync_to_async(client.post)(
        "/admin/mentoring/participant/", {"action": "revoke_links", "_selected_action": [carol.pk]}
    )
    assert response.status_code == 302
    removed = await next_of(communicator, "removed")
    assert removed["reason"] == "revoked"
    assert await closed_with(communicator) == 4403
    assert await sync_to_async(audited)("token.revoke", carol)


async def test_a_role_changed_in_the_admin_goes_through_the_service(session, carol, consenting_patient):
    client = await sync_to_async(staff_client)()
    communicator, _ = await join(session, await mint(participant=carol))
    response = await sync_to_async(client.post)(
        f"/admin/mentoring/participant/{carol.pk}/change/",
        {"display_name": carol.display_name, "role": "observer", "email": carol.email, "is_external": "on"},
    )
    assert response.status_code == 302, response.content[:2000]
    # The mentor's link carried the mentor's role: it no longer admits them, and they are dropped now.
    assert (await next_of(communicator, "removed"))["reason"] == "revoked"
    assert await closed_with(communicator) == 4403
    await sync_to_async(carol.refresh_from_db)()
    assert carol.role == "observer"
    event = await sync_to_async(AuditEvent.objects.get)(action="participant.role", target=f"participant:{carol.public_id}")
    assert event.detail == {"from": "mentor", "to": "observer"}
    assert not await sync_to_async(JoinToken.objects.filter(participant=carol, revoked_at__isnull=True).exists)()


def test_the_surgeons_role_is_not_changed_in_the_admin(session, surgeon):
    client = staff_client()
    response = client.post(
        f"/admin/mentoring/participant/{surgeon.pk}/change/",
        {"display_name": surgeon.display_name, "role": "mentor", "email": surgeon.email}, follow=True,
    )
    assert "The operating surgeon&#x27;s place is set when the session is scheduled." in response.content.decode()
    surgeon.refresh_from_db()
    assert surgeon.role == "surgeon"
    assert not AuditEvent.objects.filter(action="participant.role").exists()


def test_a_sessions_status_changes_only_through_its_actions(session, alice, carol):
    client = staff_client()
    # The change form shows the status but does not take it.
    response = client.post(
        f"/admin/mentoring/session/{session.pk}/change/",
        {"procedure": session.procedure, "status": "ended", "participants-TOTAL_FORMS": "0",
         "participants-INITIAL_FORMS": "0", "patient_ref": session.patient_ref, "notes": ""},
    )
    assert response.status_code == 302, response.content[:3000]
    session.refresh_from_db()
    assert session.status == Session.Status.SCHEDULED
    # Going live and ending are the services', audited.
    for action, status in (("start", Session.Status.LIVE), ("end", Session.Status.ENDED)):
        client.post("/admin/mentoring/session/", {"action": action, "_selected_action": [session.pk]})
        session.refresh_from_db()
        assert session.status == status
        assert AuditEvent.objects.filter(action=f"session.{action}", session_public_id=str(session.public_id)).exists()
    # An ended session cannot be cancelled: the admin says why and changes nothing.
    response = client.post("/admin/mentoring/session/", {"action": "cancel", "_selected_action": [session.pk]}, follow=True)
    assert "cannot be cancelled" in response.content.decode()


@pytest.mark.parametrize("path", ["session/{session}/delete/", "participant/{carol}/delete/", "session/add/", "participant/add/"])
def test_nothing_is_added_or_deleted_in_the_admin(path: str, session: Any, carol: Any) -> None:
    client = staff_client()
    url = "/admin/mentoring/" + path.format(session=session.pk, carol=carol.pk)
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert Session.objects.filter(pk=session.pk).exists() and Participant.objects.filter(pk=carol.pk).exists()


def test_a_rooms_lower_feed_is_refused_in_the_admin_when_it_cannot_be_a_feed(room):
    client = staff_client()
    fields = {"name": room.name, "location": room.location, "is_active": "on", "edge_url": "",
              "ingest_url": "rtsp://encoder.or3/main"}
    for lower, message in [
        ("encoder.or3/stream2", "a network URL (rtsp://, srt://, udp://...) or an absolute file path"),
        ("ftp://encoder.or3/stream2", "starts with one of rtsp, rtsps"),
        ("rtsp:///stream2", "names its host"),
        ("rtsp://encoder.or3/main", "not the room&#x27;s feed itself"),
    ]:
        response = client.post(f"/admin/mentoring/operatingroom/{room.pk}/change/", {**fields, "lower_ingest_url": lower})
        assert response.status_code == 200, lower
        assert message in response.content.decode(), (lower, message)
    response = client.post(
        f"/admin/mentoring/operatingroom/{room.pk}/change/", {**fields, "lower_ingest_url": "rtsp://encoder.or3/stream2"}
    )
    assert response.status_code == 302
    room.refresh_from_db()
    assert room.lower_ingest_url == "rtsp://encoder.or3/stream2"

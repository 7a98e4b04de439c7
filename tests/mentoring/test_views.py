"""The coordinator's pages and the join link, through Django's test client."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from mentoring import services
from mentoring.models import Participant, Session


@pytest.fixture
def coordinator_client(client, alice):
    client.force_login(alice)
    return client


def test_anonymous_users_are_sent_to_sign_in(client, db):
    response = client.get("/sessions/new/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_non_coordinators_get_a_refusal_page(client, eve):
    client.force_login(eve)
    response = client.get("/sessions/new/")
    assert response.status_code == 403
    assert "coordinator group" in response.content.decode()


def test_a_coordinator_schedules_a_session_in_a_local_time_zone(coordinator_client, room, bob):
    start = timezone.now() + timedelta(days=2)
    response = coordinator_client.post(
        "/sessions/new/",
        {
            "procedure": "Vestibular schwannoma resection", "room": room.pk, "surgeon": bob.pk,
            "planned_start": start.strftime("%Y-%m-%dT08:00"), "planned_end": start.strftime("%Y-%m-%dT11:30"),
            "time_zone": "America/New_York", "patient_ref": "CASE-7",
        },
    )
    session = Session.objects.get(procedure="Vestibular schwannoma resection")
    assert response.status_code == 302 and response["Location"] == f"/sessions/{session.public_id}/"
    local = session.planned_start.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
    assert (local.hour, local.minute) == (8, 0)
    assert session.planned_end - session.planned_start == timedelta(hours=3, minutes=30)


def test_the_form_names_the_clashing_session(coordinator_client, session, room, bob):
    local = session.planned_start.astimezone(__import__("zoneinfo").ZoneInfo("UTC"))
    response = coordinator_client.post(
        "/sessions/new/",
        {
            "procedure": "Clipping", "room": room.pk, "surgeon": bob.pk,
            "planned_start": local.strftime("%Y-%m-%dT%H:%M"),
            "planned_end": (local + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"), "time_zone": "UTC",
        },
    )
    assert response.status_code == 400
    assert "already booked for Microvascular decompression" in response.content.decode()


@pytest.mark.parametrize(
    ("start", "end", "zone", "words"),
    [
        ("2030-01-01T10:00", "2030-01-01T09:00", "UTC", "The end must be after the start."),
        ("2001-01-01T10:00", "2001-01-01T11:00", "UTC", "The start is in the past"),
        ("2030-01-01T10:00", "2030-01-01T11:00", "Atlantis/Capital", "Unknown time zone"),
        ("tomorrow", "2030-01-01T11:00", "UTC", "Enter a date and time"),
    ],
)
def test_bad_input_gets_form_errors_not_a_crash(coordinator_client, room, bob, start, end, zone, words):
    response = coordinator_client.post(
        "/sessions/new/",
        {"procedure": "Clipping", "room": room.pk, "surgeon": bob.pk, "planned_start": start, "planned_end": end, "time_zone": zone},
    )
    assert response.status_code == 400
    assert words in response.content.decode()
    assert not Session.objects.filter(procedure="Clipping").exists()


def test_inviting_shows_the_link_once_and_mails_it(coordinator_client, session, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = coordinator_client.post(
            f"/sessions/{session.public_id}/participants/",
            {"role": "mentor", "display_name": "Dr Carol Mentor", "email": "carol@reference.example", "is_external": "on",
             "send_invitation": "on"},
            follow=True,
        )
    assert response.status_code == 200
    participant = Participant.objects.get(display_name="Dr Carol Mentor")
    assert participant.is_external and participant.invited_at is not None
    assert "/join/" in response.content.decode()
    assert mailoutbox[0].to == ["carol@reference.example"]


def test_the_calendar_download_is_an_ics_file(coordinator_client, session):
    response = coordinator_client.get(f"/sessions/{session.public_id}/calendar.ics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/calendar")
    assert b"BEGIN:VTIMEZONE" in response.content and b"TZID:Europe/Paris" in response.content


def test_the_session_page_lists_participants_for_the_coordinator(coordinator_client, session, carol):
    page = coordinator_client.get(f"/sessions/{session.public_id}/").content.decode()
    assert "Dr Carol Mentor" in page and "external" in page


def test_an_outsider_cannot_see_a_session(client, eve, session):
    client.force_login(eve)
    assert client.get(f"/sessions/{session.public_id}/").status_code == 403
    assert client.get(f"/sessions/{session.public_id}/calendar.ics").status_code == 403


@pytest.mark.parametrize(
    ("make_token", "words"),
    [
        (lambda p, alice: services.join_token_mint(participant=p, valid_for=timedelta(seconds=-5)), "expired"),
        (lambda p, alice: (lambda t: (services.join_token_revoke(participant=p, by=alice), t)[1])(services.join_token_mint(participant=p)), "withdrawn"),
        (lambda p, alice: services.join_token_mint(participant=p)[:-4] + "AAAA", "not valid"),
    ],
)
def test_bad_join_links_get_a_clear_403_page(client, carol, alice, consenting_patient, make_token, words):
    response = client.get(f"/join/{make_token(carol, alice)}/")
    assert response.status_code == 403
    body = response.content.decode()
    assert words in body and "Traceback" not in body


def test_a_join_link_without_consent_names_the_missing_purpose(client, carol, refusing_patient):
    response = client.get(f"/join/{services.join_token_mint(participant=carol)}/")
    assert response.status_code == 403 and "live_external" in response.content.decode()


def test_a_good_join_link_opens_the_page_for_the_role(client, carol, consenting_patient):
    token = services.join_token_mint(participant=carol)
    response = client.get(f"/join/{token}/")
    assert response.status_code == 200
    assert response["Referrer-Policy"] == "no-referrer"
    assert "orstream-bootstrap" in response.content.decode()


CONFIRMED = {"confirmed": "yes"}


def test_revoke_and_remove_from_the_page(coordinator_client, carol, consenting_patient):
    token = services.join_token_mint(participant=carol)
    assert coordinator_client.post(f"/participants/{carol.public_id}/revoke/", CONFIRMED).status_code == 302
    with pytest.raises(services.JoinRefused):
        services.join_token_check(token=token)
    coordinator_client.post(f"/participants/{carol.public_id}/remove/", CONFIRMED)
    carol.refresh_from_db()
    assert carol.removed_at is not None


def test_revoke_and_remove_ask_first_and_do_nothing_until_confirmed(coordinator_client, carol, consenting_patient):
    token = services.join_token_mint(participant=carol)
    for verb, words in (("revoke", "Revoke their links"), ("remove", "Remove them")):
        response = coordinator_client.post(f"/participants/{carol.public_id}/{verb}/")
        assert response.status_code == 200
        page = response.content.decode()
        assert words in page and 'name="confirmed" value="yes"' in page and "onclick" not in page
    assert services.join_token_check(token=token).participant == carol
    carol.refresh_from_db()
    assert carol.removed_at is None


def test_session_lifecycle_buttons(coordinator_client, session):
    coordinator_client.post(f"/sessions/{session.public_id}/start/")
    session.refresh_from_db()
    assert session.status == "live"
    assert f"/sessions/{session.public_id}/live/" in coordinator_client.get(f"/sessions/{session.public_id}/").content.decode()
    response = coordinator_client.post(f"/sessions/{session.public_id}/cancel/", CONFIRMED, follow=True)
    assert "cannot be cancelled" in response.content.decode()
    asked = coordinator_client.post(f"/sessions/{session.public_id}/end/")
    assert asked.status_code == 200 and "End the session" in asked.content.decode()
    session.refresh_from_db()
    assert session.status == "live"
    coordinator_client.post(f"/sessions/{session.public_id}/end/", CONFIRMED)
    session.refresh_from_db()
    assert session.status == "ended"


def test_cancelling_a_session_asks_first(coordinator_client, session):
    asked = coordinator_client.post(f"/sessions/{session.public_id}/cancel/")
    assert asked.status_code == 200 and "Cancel the session" in asked.content.decode()
    session.refresh_from_db()
    assert session.status == "scheduled"
    coordinator_client.post(f"/sessions/{session.public_id}/cancel/", CONFIRMED)
    session.refresh_from_db()
    assert session.status == "cancelled"


def test_the_pages_the_email_and_the_ics_agree_on_the_sessions_own_time(
    coordinator_client, alice, bob, room, mailoutbox, django_capture_on_commit_callbacks
):
    import zoneinfo

    from icalendar import Calendar

    paris = zoneinfo.ZoneInfo("Europe/Paris")
    day = (timezone.now() + timedelta(days=40)).astimezone(paris).date()
    start = timezone.datetime(day.year, day.month, day.day, 9, 0, tzinfo=paris)
    session = services.session_schedule(
        room=room, procedure="Clipping", surgeon=bob, planned_start=start, planned_end=start + timedelta(hours=1),
        time_zone="Europe/Paris", created_by=alice,
    )
    with django_capture_on_commit_callbacks(execute=True):
        coordinator_client.post(
            f"/sessions/{session.public_id}/participants/",
            {"role": "mentor", "display_name": "Dr Carol Mentor", "email": "carol@reference.example", "send_invitation": "on"},
        )
    shown = f"{start:%a %d %b %Y} 09:00-10:00 (Europe/Paris)"
    detail = coordinator_client.get(f"/sessions/{session.public_id}/").content.decode()
    listing = coordinator_client.get("/").content.decode()
    assert shown in detail and shown in listing
    assert " UTC" not in detail and " UTC" not in listing
    assert shown in mailoutbox[0].body
    event = Calendar.from_ical(coordinator_client.get(f"/sessions/{session.public_id}/calendar.ics").content).walk("VEVENT")[0]
    assert str(event["dtstart"].params["TZID"]) == "Europe/Paris"
    assert event.decoded("dtstart").replace(tzinfo=None) == start.replace(tzinfo=None)
    assert event.decoded("dtend").hour == 10


def test_opening_the_live_view_again_reuses_the_coordinators_participant(coordinator_client, session, alice):
    invited = services.participant_add(session=session, role="coordinator", display_name="Alice Coord", email=alice.email, by=alice)
    services.session_start(session=session, by=alice)
    for _ in range(2):
        page = coordinator_client.get(f"/sessions/{session.public_id}/live/")
        assert page.status_code == 200
    coordinators = list(session.participants.filter(role="coordinator"))
    assert coordinators == [invited]
    invited.refresh_from_db()
    assert invited.user == alice


def test_a_revoked_participant_shows_as_revoked_and_gets_a_new_link(
    coordinator_client, session, carol, consenting_patient, mailoutbox, django_capture_on_commit_callbacks
):
    old = services.join_token_mint(participant=carol)
    coordinator_client.post(f"/participants/{carol.public_id}/revoke/", CONFIRMED)
    page = coordinator_client.get(f"/sessions/{session.public_id}/").content.decode()
    assert f'data-participant="{carol.public_id}" data-link="revoked"' in page
    assert "Send Dr Carol Mentor a new link" in page and "Revoke the links of Dr Carol Mentor" not in page
    with django_capture_on_commit_callbacks(execute=True):
        response = coordinator_client.post(f"/participants/{carol.public_id}/reinvite/", follow=True)
    body = response.content.decode()
    token = body.split("/join/")[1].split("/")[0]
    assert services.join_token_check(token=token).participant == carol
    with pytest.raises(services.JoinRefused):
        services.join_token_check(token=old)
    assert mailoutbox[-1].to == ["carol@reference.example"] and token in mailoutbox[-1].body
    assert f'data-participant="{carol.public_id}" data-link="active"' in body

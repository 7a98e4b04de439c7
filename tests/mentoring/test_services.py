from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from icalendar import Calendar

from consent.models import AuditEvent
from mentoring import services
from mentoring.models import JoinToken, Role, Session
from orstream.edge import protocol


def tomorrow(hours: float = 0) -> timezone.datetime:
    return (timezone.now() + timedelta(days=1, hours=hours)).replace(microsecond=0)


def test_scheduling_makes_the_surgeon_the_first_participant(session, bob):
    assert session.status == Session.Status.SCHEDULED
    surgeon = session.participants.get()
    assert surgeon.role == "surgeon" and surgeon.user == bob


def test_a_room_cannot_be_double_booked_and_the_error_names_the_clash(session, room, bob, alice):
    with pytest.raises(services.SchedulingError) as error:
        services.session_schedule(
            room=room, procedure="Clipping", surgeon=bob, planned_start=session.planned_start + timedelta(hours=1),
            planned_end=session.planned_end + timedelta(hours=1), time_zone="Europe/Paris", created_by=alice,
        )
    assert "Microvascular decompression" in str(error.value)
    assert error.value.field == "room"


def test_back_to_back_sessions_do_not_clash(session, room, bob, alice):
    later = services.session_schedule(
        room=room, procedure="Clipping", surgeon=bob, planned_start=session.planned_end,
        planned_end=session.planned_end + timedelta(hours=2), time_zone="UTC", created_by=alice,
    )
    assert later.pk != session.pk


def test_a_cancelled_session_frees_its_room(session, room, bob, alice):
    services.session_cancel(session=session, by=alice)
    again = services.session_schedule(
        room=room, procedure="Clipping", surgeon=bob, planned_start=session.planned_start,
        planned_end=session.planned_end, time_zone="UTC", created_by=alice,
    )
    assert again.status == "scheduled"


@pytest.mark.parametrize(
    ("start", "end", "zone", "field", "words"),
    [
        (tomorrow(2), tomorrow(1), "UTC", "planned_end", "after the start"),
        (tomorrow(-48), tomorrow(-47), "UTC", "planned_start", "in the past"),
        (tomorrow(1), tomorrow(2), "Mars/Olympus", "time_zone", "Unknown time zone"),
    ],
)
def test_bad_times_get_a_clear_error_on_the_right_field(room, bob, alice, start, end, zone, field, words):
    with pytest.raises(services.SchedulingError) as error:
        services.session_schedule(
            room=room, procedure="Clipping", surgeon=bob, planned_start=start, planned_end=end,
            time_zone=zone, created_by=alice,
        )
    assert error.value.field == field
    assert words in str(error.value)


def test_invitation_mails_a_join_link_with_an_icalendar_request(session, carol, alice, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        url = services.invitation_send(participant=carol, by=alice)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["carol@reference.example"]
    assert url in message.body
    name, content, mimetype = message.attachments[0]
    assert mimetype.startswith("text/calendar; method=REQUEST")
    cal = Calendar.from_ical(content)
    assert cal["method"] == "REQUEST"
    assert [c.name for c in cal.walk("VTIMEZONE")] == ["VTIMEZONE"]
    event = cal.walk("VEVENT")[0]
    assert str(event["uid"]) == session.calendar_uid
    assert event.decoded("dtstart") == session.planned_start
    assert str(event["dtstart"].params["TZID"]) == "Europe/Paris"
    assert "carol@reference.example" in str(event["attendee"])
    assert "CASE-0042" not in message.body + str(content)


def test_cancelling_sends_a_calendar_cancel_and_kills_the_links(session, carol, alice, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        url = services.invitation_send(participant=carol, by=alice)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.session_cancel(session=session, by=alice)
    cal = Calendar.from_ical(mail.outbox[0].attachments[0][1])
    assert cal["method"] == "CANCEL"
    assert cal.walk("VEVENT")[0]["status"] == "CANCELLED"
    assert int(cal.walk("VEVENT")[0]["sequence"]) == 1
    token = url.rstrip("/").rsplit("/", 1)[1]
    with pytest.raises(services.JoinRefused) as refusal:
        services.join_token_check(token=token)
    assert refusal.value.reason == "revoked"


def test_only_a_hash_of_the_token_is_stored(carol):
    token = services.join_token_mint(participant=carol)
    row = JoinToken.objects.get(participant=carol)
    assert token not in row.token_hash and len(row.token_hash) == 64
    assert not JoinToken.objects.filter(token_hash=token).exists()


def test_a_valid_token_admits_its_participant_with_consent(session, carol, consenting_patient):
    token = services.join_token_mint(participant=carol)
    admission = services.join_token_check(token=token, session_public_id=str(session.public_id))
    assert admission.participant == carol


def test_expired_token_is_refused_and_audited(carol, consenting_patient):
    token = services.join_token_mint(participant=carol, valid_for=timedelta(seconds=-1))
    with pytest.raises(services.JoinRefused) as refusal:
        services.join_token_check(token=token)
    assert refusal.value.reason == "expired"
    assert AuditEvent.objects.filter(action="session.join", outcome="refused", detail__reason="expired").exists()


def test_revoked_token_is_refused(carol, alice, consenting_patient):
    token = services.join_token_mint(participant=carol)
    services.join_token_revoke(participant=carol, by=alice)
    with pytest.raises(services.JoinRefused) as refusal:
        services.join_token_check(token=token)
    assert refusal.value.reason == "revoked"


def test_tampered_token_is_refused(carol, consenting_patient):
    token = services.join_token_mint(participant=carol)
    payload, signature = token.split(":", 1)
    claims = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert b'"r":"mentor"' in claims
    forged_claims = claims.replace(b'"r":"mentor"', b'"r":"surgeon"')
    forged = base64.urlsafe_b64encode(forged_claims).rstrip(b"=").decode() + ":" + signature
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    for bad in (forged, flipped, "garbage"):
        with pytest.raises(services.JoinRefused) as refusal:
            services.join_token_check(token=bad)
        assert refusal.value.reason in {"tampered", "unknown"}


def test_a_token_for_another_session_is_refused(session, carol, room, bob, alice, consenting_patient):
    other = services.session_schedule(
        room=room, procedure="Other", surgeon=bob, planned_start=session.planned_end + timedelta(hours=1),
        planned_end=session.planned_end + timedelta(hours=2), time_zone="UTC", created_by=alice,
    )
    token = services.join_token_mint(participant=carol)
    with pytest.raises(services.JoinRefused) as refusal:
        services.join_token_check(token=token, session_public_id=str(other.public_id))
    assert refusal.value.reason == "other_session"


def test_external_mentor_is_refused_without_live_external_consent(session, carol, consent_form, alice):
    from consent import services as consent_services

    consent_services.consent_record(
        session=session, form=consent_form, obtained_by=alice, attestation="signed",
        decisions={"record": True, "live_internal": True, "live_external": False, "archive_training": True, "research": False},
    )
    token = services.join_token_mint(participant=carol)
    with pytest.raises(services.JoinRefused) as refusal:
        services.join_token_check(token=token)
    assert refusal.value.reason == "consent"
    assert "live_external" in str(refusal.value)


def test_resident_watches_with_internal_consent_only(session, resident, consent_form, alice):
    from consent import services as consent_services

    consent_services.consent_record(
        session=session, form=consent_form, obtained_by=alice, attestation="signed",
        decisions={"record": False, "live_internal": True, "live_external": False, "archive_training": False, "research": False},
    )
    token = services.join_token_mint(participant=resident)
    assert services.join_token_check(token=token).participant == resident


def test_specialist_link_admits_one_connection_at_a_time_and_only_while_live(session, alice, bob, consenting_patient):
    with pytest.raises(services.SchedulingError, match="live"):
        services.specialist_link_mint(session=session, by=alice, minutes=15, display_name="Dr Neuro")
    services.session_start(session=session, by=alice)
    participant, url = services.specialist_link_mint(session=session, by=bob, minutes=15, display_name="Dr Neuro")
    token = url.rstrip("/").rsplit("/", 1)[1]
    row = JoinToken.objects.get(participant=participant)
    assert row.one_time and timedelta(minutes=14) < row.expires_at - timezone.now() <= timedelta(minutes=15)
    services.join_token_check(token=token, consume=True)
    services.presence_record(participant=participant, kind="joined")
    # While the specialist is connected, nobody else can use the link...
    with pytest.raises(services.JoinRefused) as refusal:
        services.join_token_check(token=token, consume=True)
    assert refusal.value.reason == "used"
    # ...and after a network blip the specialist gets back in.
    services.presence_record(participant=participant, kind="left")
    assert services.join_token_check(token=token, consume=True).participant == participant


def test_only_coordinator_or_surgeon_may_call_a_specialist(session, alice, eve, consenting_patient):
    services.session_start(session=session, by=alice)
    with pytest.raises(services.SchedulingError, match="coordinator or the operating surgeon"):
        services.specialist_link_mint(session=session, by=eve, minutes=10, display_name="Dr X")
    with pytest.raises(services.SchedulingError, match="between 1 and"):
        services.specialist_link_mint(session=session, by=alice, minutes=100000, display_name="Dr X")


def test_residents_cannot_draw_but_mentors_can(carol, resident):
    stroke = {"tool": "arrow", "color": "#ffeb3b", "points": [[0.1, 0.2], [0.4, 0.5]], "media_time": 12.5}
    annotation = services.annotation_add(participant=carol, kind="stroke", message=stroke)
    assert annotation.payload["points"] == [[0.1, 0.2], [0.4, 0.5]] and annotation.media_time == 12.5
    with pytest.raises(services.AnnotationError):
        services.annotation_add(participant=resident, kind="stroke", message=stroke)


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_what_the_bootstrap_says_a_role_may_do_is_what_the_services_allow(session, role):
    """The pages offer drawing and chat from the bootstrap's ``may``; the services refuse by the
    same rule, so a page never offers what the site then refuses (or hides what it allows)."""
    participant = services.participant_add(session=session, role=role, display_name=f"A {role}")
    may = services.page_bootstrap(session=session, participant=participant, token="t")["may"]
    choices = services.drawing_choices()
    stroke = {"tool": choices["tools"][0]["value"], "color": choices["colours"][0]["value"], "points": [[0.1, 0.2]]}
    for kind, message, allowed in (("stroke", stroke, may["draw"]), ("chat", {"text": "hello"}, may["chat"])):
        if allowed:
            services.annotation_add(participant=participant, kind=kind, message=message)
        else:
            with pytest.raises(services.AnnotationError):
                services.annotation_add(participant=participant, kind=kind, message=message)
    # The edge forwards the voice of TALK_ROLES only; the coordinator's live view only monitors.
    assert may["talk"] == (role in protocol.TALK_ROLES)


def test_every_tool_and_colour_the_pickers_offer_is_accepted(carol):
    choices = services.drawing_choices()
    for tool in choices["tools"]:
        for colour in choices["colours"]:
            message = {"tool": tool["value"], "color": colour["value"], "points": [[0.5, 0.5]]}
            services.annotation_add(participant=carol, kind="stroke", message=message)
    assert len(choices["tools"]) == len(services.STROKE_TOOLS) and len(choices["colours"]) == len(services.STROKE_COLOURS)


@pytest.mark.parametrize(
    "bad",
    [
        {"tool": "laser", "color": "#ffeb3b", "points": [[0, 0]]},
        {"tool": "arrow", "color": "#123456", "points": [[0, 0]]},
        {"tool": "arrow", "color": "#ffeb3b", "points": [[0, 2]]},
        {"tool": "arrow", "color": "#ffeb3b", "points": []},
        {"tool": "arrow", "color": "#ffeb3b", "points": [[0.1, 0.1]], "media_time": "soon"},
        # Not JSON to a browser: a broadcast carrying one would break every page that receives it.
        {"tool": "arrow", "color": "#ffeb3b", "points": [[0.1, 0.1]], "media_time": float("nan")},
        {"tool": "arrow", "color": "#ffeb3b", "points": [[0.1, 0.1]], "media_time": float("inf")},
        {"tool": ["arrow"], "color": "#ffeb3b", "points": [[0.1, 0.1]]},
    ],
)
def test_malformed_strokes_are_refused(carol, bad):
    with pytest.raises(services.AnnotationError):
        services.annotation_add(participant=carol, kind="stroke", message=bad)


def test_ice_servers_are_short_lived_turn_credentials(carol, settings):
    settings.TURN_URLS = ["turn:turn.hospital.example:3478"]
    settings.TURN_SECRET = "s3cret"
    (server,) = services.ice_servers_for(participant=carol)
    expires = int(server["username"].split(":")[0])
    assert 0 < expires - timezone.now().timestamp() <= settings.TURN_TTL_SECONDS
    import hashlib
    import hmac

    expected = base64.b64encode(hmac.new(b"s3cret", server["username"].encode(), hashlib.sha1).digest()).decode()
    assert server["credential"] == expected


def test_a_mail_server_that_refuses_fails_neither_the_invitation_nor_the_link(
    session, carol, alice, settings, django_capture_on_commit_callbacks, caplog
):
    import socket

    with socket.socket() as probe:  # a port nobody listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", closed_port
    with django_capture_on_commit_callbacks(execute=True):
        url = services.invitation_send(participant=carol, by=alice)
    carol.refresh_from_db()
    assert carol.invited_at is not None
    assert carol.tokens.filter(revoked_at__isnull=True).count() == 1
    assert "could not be sent" in caplog.text
    assert url.rstrip("/").rsplit("/", 1)[1] not in caplog.text


def test_a_join_link_crosses_the_job_queue_sealed():
    url = "https://orstream.example/join/secret-token-value/"
    sealed = services.link_seal(url)
    assert "secret-token-value" not in sealed
    assert services.link_unseal(sealed) == url


def test_a_room_names_a_lower_feed_only_beside_its_own_feed(db):
    with pytest.raises(services.SchedulingError, match="needs the room's own feed") as refused:
        services.room_create(name="OR 9", lower_ingest_url="rtsp://encoder.or9/stream2")
    assert refused.value.field == "lower_ingest_url"
    with pytest.raises(services.SchedulingError, match="absolute file path"):
        services.room_create(name="OR 9", ingest_url="rtsp://encoder.or9/main", lower_ingest_url="stream2")
    room = services.room_create(name="OR 9", ingest_url="rtsp://encoder.or9/main", lower_ingest_url="rtsp://encoder.or9/stream2")
    assert room.lower_ingest_url == "rtsp://encoder.or9/stream2"

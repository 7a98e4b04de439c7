"""A withdrawal acts on what is live, through the effects mentoring and recordings register with
consent: recordings restricted at once, the edge stops recording, viewers the remaining consent
does not cover are dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consent import services, tasks
from consent.effects import consent_effects
from consent.models import AuditEvent, ConsentRecord
from mentoring import services as mentoring_services
from mentoring.models import Participant, Session
from recordings import services as recording_services
from recordings.models import Recording
from tests.conftest import ALL_PURPOSES
from tests.recordings.fixtures import ClipFacts, FakeEdge, register_segments


@pytest.fixture
def live_recording(session: Session, consenting_patient: ConsentRecord, bob: Any, fake_edge: FakeEdge) -> Recording:
    mentoring_services.session_start(session=session, by=bob)
    return recording_services.recording_start(session=session, by=bob)


def test_withdrawal_restricts_recordings_and_stops_the_live_one_at_the_edge(
    live_recording: Recording, consenting_patient: ConsentRecord, alice: Any, fake_edge: FakeEdge,
    clip: Path, clip_facts: ClipFacts, spool: Path, django_capture_on_commit_callbacks: Any,
) -> None:
    register_segments(live_recording, clip, clip_facts, spool, 2)
    with django_capture_on_commit_callbacks(execute=True):
        services.consent_withdraw(record=consenting_patient, by=alice, reason="patient asked")
    live_recording.refresh_from_db()
    assert live_recording.status == Recording.Status.RESTRICTED
    assert live_recording.restricted_at is not None
    session_id = live_recording.session.public_id
    assert ("DELETE", f"/sessions/{session_id}/recording", None) in fake_edge.calls
    # Still verified (it may be held), and it stays restricted.
    assert live_recording.verified_at is not None and live_recording.ended_at is not None
    with pytest.raises(recording_services.RecordingAccessDenied, match="withdrew consent"):
        recording_services.recording_access_check(recording=live_recording, user=alice, action="recording.view")


def test_restriction_is_in_the_withdrawals_own_transaction(live_recording: Recording, consenting_patient: ConsentRecord, alice: Any) -> None:
    # No on-commit callback has run here: the status is already restricted.
    services.consent_withdraw(record=consenting_patient, by=alice)
    live_recording.refresh_from_db()
    assert live_recording.status == Recording.Status.RESTRICTED
    assert AuditEvent.objects.filter(action="recording.restrict", target=f"recording:{live_recording.public_id}").exists()


def test_withdrawal_drops_connected_viewers_it_no_longer_covers(
    session: Session, consenting_patient: ConsentRecord, carol: Participant, surgeon: Participant, alice: Any,
    fake_edge: FakeEdge, django_capture_on_commit_callbacks: Any,
) -> None:
    mentoring_services.presence_record(participant=carol, kind="joined")
    mentoring_services.presence_record(participant=surgeon, kind="joined")
    with django_capture_on_commit_callbacks(execute=True):
        services.consent_withdraw(record=consenting_patient, by=alice)
    dropped = AuditEvent.objects.filter(action="session.drop")
    assert [e.target for e in dropped] == [f"participant:{carol.public_id}"]
    assert ("DELETE", f"/sessions/{session.public_id}/participants/{carol.public_id}", None) in fake_edge.calls
    assert not any(surgeon_path in c[1] for c in fake_edge.calls for surgeon_path in [str(surgeon.public_id)])


def test_a_newer_record_that_refuses_recording_acts_like_a_withdrawal(
    live_recording: Recording, consent_form: Any, session: Session, alice: Any, fake_edge: FakeEdge,
    clip: Path, clip_facts: ClipFacts, spool: Path, django_capture_on_commit_callbacks: Any,
) -> None:
    register_segments(live_recording, clip, clip_facts, spool, 2)
    with django_capture_on_commit_callbacks(execute=True):
        services.consent_record(
            session=session, form=consent_form, decisions={p: p in ("live_internal", "live_external") for p in ALL_PURPOSES},
            obtained_by=alice, attestation="Patient changed their mind about the recording",
        )
    live_recording.refresh_from_db()
    assert live_recording.status == Recording.Status.RESTRICTED
    assert ("DELETE", f"/sessions/{session.public_id}/recording", None) in fake_edge.calls


def test_an_unreachable_edge_on_withdrawal_is_audited(
    live_recording: Recording, consenting_patient: ConsentRecord, alice: Any, fake_edge: FakeEdge,
    django_capture_on_commit_callbacks: Any, monkeypatch: Any,
) -> None:
    monkeypatch.setattr(tasks, "backoff", lambda retries: 0.0)  # count the attempts, do not wait for them
    fake_edge.fail_with = 503
    with django_capture_on_commit_callbacks(execute=True):
        services.consent_withdraw(record=consenting_patient, by=alice)
    # Refused on every attempt of the retried job (eager here, as on the embedded default), then
    # the job gives up and says so in the audit trail.
    attempts = tasks.EAGER_ATTEMPTS
    assert AuditEvent.objects.filter(action="recording.stop", outcome="refused").count() == attempts
    assert len([c for c in fake_edge.calls if c == ("DELETE", f"/sessions/{live_recording.session.public_id}/recording", None)]) == attempts
    gave_up = AuditEvent.objects.get(action="consent.effect", target="effect:recordings.restrict_and_stop")
    assert gave_up.outcome == "refused" and "has not stopped the recording" in gave_up.detail["error"]
    live_recording.refresh_from_db()
    assert live_recording.status == Recording.Status.RESTRICTED and live_recording.ended_at is None


def test_a_stop_that_fails_once_is_retried_and_the_recording_stops(
    live_recording: Recording, consenting_patient: ConsentRecord, alice: Any, fake_edge: FakeEdge,
    django_capture_on_commit_callbacks: Any, monkeypatch: Any,
) -> None:
    from orstream import edgeclient

    real_stop = edgeclient.recording_stop
    failures = [edgeclient.EdgeError("The media server cannot be reached. Try again in a moment.")]

    def flaky_stop(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real_stop(*args, **kwargs)

    monkeypatch.setattr(edgeclient, "recording_stop", flaky_stop)
    monkeypatch.setattr(tasks, "backoff", lambda retries: 0.0)
    with django_capture_on_commit_callbacks(execute=True):
        services.consent_withdraw(record=consenting_patient, by=alice)
    live_recording.refresh_from_db()
    assert live_recording.status == Recording.Status.RESTRICTED and live_recording.ended_at is not None
    assert AuditEvent.objects.filter(action="recording.stop", outcome="refused").count() == 1
    assert AuditEvent.objects.filter(action="recording.stop", outcome="allowed").count() == 1
    assert not AuditEvent.objects.filter(action="consent.effect").exists()


def test_mentoring_and_recordings_register_their_consent_effects() -> None:
    names = consent_effects.names()
    assert "mentoring.drop_uncovered" in names and "recordings.restrict_and_stop" in names
    assert consent_effects.get("recordings.restrict_and_stop").within is not None


def test_withdrawing_through_the_consent_page_restricts_the_recordings(
    available_recording: Recording, consenting_patient: ConsentRecord, alice: Any, fake_edge: FakeEdge,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from django.test import Client

    client = Client()
    client.force_login(alice)
    session = available_recording.session
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/consent/sessions/{session.public_id}/records/{consenting_patient.pk}/withdraw/", {"reason": "ward round"}
        )
    assert response.status_code == 302
    available_recording.refresh_from_db()
    assert available_recording.status == Recording.Status.RESTRICTED
    with pytest.raises(recording_services.RecordingAccessDenied, match="withdrew consent"):
        recording_services.recording_access_check(recording=available_recording, user=alice, action="recording.download")

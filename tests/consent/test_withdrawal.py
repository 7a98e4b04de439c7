"""A withdrawal acts on what is live: recordings restricted at once, the edge stops recording,
viewers the remaining consent does not cover are dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consent import services
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
            session=session, form=consent_form, decisions={p: p != "record" for p in ALL_PURPOSES},
            obtained_by=alice, attestation="Patient changed their mind about the recording",
        )
    live_recording.refresh_from_db()
    assert live_recording.status == Recording.Status.RESTRICTED
    assert ("DELETE", f"/sessions/{session.public_id}/recording", None) in fake_edge.calls


def test_an_unreachable_edge_on_withdrawal_is_audited(
    live_recording: Recording, consenting_patient: ConsentRecord, alice: Any, fake_edge: FakeEdge,
    django_capture_on_commit_callbacks: Any,
) -> None:
    fake_edge.fail_with = 503
    with django_capture_on_commit_callbacks(execute=True):
        services.consent_withdraw(record=consenting_patient, by=alice)
    # Refused once after commit, then again by the retrying task.
    assert AuditEvent.objects.filter(action="recording.stop", outcome="refused").count() >= 2
    assert [c for c in fake_edge.calls if c[0] == "DELETE"]
    live_recording.refresh_from_db()
    assert live_recording.status == Recording.Status.RESTRICTED and live_recording.ended_at is None

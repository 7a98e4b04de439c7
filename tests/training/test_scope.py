"""The recordings library scoped by programme: faculty and residents see their programme's
recordings and the curated library's, nothing of another programme (list, player page, video,
API), and each refusal is audited; coordinators and the operating surgeon keep what they see."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from consent.models import AuditEvent
from recordings.models import Recording
from tests.conftest import make_user
from tests.recordings.test_pages import second_session
from training import services
from training.models import Programme

from .conftest import available, member, training_refused

OUTSIDE = "outside the user's programme and the library"


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def listed(user: Any) -> set[str]:
    response = signed_in(user).get("/recordings/")
    assert response.status_code == 200
    return {str(r.public_id) for r in response.context["recordings"]}


def api_listed(user: Any) -> set[str]:
    response = signed_in(user).get("/api/recordings/")
    assert response.status_code == 200
    return {r["id"] for r in response.json()}


def refused_outside(user: Any, recording: Recording, action: str) -> bool:
    return AuditEvent.objects.filter(
        action=action, outcome="refused", actor=f"user:{user.pk}", target=f"recording:{recording.public_id}",
        detail__reason=OUTSIDE,
    ).exists()


def sees_both(recording: Recording, other: Recording, *users: Any) -> None:
    for user in users:
        assert listed(user) == {str(recording.public_id), str(other.public_id)}
        assert signed_in(user).get(f"/recordings/{other.public_id}/").status_code == 200


@pytest.fixture
def other_programme(db: Any) -> Programme:
    return services.programme_create(name="General surgery residency", specialty="General surgery")


@pytest.fixture
def other_recording(other_programme: Programme, alice: User, bob: User, consent_form: Any) -> Recording:
    """Programme B's: gina, its resident, operated in another of bob's sessions (recorded by bob,
    the surgeon); the patient agreed to everything, training included."""
    gina = member(other_programme, "gina", "resident", "Elsewhere")
    other = second_session(alice=alice, bob=bob, dave=gina, training=True, consent_form=consent_form)
    recording = other.recordings.get()
    services.performance_record(session=other, programme=other_programme, resident=gina, by=bob, parts=[(recording, 0.0, 4.0, "")])
    return recording

def test_faculty_do_not_see_another_programmes_recording_and_the_refusals_are_audited(
    recording: Recording, performance: Any, other_recording: Recording, frank: User
) -> None:
    mine, theirs = str(recording.public_id), str(other_recording.public_id)
    assert listed(frank) == {mine}
    assert api_listed(frank) == {mine}
    client = signed_in(frank)
    assert client.get(f"/recordings/{mine}/").status_code == 200
    page = client.get(f"/recordings/{theirs}/")
    assert page.status_code == 403
    assert "not one of your training programme" in page.content.decode()
    assert client.get(f"/recordings/{theirs}/video.mp4", HTTP_RANGE="bytes=0-9").status_code == 403
    assert client.get(f"/api/recordings/{theirs}/parts/0.mp4").status_code == 403
    assert client.get(f"/training/recordings/{theirs}/").status_code == 403
    assert refused_outside(frank, other_recording, "recording.view")
    assert refused_outside(frank, other_recording, "recording.download")
    assert refused_outside(frank, other_recording, "training.recording.view")
    # The training pages narrow the same way: B's recording cannot be assessed or curated by A's faculty.
    with pytest.raises(services.TrainingAccessDenied, match="not one of your training programme"):
        services.training_consent_require(recording=other_recording, user=frank, action="training.curate")


def test_a_resident_sees_their_programmes_recordings_but_not_another_programmes(
    recording: Recording, performance: Any, other_recording: Recording, programme: Programme, trainee: User,
    session: Any, bob: User,
) -> None:
    # Lena, of the same programme, was not in the session: she sees it as her programme's.
    lena = member(programme, "lena", "resident", "Resident")
    second = available(session, bob)
    mine, theirs = {str(recording.public_id), str(second.public_id)}, str(other_recording.public_id)
    assert listed(lena) == mine
    assert signed_in(lena).get(f"/recordings/{second.public_id}/").status_code == 200
    assert listed(trainee) == mine
    assert api_listed(trainee) == mine
    client = signed_in(trainee)
    assert client.get(f"/recordings/{recording.public_id}/").status_code == 200
    assert client.get(f"/recordings/{theirs}/").status_code == 403
    assert client.get(f"/recordings/{theirs}/video.mp4").status_code == 403
    assert client.get(f"/api/recordings/{theirs}/parts/0.mp4").status_code == 403
    assert refused_outside(trainee, other_recording, "recording.view")
    assert refused_outside(trainee, other_recording, "recording.download")


def test_the_curated_library_is_seen_by_every_programme(
    recording: Recording, performance: Any, other_recording: Recording, other_programme: Programme,
    frank: User, trainee: User,
) -> None:
    ivan = member(other_programme, "ivan", "faculty", "Elsewhere")
    collection = services.collection_create(title="Model cholecystectomy", specialty="General surgery",
                                            procedure="Laparoscopic cholecystectomy", by=ivan)
    services.collection_entry_add(collection=collection, recording=other_recording, by=ivan, note="Critical view of safety")
    sees_both(recording, other_recording, frank, trainee)


def test_coordinators_and_the_operating_surgeon_keep_every_recording(
    recording: Recording, performance: Any, other_recording: Recording, alice: User, bob: User
) -> None:
    sees_both(recording, other_recording, alice, bob)


def test_faculty_see_their_programmes_recording_only_with_training_consent(
    recording: Recording, performance: Any, frank: User, consent_form: Any, alice: User
) -> None:
    training_refused(recording.session, consent_form, alice)
    assert listed(frank) == set()
    assert signed_in(frank).get(f"/recordings/{recording.public_id}/").status_code == 403
    assert AuditEvent.objects.filter(
        action="recording.view", outcome="refused", actor=f"user:{frank.pk}", detail__missing_purpose="archive_training"
    ).exists()


def test_faculty_or_a_resident_of_no_programme_see_nothing_but_the_library(
    recording: Recording, performance: Any, other_recording: Recording
) -> None:
    loner = make_user("lou")
    loner.groups.add(Group.objects.get_or_create(name="faculty")[0])
    newcomer = make_user("nell")
    newcomer.groups.add(Group.objects.get_or_create(name="resident")[0])
    for user in (loner, newcomer):
        assert listed(user) == set()
        assert signed_in(user).get(f"/recordings/{recording.public_id}/").status_code == 403
        assert refused_outside(user, recording, "recording.view")


def test_faculty_record_who_operated_only_for_a_resident_of_the_session(
    recording: Recording, programme: Programme, frank: User, bob: User
) -> None:
    outsider = member(programme, "olga", "resident", "Resident")
    with pytest.raises(services.TrainingAccessDenied, match="not a participant of the session"):
        services.performance_record(session=recording.session, programme=programme, resident=outsider, by=frank, parts=[])
    services.performance_record(session=recording.session, programme=programme, resident=outsider, by=bob, parts=[])

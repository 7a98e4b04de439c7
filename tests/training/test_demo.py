"""`manage.py seed_demo` (what `make run` seeds) includes training: a programme, a faculty member
who directs it, a resident, a training-consented recording that plays, a submitted OSATS
assessment with a comment on the timeline and a model procedure; run again, it adds nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from consent import services as consent_services
from recordings.models import Bookmark, Recording
from tests.mentoring.test_seed_demo import seed
from training import demo
from training.models import (
    Assessment,
    AssessmentComment,
    Collection,
    CollectionEntry,
    Instrument,
    Performance,
    Programme,
    ProgrammeMember,
)

pytestmark = pytest.mark.django_db

COUNTED = (Programme, ProgrammeMember, Performance, Recording, Assessment, AssessmentComment, Bookmark, Collection, CollectionEntry)


def signed_in(username: str) -> Client:
    client = Client()
    assert client.login(username=username, password="demo-pass-1")
    return client


def test_seed_demo_creates_the_training_demo_and_each_page_works(settings: Any, tmp_path: Path) -> None:
    _, written = seed(settings, tmp_path, "--password", "demo-pass-1")
    assert "as faculty" in written and "or resident" in written

    programme = Programme.objects.get(name=demo.PROGRAMME)
    faculty, resident = User.objects.get(username="faculty"), User.objects.get(username="resident")
    assert set(programme.members.values_list("user__username", "role")) == {("faculty", "director"), ("resident", "resident")}
    recording = Recording.objects.get(session__procedure=demo.PROCEDURE)
    assert recording.status == Recording.Status.AVAILABLE and recording.segments.count() == 1
    assert consent_services.consent_granted(session=recording.session, purpose="archive_training")
    assessment = Assessment.objects.get(recording=recording)
    assert (assessment.rater, assessment.resident, assessment.is_submitted) == (faculty, resident, True)
    assert assessment.comments.get().bookmark.private

    # The faculty member's and the resident's pages show it, and the video plays for the resident.
    director = signed_in("faculty")
    assert str(recording.public_id) in director.get("/training/").content.decode()
    assert director.get(f"/training/recordings/{recording.public_id}/").status_code == 200
    cohort = director.get("/training/cohort/")
    assert cohort.status_code == 200 and "Riley Resident" in cohort.content.decode()
    trainee = signed_in("resident")
    progress = trainee.get("/training/progress/").content.decode()
    assert 'id="chart-osats-grs"' in progress and "Gentle handling of the vessel wall" in progress
    assert trainee.get(f"/training/assessments/{assessment.public_id}/").status_code == 200
    assert trainee.get(f"/recordings/{recording.public_id}/video.mp4", HTTP_RANGE="bytes=0-99").status_code == 206
    collection = Collection.objects.get(title=demo.COLLECTION)
    assert demo.PROCEDURE in trainee.get(f"/training/library/{collection.pk}/").content.decode()


def test_seed_demo_again_adds_no_training_data(settings: Any, tmp_path: Path) -> None:
    seed(settings, tmp_path, "--password", "demo-pass-1")
    before = {model.__name__: model.objects.count() for model in COUNTED}
    seed(settings, tmp_path, "--password", "demo-pass-2")
    assert {model.__name__: model.objects.count() for model in COUNTED} == before
    # The accounts take the new password, as the coordinator's does.
    client = Client()
    assert client.login(username="resident", password="demo-pass-2")


def test_seed_demo_stands_without_osats_when_a_centre_retired_it(settings: Any, tmp_path: Path) -> None:
    Instrument.objects.filter(slug="osats-grs").update(is_active=False)
    seed(settings, tmp_path, "--password", "demo-pass-1")
    assert not Assessment.objects.exists()
    assert Recording.objects.get(session__procedure=demo.PROCEDURE).status == Recording.Status.AVAILABLE
    assert CollectionEntry.objects.filter(collection__title=demo.COLLECTION).count() == 1

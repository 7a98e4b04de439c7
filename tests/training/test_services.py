"""Training services: programmes and who operated, the published instruments, assessments (blind
by default), the consent limit, progress and the model-procedure library."""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from consent import services as consent_services
from consent.models import AuditEvent
from mentoring import services as mentoring_services
from orstream import roles
from recordings.models import Bookmark, Recording
from training import services
from training.models import Assessment, Instrument

from .conftest import available, training_refused

pytestmark = pytest.mark.django_db


def scored(assessment: Assessment, rater: Any, value: int = 3, **override: int) -> Assessment:
    keys = [i.key for i in assessment.instrument.items.all()]
    return services.assessment_score(assessment=assessment, user=rater, scores={k: override.get(k.replace("-", "_"), value) for k in keys})


# ---------------------------------------------------------------- instruments


def test_the_published_instruments_are_loaded_with_their_items_and_ranges(db: Any) -> None:
    counts = {i.short_name: [(it.min_score, it.max_score) for it in i.items.all()] for i in Instrument.objects.all()}
    assert counts["OSATS"] == [(1, 5)] * 7
    assert counts["GOALS"] == [(1, 5)] * 5
    assert counts["GEARS"] == [(1, 5)] * 6
    assert counts["SMaRT"] == [(1, 5)] * 9
    osats = Instrument.objects.get(slug="osats-grs")
    assert [i.name for i in osats.items.all()][0] == "Respect for tissue"
    assert set(osats.items.first().anchors) == {"1", "3", "5"}
    # SMaRT's source cites the paper (DOI) and what its published abstract confirms; the item names,
    # which no public source consulted lists, say so in the data itself.
    smart = Instrument.objects.get(slug="smart")
    assert "doi:10.1097/SAP.0000000000000139" in smart.source
    assert "9 categories, each graded on a 5-point Likert scale" in smart.source
    assert "item names below are not verified" in smart.source
    assert smart.items.count() == 9
    # ... and so does the description a rater reads where they pick the instrument.
    assert "item names are not checked against the paper" in smart.description


def test_mars10_is_loaded_with_its_five_published_items_scored_0_to_2(db: Any) -> None:
    mars = Instrument.objects.get(slug="mars10", version="1")
    assert mars.short_name == "MARS10" and mars.is_active
    assert [(i.name, i.min_score, i.max_score) for i in mars.items.all()] == [
        ("Anastomosis closure", 0, 2), ("Suture spacing", 0, 2), ("Bites size", 0, 2), ("Knot tying", 0, 2), ("Cut ends length", 0, 2),
    ]
    assert all(list(i.scores) == [0, 1, 2] for i in mars.items.all())
    assert mars.items.first().anchor_list == [("0", "Not achieved"), ("1", "Partly achieved"), ("2", "Achieved")]
    # The source says what was checked, where, what is orstream's, and that it scores the final product.
    assert "discovery.researcher.life" in mars.source and "biocloudy.com" in mars.source
    assert "those below are orstream's wording" in mars.source and "final-product scale" in mars.source
    assert "orstream's wording" in mars.description


def test_the_mars10_migration_is_reversible_and_keeps_a_version_in_use(performance: Any, recording: Recording, trainee: Any, frank: Any, henry: Any) -> None:
    from django.apps import apps

    migration = importlib.import_module("training.migrations.0005_mars10")
    migration.mars10_unload(apps, None)
    assert not Instrument.objects.filter(slug="mars10").exists()
    migration.mars10_load(apps, None)
    mars = Instrument.objects.get(slug="mars10")
    assert mars.items.count() == 5
    services.assessment_assign(recording=recording, resident=trainee, rater=frank, instrument=mars, by=henry)
    migration.mars10_unload(apps, None)
    assert Instrument.objects.filter(slug="mars10").exists()


# ---------------------------------------------------------------- faculty and who operated


def test_faculty_see_their_programmes_training_recordings_only(performance: Any, recording: Recording, frank: Any, ivan: Any, henry: Any) -> None:
    assert roles.user_is_faculty(frank) and roles.user_is_programme_director(henry)
    assert [t.recording for t in services.training_recordings_for(user=frank)] == [recording]
    assert [t.recording for t in services.training_recordings_for(user=henry)] == [recording]
    assert services.training_recordings_for(user=ivan) == []
    seen = services.training_recordings_for(user=frank)[0]
    assert [(p.start, p.end) for p in seen.performances[0].parts.all()] == [(20.0, 90.0)]


def test_faculty_do_not_see_a_recording_without_training_consent(
    session: Any, performance: Any, recording: Recording, frank: Any, consent_form: Any, alice: Any
) -> None:
    training_refused(session, consent_form, alice)
    assert services.training_recordings_for(user=frank) == []


def test_an_outsider_cannot_record_who_operated(session: Any, recording: Recording, programme: Any, trainee: Any, eve: Any) -> None:
    with pytest.raises(services.TrainingAccessDenied):
        services.performance_record(session=session, programme=programme, resident=trainee, by=eve, parts=[])


def test_a_performed_part_must_lie_within_the_recording(session: Any, recording: Recording, programme: Any, trainee: Any, frank: Any) -> None:
    with pytest.raises(services.TrainingError, match="within the recording"):
        services.performance_record(session=session, programme=programme, resident=trainee, by=frank, parts=[(recording, 100.0, 300.0, "")])


# ---------------------------------------------------------------- assessing, blind


@pytest.fixture
def two_raters(performance: Any, recording: Recording, trainee: Any, frank: Any, grace: Any, henry: Any, osats: Instrument) -> tuple[Assessment, Assessment]:
    first = services.assessment_assign(recording=recording, resident=trainee, rater=frank, instrument=osats, by=henry)
    second = services.assessment_assign(recording=recording, resident=trainee, rater=grace, instrument=osats, by=henry)
    return first, second


def test_a_director_assigns_faculty_and_a_faculty_member_cannot_assign_another(
    two_raters: Any, recording: Recording, trainee: Any, frank: Any, grace: Any, osats: Instrument
) -> None:
    gears = Instrument.objects.get(slug="gears")
    with pytest.raises(services.TrainingAccessDenied, match="director"):
        services.assessment_assign(recording=recording, resident=trainee, rater=grace, instrument=gears, by=frank)
    mine = services.assessment_assign(recording=recording, resident=trainee, rater=frank, instrument=gears, by=frank)
    assert mine.rater == frank
    with pytest.raises(services.TrainingError, match="already assigned"):
        services.assessment_assign(recording=recording, resident=trainee, rater=frank, instrument=gears, by=frank)


def test_faculty_of_another_programme_cannot_be_assigned(performance: Any, recording: Recording, trainee: Any, ivan: Any, henry: Any, osats: Instrument) -> None:
    with pytest.raises(services.TrainingError, match="not faculty"):
        services.assessment_assign(recording=recording, resident=trainee, rater=ivan, instrument=osats, by=henry)


def test_a_rater_cannot_read_the_others_scores_until_they_submit(two_raters: Any, frank: Any, grace: Any, trainee: Any, henry: Any) -> None:
    first, second = two_raters
    scored(first, frank, 4)
    services.assessment_comment_add(assessment=first, user=frank, media_time=42.5, text="steady traction", item_key="respect-for-tissue")
    services.assessment_submit(assessment=first, user=frank)

    # grace has not submitted: frank's assessment is closed to her, and the refusal is audited.
    assert not services.assessment_visible(assessment=first, user=grace)
    with pytest.raises(services.TrainingAccessDenied, match="blind"):
        services.assessment_open(assessment=first, user=grace)
    assert AuditEvent.objects.filter(action="training.assessment.view", outcome="refused", actor=f"user:{grace.pk}").exists()
    card = next(c for c in services.assessment_list_for_recording(recording=first.recording, user=grace) if c.assessment == first)
    assert not card.visible and card.scores == {} and card.comments == []
    # A draft is nobody's but its rater's: frank cannot read grace's either, nor the resident.
    scored(second, grace, 2)
    assert not services.assessment_visible(assessment=second, user=frank)
    assert not services.assessment_visible(assessment=second, user=trainee)

    services.assessment_submit(assessment=second, user=grace)
    assert services.assessment_open(assessment=first, user=grace) == first
    assert services.assessment_card(assessment=first, user=grace).total == 28
    assert services.assessment_visible(assessment=second, user=frank)
    assert services.assessment_visible(assessment=first, user=trainee)
    assert services.assessment_visible(assessment=first, user=henry)


def test_submitting_needs_every_item_and_is_final(two_raters: Any, frank: Any) -> None:
    first, _ = two_raters
    services.assessment_score(assessment=first, user=frank, scores={"respect-for-tissue": 4})
    with pytest.raises(services.TrainingError, match="missing: Time and motion"):
        services.assessment_submit(assessment=first, user=frank)
    with pytest.raises(services.TrainingError, match="from 1 to 5"):
        services.assessment_score(assessment=first, user=frank, scores={"time-and-motion": 6})
    scored(first, frank)
    services.assessment_submit(assessment=first, user=frank)
    with pytest.raises(services.TrainingError, match="final"):
        scored(first, frank, 5)


def test_mars10_takes_a_0_and_refuses_a_3_without_saving_anything(performance: Any, recording: Recording, trainee: Any, frank: Any) -> None:
    mars = Instrument.objects.get(slug="mars10")
    assessment = services.assessment_assign(recording=recording, resident=trainee, rater=frank, instrument=mars, by=frank)
    with pytest.raises(services.TrainingError, match="MARS10 scores “Knot tying” from 0 to 2; 3 is outside that range"):
        services.assessment_score(assessment=assessment, user=frank, scores={"anastomosis-closure": 0, "knot-tying": 3})
    assert not assessment.scores.exists()
    scored(assessment, frank, 0)
    services.assessment_submit(assessment=assessment, user=frank)
    card = services.assessment_card(assessment=assessment, user=frank)
    assert card.total == 0 and set(card.scores.values()) == {0}


def test_only_the_rater_scores_their_assessment(two_raters: Any, grace: Any) -> None:
    first, _ = two_raters
    with pytest.raises(services.TrainingAccessDenied):
        scored(first, grace)


def test_a_comment_is_at_a_moment_of_the_recording(two_raters: Any, frank: Any) -> None:
    first, _ = two_raters
    with pytest.raises(services.TrainingError, match="within the recording"):
        services.assessment_comment_add(assessment=first, user=frank, media_time=500, text="late")
    comment = services.assessment_comment_add(assessment=first, user=frank, media_time=12, text="good exposure")
    assert comment.media_time == 12.0 and comment.item is None


# ---------------------------------------------------------------- the consent limit


def test_a_recording_without_training_consent_can_never_be_assessed_or_curated(
    session: Any, bob: Any, programme: Any, trainee: Any, frank: Any, henry: Any, osats: Instrument, consent_form: Any, alice: Any
) -> None:
    training_refused(session, consent_form, alice)
    recording = available(session, bob)
    services.performance_record(session=session, programme=programme, resident=trainee, by=frank, parts=[])
    with pytest.raises(services.TrainingAccessDenied, match="archive_training"):
        services.assessment_assign(recording=recording, resident=trainee, rater=frank, instrument=osats, by=henry)
    collection = services.collection_create(title="MVD", specialty="Neurosurgery", procedure=session.procedure, by=frank)
    with pytest.raises(services.TrainingAccessDenied, match="archive_training"):
        services.collection_entry_add(collection=collection, recording=recording, by=frank, note="watch the exposure")
    # Refused at consent's gate, which audits it.
    assert AuditEvent.objects.filter(action="training.assign", outcome="refused", detail__missing_purpose="archive_training").exists()
    assert AuditEvent.objects.filter(action="training.curate", outcome="refused", detail__missing_purpose="archive_training").exists()


def test_a_withdrawal_stops_an_assessment_in_progress(two_raters: Any, frank: Any, consenting_patient: Any, alice: Any) -> None:
    first, _ = two_raters
    consent_services.consent_withdraw(record=consenting_patient, by=alice, reason="patient asked")
    first.recording.refresh_from_db()
    assert first.recording.status == Recording.Status.RESTRICTED
    with pytest.raises(services.TrainingAccessDenied):
        scored(first, frank)


# ---------------------------------------------------------------- progress


def test_the_resident_sees_their_progress_and_the_director_the_cohort(two_raters: Any, frank: Any, grace: Any, trainee: Any, henry: Any, eve: Any) -> None:
    first, second = two_raters
    scored(first, frank, 3)
    services.assessment_comment_add(assessment=first, user=frank, media_time=30, text="hesitant here", item_key="flow-of-operation")
    services.assessment_submit(assessment=first, user=frank)
    scored(second, grace, 4)
    services.assessment_submit(assessment=second, user=grace)
    [series] = services.progress_for(resident=trainee, user=trainee)
    assert series.instrument.short_name == "OSATS"
    assert [p.total for p in series.points] == [21, 28] and series.points[0].maximum == 35
    assert [c.text for c in series.comments] == ["hesitant here"]
    assert services.progress_for(resident=trainee, user=henry)[0].points[-1].total == 28
    with pytest.raises(services.TrainingAccessDenied):
        services.progress_for(resident=trainee, user=frank)
    with pytest.raises(services.TrainingAccessDenied):
        services.progress_for(resident=trainee, user=eve)
    [row] = services.cohort_for(user=henry)
    assert row.resident == trainee and row.submitted == 2 and row.latest == {"OSATS": 28}


# ---------------------------------------------------------------- library


def test_a_chapter_range_is_curated_and_listed_only_while_consent_allows(
    session: Any, recording: Recording, frank: Any, trainee: Any, consenting_patient: Any, alice: Any, dave: Any
) -> None:
    Bookmark.objects.create(recording=recording, media_time=10, label="Exposure", kind="chapter")
    decompression = Bookmark.objects.create(recording=recording, media_time=40, label="Decompression", kind="chapter")
    Bookmark.objects.create(recording=recording, media_time=75, label="Closure", kind="chapter")
    collection = services.collection_create(title="Model MVD", specialty="Neurosurgery", procedure="Microvascular decompression", by=frank)
    entry = services.collection_entry_add(collection=collection, recording=recording, by=frank, note="Teflon placement", chapter=decompression)
    assert (entry.start, entry.end) == (40, 75)
    assert services.collection_entries_for(collection=collection, user=trainee) == [entry]
    with pytest.raises(services.TrainingAccessDenied):
        services.collection_create(title="Mine", specialty="x", procedure="y", by=dave)
    consent_services.consent_withdraw(record=consenting_patient, by=alice, reason="patient asked")
    assert services.collection_entries_for(collection=collection, user=trainee) == []


def test_watch_before_links_a_scheduled_session_of_the_same_procedure(
    recording: Recording, frank: Any, trainee: Any, room: Any, alice: Any, bob: Any
) -> None:
    collection = services.collection_create(title="Model MVD", specialty="Neurosurgery", procedure="microvascular decompression", by=frank)
    entry = services.collection_entry_add(collection=collection, recording=recording, by=frank, note="Whole case")
    start = timezone.now() + timedelta(days=3)
    upcoming = mentoring_services.session_schedule(
        room=room, procedure="Microvascular decompression", surgeon=bob, planned_start=start,
        planned_end=start + timedelta(hours=2), time_zone="UTC", created_by=alice, patient_ref="CASE-0099",
    )
    other = mentoring_services.session_schedule(
        room=room, procedure="Lumbar discectomy", surgeon=bob, planned_start=start + timedelta(hours=3),
        planned_end=start + timedelta(hours=4), time_zone="UTC", created_by=alice, patient_ref="CASE-0100",
    )
    assert services.watch_before_for(session=upcoming, user=trainee) == [entry]
    assert services.watch_before_for(session=other, user=trainee) == []
    mentoring_services.participant_add(session=upcoming, role="resident", display_name="Dave", user=trainee, by=alice)
    assert [(s, e) for s, e in services.sessions_upcoming_for(user=trainee) if s == upcoming] == [(upcoming, [entry])]

"""Training pages and API: scoring through the forms, blinding through the pages AND the API, the
consent limit on the pages, progress chart, reliability table, library, exports."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from fhir.resources.questionnaire import Questionnaire
from fhir.resources.questionnaireresponse import QuestionnaireResponse

from mentoring import services as mentoring_services
from recordings.models import Bookmark
from training import services
from training.models import Assessment, Instrument

from .conftest import training_refused

pytestmark = pytest.mark.django_db


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def score_form(instrument: Instrument, value: int, *, submit: bool) -> dict[str, str]:
    return {**{f"score-{i.key}": str(value) for i in instrument.items.all()}, "summary": "", "submit": "1" if submit else "0"}


@pytest.fixture
def assigned(performance: Any, recording: Any, trainee: Any, frank: Any, grace: Any, henry: Any, osats: Instrument) -> tuple[Assessment, Assessment]:
    client = signed_in(henry)
    for rater in (frank, grace):
        response = client.post(f"/training/recordings/{recording.public_id}/assign/",
                               {"resident": trainee.pk, "rater": rater.pk, "instrument": osats.pk})
        assert response.status_code == 302
    return Assessment.objects.get(rater=frank), Assessment.objects.get(rater=grace)


def test_raters_score_through_the_pages_blind_until_they_submit(assigned: Any, frank: Any, grace: Any, osats: Instrument, recording: Any) -> None:
    mine, hers = assigned
    frank_client, grace_client = signed_in(frank), signed_in(grace)
    page = frank_client.get(f"/training/assessments/{mine.public_id}/")
    assert page.status_code == 200 and b'id="score-form"' in page.content
    frank_client.post(f"/training/assessments/{mine.public_id}/comments/", {"media_time": "42.5", "text": "steady traction", "item": "respect-for-tissue"})
    assert frank_client.post(f"/training/assessments/{mine.public_id}/save/", score_form(osats, 4, submit=True)).status_code == 302
    mine.refresh_from_db()
    assert mine.is_submitted and mine.comments.get().media_time == 42.5

    # grace has not submitted: the page, the recording's training page and the API keep frank's scores from her.
    assert grace_client.get(f"/training/assessments/{mine.public_id}/").status_code == 403
    overview = grace_client.get(f"/training/recordings/{recording.public_id}/").content.decode()
    assert "hidden until you submit yours" in overview and ">28<" not in overview
    assert grace_client.get(f"/api/training/assessments/{mine.public_id}/").status_code == 403
    listed = {a["id"]: a for a in grace_client.get("/api/training/assessments/").json()}
    assert listed[str(mine.public_id)]["visible"] is False and "scores" not in listed[str(mine.public_id)]
    assert grace_client.get(f"/api/training/assessments/{mine.public_id}/fhir/").status_code == 403

    grace_client.post(f"/training/assessments/{hers.public_id}/save/", score_form(osats, 3, submit=True))
    detail = grace_client.get(f"/api/training/assessments/{mine.public_id}/").json()
    assert detail["total"] == 28 and detail["comments"] == [{"t": 42.5, "item": "respect-for-tissue", "text": "steady traction"}]
    page = grace_client.get(f"/training/assessments/{mine.public_id}/").content.decode()
    assert "steady traction" in page and f"/recordings/{recording.public_id}/?t=42.5" in page


def test_a_submitted_assessment_is_read_only_on_its_page(assigned: Any, frank: Any, osats: Instrument) -> None:
    mine, _ = assigned
    client = signed_in(frank)
    client.post(f"/training/assessments/{mine.public_id}/save/", score_form(osats, 5, submit=True))
    page = client.get(f"/training/assessments/{mine.public_id}/")
    assert b'id="score-form"' not in page.content and b'id="scores"' in page.content
    client.post(f"/training/assessments/{mine.public_id}/save/", score_form(osats, 1, submit=False))
    assert {s.score for s in mine.scores.all()} == {5}


def test_the_pages_refuse_a_recording_without_training_consent(
    session: Any, recording: Any, performance: Any, frank: Any, henry: Any, trainee: Any, osats: Instrument, consent_form: Any, alice: Any
) -> None:
    training_refused(session, consent_form, alice)
    assert signed_in(frank).get(f"/training/recordings/{recording.public_id}/").status_code == 403
    response = signed_in(henry).post(f"/training/recordings/{recording.public_id}/assign/",
                                     {"resident": trainee.pk, "rater": frank.pk, "instrument": osats.pk})
    assert response.status_code == 403 and b"archive_training" in response.content
    assert not Assessment.objects.exists()


def test_progress_chart_cohort_reliability_and_csv(assigned: Any, frank: Any, grace: Any, henry: Any, trainee: Any, osats: Instrument) -> None:
    mine, hers = assigned
    signed_in(frank).post(f"/training/assessments/{mine.public_id}/save/", score_form(osats, 4, submit=True))
    signed_in(grace).post(f"/training/assessments/{hers.public_id}/save/", score_form(osats, 3, submit=True))

    page = signed_in(trainee).get("/training/progress/").content.decode()
    assert 'id="chart-osats-grs"' in page and 'data-points="2"' in page and "<polyline" in page
    assert signed_in(henry).get(f"/training/progress/{trainee.pk}/").status_code == 200
    assert signed_in(frank).get(f"/training/progress/{trainee.pk}/").status_code == 403
    assert "Dave Resident" in signed_in(henry).get("/training/cohort/").content.decode()

    table = signed_in(henry).get("/training/reliability/").content.decode()
    assert 'id="reliability-osats-grs"' in table and "ICC(A,1)" in table
    assert signed_in(trainee).get("/training/reliability/").status_code == 403

    export = signed_in(henry).get("/training/export/assessments.csv")
    assert export["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    assert len(rows) == 14 and {r["rater"] for r in rows} == {"frank", "grace"}
    assert signed_in(frank).get("/training/export/assessments.csv").status_code == 403

    QuestionnaireResponse.model_validate(signed_in(henry).get(f"/api/training/assessments/{mine.public_id}/fhir/").json())
    Questionnaire.model_validate(signed_in(frank).get(f"/api/training/instruments/{osats.pk}/fhir/").json())


def test_a_model_procedure_is_curated_and_linked_before_a_session_of_the_same_procedure(
    recording: Any, performance: Any, frank: Any, trainee: Any, alice: Any, bob: Any, room: Any
) -> None:
    chapter = Bookmark.objects.create(recording=recording, media_time=30, label="Decompression", kind="chapter")
    faculty = signed_in(frank)
    created = faculty.post("/training/library/", {"title": "Model MVD", "specialty": "Neurosurgery", "procedure": "Microvascular decompression"})
    assert created.status_code == 302
    collection_url = created["Location"]
    collection_id = collection_url.rstrip("/").rsplit("/", 1)[-1]
    response = faculty.post(f"/training/recordings/{recording.public_id}/curate/",
                            {"collection": collection_id, "chapter": chapter.pk, "note": "Teflon between vessel and nerve"})
    assert response.status_code == 302
    page = signed_in(trainee).get(collection_url).content.decode()
    assert "Teflon between vessel and nerve" in page and f"/recordings/{recording.public_id}/?t=30.0" in page
    assert signed_in(trainee).post("/training/library/", {"title": "x", "specialty": "y", "procedure": "z"}).status_code == 403

    start = timezone.now() + timedelta(days=2)
    upcoming = mentoring_services.session_schedule(
        room=room, procedure="Microvascular decompression", surgeon=bob, planned_start=start, planned_end=start + timedelta(hours=2),
        time_zone="UTC", created_by=alice, patient_ref="CASE-0077",
    )
    detail = signed_in(alice).get(f"/sessions/{upcoming.public_id}/").content.decode()
    assert "Watch before this session" in detail and f"/recordings/{recording.public_id}/?t=30.0" in detail
    mentoring_services.participant_add(session=upcoming, role="resident", display_name="Dave", user=trainee, by=alice)
    assert "Watch before: Model MVD" in signed_in(trainee).get("/training/").content.decode()


def test_faculty_home_lists_their_programmes_recordings(performance: Any, recording: Any, frank: Any, ivan: Any) -> None:
    assert f"/training/recordings/{recording.public_id}/" in signed_in(frank).get("/training/").content.decode()
    assert f"/training/recordings/{recording.public_id}/" not in signed_in(ivan).get("/training/").content.decode()


def test_recording_who_operated_through_the_page(recording: Any, programme: Any, trainee: Any, frank: Any) -> None:
    response = signed_in(frank).post(f"/training/recordings/{recording.public_id}/performances/",
                                     {"programme": programme.pk, "resident": trainee.pk, "start": "10", "end": "50", "label": "closure"})
    assert response.status_code == 302
    [performance] = services.performances_for(recording=recording)
    assert [(p.start, p.end, p.label) for p in performance.parts.all()] == [(10.0, 50.0, "closure")]


def test_a_blind_read_through_the_api_is_refused_and_audited_once(assigned: Any, frank: Any, grace: Any, osats: Instrument) -> None:
    from consent.models import AuditEvent

    mine, _ = assigned  # frank's, not submitted: grace may not read it
    before = AuditEvent.objects.filter(outcome="refused", actor=f"user:{grace.pk}").count()
    assert signed_in(grace).get(f"/api/training/assessments/{mine.public_id}/").status_code == 403
    refusals = AuditEvent.objects.filter(outcome="refused", actor=f"user:{grace.pk}")
    assert refusals.count() == before + 1



@pytest.fixture
def mars(db: Any) -> Instrument:
    return Instrument.objects.get(slug="mars10")


def test_faculty_score_a_consented_recording_with_mars10_where_0_counts_and_3_is_refused(
    performance: Any, recording: Any, trainee: Any, frank: Any, mars: Instrument
) -> None:
    client = signed_in(frank)
    assert client.post(f"/training/recordings/{recording.public_id}/assign/",
                       {"resident": trainee.pk, "rater": frank.pk, "instrument": mars.pk}).status_code == 302
    assessment = Assessment.objects.get(rater=frank, instrument=mars)
    url = f"/training/assessments/{assessment.public_id}/"

    page = client.get(url).content.decode()
    for item in mars.items.all():
        assert all(f'name="score-{item.key}" value="{v}"' in page for v in (0, 1, 2))
        assert f'name="score-{item.key}" value="3"' not in page

    refused = client.post(f"{url}save/", {**score_form(mars, 0, submit=True), "score-knot-tying": "3"}, HTTP_REFERER=url, follow=True)
    assert refused.redirect_chain[-1][0] == url
    assert "MARS10 scores “Knot tying” from 0 to 2; 3 is outside that range" in refused.content.decode()
    not_a_number = client.post(f"{url}save/", {"score-knot-tying": "two", "submit": "0"}, HTTP_REFERER=url, follow=True)
    assert "A score is a whole number; “two” is not one." in not_a_number.content.decode()
    assessment.refresh_from_db()
    assert not assessment.is_submitted and not assessment.scores.exists()

    assert client.post(f"{url}save/", score_form(mars, 0, submit=True)).status_code == 302
    assessment.refresh_from_db()
    assert assessment.is_submitted and [s.score for s in assessment.scores.all()] == [0] * 5
    page = client.get(url).content.decode()
    scores = page[page.index('id="scores"'):page.index("</table>", page.index('id="scores"'))]
    assert scores.count("<td>0</td>") == 5 and "—" not in scores
    assert 'id="total">total 0<' in page
    detail = client.get(f"/api/training/assessments/{assessment.public_id}/").json()
    assert detail["total"] == 0 and set(detail["scores"].values()) == {0}


def test_progress_chart_csv_and_fhir_carry_a_mars10_zero(
    performance: Any, recording: Any, trainee: Any, frank: Any, grace: Any, henry: Any, mars: Instrument
) -> None:
    from training import charts

    keys = [i.key for i in mars.items.all()]
    for rater, values in ((frank, [0, 0, 0, 0, 0]), (grace, [2, 1, 0, 2, 1])):
        assessment = services.assessment_assign(recording=recording, resident=trainee, rater=rater, instrument=mars, by=henry)
        services.assessment_score(assessment=assessment, user=rater, scores=dict(zip(keys, values, strict=True)))
        services.assessment_submit(assessment=assessment, user=rater)
    zero = Assessment.objects.get(rater=frank)

    [series] = services.progress_for(resident=trainee, user=trainee)
    chart = charts.progress_chart(series)
    assert (chart.minimum, chart.maximum) == (0, 10) and [v for _, v in chart.ticks] == [0, 2, 4, 6, 8, 10]
    assert [p.total for p in chart.points] == [0, 6]
    assert chart.points[0].y == chart.bottom and chart.points[1].y == pytest.approx(chart.bottom - (chart.bottom - chart.top) * 0.6, abs=0.1)
    page = signed_in(trainee).get("/training/progress/").content.decode()
    assert 'id="chart-mars10"' in page and "total from 0 to 10" in page and 'data-points="2"' in page
    assert ">0 / 10</a>" in page and ">6 / 10</a>" in page and f'<circle class="point" cx="{chart.points[0].x}" cy="{chart.points[0].y}"' in page

    rows = list(csv.DictReader(io.StringIO(signed_in(henry).get("/training/export/assessments.csv").content.decode())))
    assert len(rows) == 10
    assert [r["score"] for r in rows if r["rater"] == "frank"] == ["0"] * 5
    assert [r["item"] for r in rows if r["rater"] == "grace"] == ["Anastomosis closure", "Suture spacing", "Bites size", "Knot tying", "Cut ends length"]

    response = QuestionnaireResponse.model_validate(signed_in(henry).get(f"/api/training/assessments/{zero.public_id}/fhir/").json())
    assert [i.answer[0].valueInteger for i in response.item] == [0] * 5
    questionnaire = Questionnaire.model_validate(signed_in(frank).get(f"/api/training/instruments/{mars.pk}/fhir/").json())
    assert [[o.valueInteger for o in i.answerOption] for i in questionnaire.item if i.type == "integer"] == [[0, 1, 2]] * 5
    assert {i.linkId for i in response.item} <= {i.linkId for i in questionnaire.item}
    cohort = signed_in(henry).get("/training/cohort/").content.decode()
    assert "MARS10 6" in cohort


def test_a_rater_reads_each_instruments_note_where_they_pick_it_and_while_scoring(
    performance: Any, recording: Any, trainee: Any, frank: Any
) -> None:
    client = signed_in(frank)
    overview = client.get(f"/training/recordings/{recording.public_id}/").content.decode()
    notes = overview[overview.index('id="instrument-notes"'):overview.index("</ul>", overview.index('id="instrument-notes"'))]
    assert "<strong>SMaRT</strong>: Nine categories" in notes and "the item names are not checked against the paper" in notes
    assert "<strong>MARS10</strong>: Five factors of the finished end-to-end anastomosis" in notes
    smart = Instrument.objects.get(slug="smart")
    assessment = services.assessment_assign(recording=recording, resident=trainee, rater=frank, instrument=smart, by=frank)
    page = client.get(f"/training/assessments/{assessment.public_id}/").content.decode()
    assert 'id="instrument-note"' in page and "item names are not checked against the paper" in page
    listed = {i["slug"]: i for i in client.get("/api/training/instruments/").json()}
    assert "item names are not checked against the paper" in listed["smart"]["description"]
    assert "orstream's wording" in listed["mars10"]["description"]

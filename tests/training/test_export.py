"""FHIR R5 Questionnaire and QuestionnaireResponse, validated by fhir.resources, and the CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from fhir.resources.questionnaire import Questionnaire
from fhir.resources.questionnaireresponse import QuestionnaireResponse

from training import export, services
from training.models import Instrument

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("slug", "options"), [
    ("osats-grs", [1, 2, 3, 4, 5]), ("goals", [1, 2, 3, 4, 5]), ("gears", [1, 2, 3, 4, 5]), ("smart", [1, 2, 3, 4, 5]),
    ("mars10", [0, 1, 2]),
])
def test_every_instrument_exports_as_a_valid_r5_questionnaire(slug: str, options: list[int]) -> None:
    instrument = Instrument.objects.get(slug=slug)
    resource = export.instrument_to_fhir(instrument)
    parsed = Questionnaire.model_validate(resource)
    assert parsed.version == instrument.version
    questions = [i for i in parsed.item if i.type == "integer"]
    assert len(questions) == instrument.items.count()
    assert all([o.valueInteger for o in q.answerOption] == options for q in questions)


def test_a_submitted_assessment_exports_as_a_valid_response_and_csv(
    performance: Any, recording: Any, trainee: Any, frank: Any, henry: Any, osats: Instrument
) -> None:
    assessment = services.assessment_assign(recording=recording, resident=trainee, rater=frank, instrument=osats, by=henry)
    keys = [i.key for i in osats.items.all()]
    services.assessment_score(assessment=assessment, user=frank, scores={k: 4 for k in keys})
    services.assessment_comment_add(assessment=assessment, user=frank, media_time=75, text="tidy closure", item_key="respect-for-tissue")
    services.assessment_submit(assessment=assessment, user=frank)

    resource = export.assessment_to_fhir(assessment)
    parsed = QuestionnaireResponse.model_validate(resource)
    assert parsed.status == "completed"
    assert parsed.questionnaire == export.questionnaire_url(osats) + "|1997"
    answers = {i.linkId: i.answer for i in parsed.item}
    assert answers["respect-for-tissue"][0].valueInteger == 4
    assert answers["comments"][0].valueString == "[1:15] Respect for tissue: tidy closure"
    # Every answered linkId is a question of the Questionnaire.
    asked = {i["linkId"] for i in export.instrument_to_fhir(osats)["item"]}
    assert set(answers) <= asked
    assert "CASE-0042" not in str(resource)

    rows = list(csv.DictReader(io.StringIO(export.assessments_csv([assessment]))))
    assert len(rows) == 7 and rows[0]["score"] == "4" and rows[0]["comments"] == "[1:15] tidy closure"
    assert rows[0]["resident"] == "dave" and rows[0]["rater"] == "frank"


def test_a_mars10_assessment_of_zeros_exports_its_zeros(performance: Any, recording: Any, trainee: Any, frank: Any) -> None:
    mars = Instrument.objects.get(slug="mars10")
    assessment = services.assessment_assign(recording=recording, resident=trainee, rater=frank, instrument=mars, by=frank)
    services.assessment_score(assessment=assessment, user=frank, scores={i.key: 0 for i in mars.items.all()})
    services.assessment_submit(assessment=assessment, user=frank)

    parsed = QuestionnaireResponse.model_validate(export.assessment_to_fhir(assessment))
    assert parsed.questionnaire == export.questionnaire_url(mars) + "|1"
    assert {i.linkId: i.answer[0].valueInteger for i in parsed.item} == {i.key: 0 for i in mars.items.all()}
    questionnaire = Questionnaire.model_validate(export.instrument_to_fhir(mars))
    assert questionnaire.item[0].text == "Anastomosis closure (0: Not achieved; 1: Partly achieved; 2: Achieved)"
    assert questionnaire.purpose is not None and "orstream's wording" in questionnaire.purpose
    rows = list(csv.DictReader(io.StringIO(export.assessments_csv([assessment]))))
    assert [(r["item"], r["score"]) for r in rows][0] == ("Anastomosis closure", "0") and {r["score"] for r in rows} == {"0"}

"""Exports of assessments for the programme's records: FHIR R5 Questionnaire (an instrument) and
QuestionnaireResponse (one submitted assessment), built and validated with fhir.resources, and CSV.

Called by the training pages and API after they checked who may read what (training.services).
Only reads rows. No patient appears: the assessed performance is named by the recording's public id
and the procedure; the resident and the rater are the site's users (practitioners), by username.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from fhir.resources.extension import Extension
from fhir.resources.identifier import Identifier
from fhir.resources.questionnaire import Questionnaire, QuestionnaireItem, QuestionnaireItemAnswerOption
from fhir.resources.questionnaireresponse import (
    QuestionnaireResponse,
    QuestionnaireResponseItem,
    QuestionnaireResponseItemAnswer,
)
from fhir.resources.reference import Reference

from .models import Assessment, Instrument

RECORDING_SYSTEM = "urn:orstream:recording"
USER_SYSTEM = "urn:orstream:user"
ASSESSMENT_SYSTEM = "urn:orstream:assessment"
COMMENTS_LINK_ID = "comments"


def questionnaire_url(instrument: Instrument) -> str:
    return f"{settings.PUBLIC_URL.rstrip('/')}/training/instruments/{instrument.slug}"


def clock(seconds: float) -> str:
    """Seconds as m:ss (h:mm:ss past an hour), as the player shows them."""
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def instrument_to_fhir(instrument: Instrument) -> dict[str, Any]:
    """The instrument as a FHIR R5 Questionnaire: one integer question per item, its scores as
    answer options (the anchors as their meaning in the item's text), and a repeating text item
    for the rater's time-stamped comments."""
    items = []
    for item in instrument.items.all():
        anchors = "; ".join(f"{score}: {text}" for score, text in item.anchor_list)
        items.append(QuestionnaireItem(
            linkId=item.key, text=item.name + (f" ({anchors})" if anchors else ""), type="integer", required=True,
            answerConstraint="optionsOnly",
            answerOption=[QuestionnaireItemAnswerOption(valueInteger=v) for v in item.scores],
        ))
    items.append(QuestionnaireItem(linkId=COMMENTS_LINK_ID, text="Comments at moments of the video", type="text", repeats=True))
    resource = Questionnaire(
        url=questionnaire_url(instrument), version=instrument.version, name=instrument.slug.replace("-", "_").upper(),
        title=instrument.name, status="active" if instrument.is_active else "retired", description=instrument.description or None,
        purpose=instrument.source, subjectType=["Practitioner"], item=items,
    )
    return resource.model_dump(mode="json", exclude_none=True)


def _practitioner(username: str) -> Reference:
    return Reference(type="Practitioner", identifier=Identifier(system=USER_SYSTEM, value=username))


def assessment_to_fhir(assessment: Assessment) -> dict[str, Any]:
    """A submitted assessment as a FHIR R5 QuestionnaireResponse answering its instrument's
    Questionnaire: the resident is the subject, the rater the author."""
    instrument = assessment.instrument
    scores = {s.item_id: s.score for s in assessment.scores.all()}
    items = [
        QuestionnaireResponseItem(
            linkId=item.key, text=item.name, answer=[QuestionnaireResponseItemAnswer(valueInteger=scores[item.pk])]
        )
        for item in instrument.items.all()
        if item.pk in scores
    ]
    comments = [
        QuestionnaireResponseItemAnswer(valueString=f"[{clock(c.media_time)}]{' ' + c.item.name + ':' if c.item else ''} {c.text}")
        for c in assessment.comments.select_related("item", "bookmark")
    ]
    if comments:
        items.append(QuestionnaireResponseItem(linkId=COMMENTS_LINK_ID, answer=comments))
    recording = assessment.recording
    resource = QuestionnaireResponse(
        identifier=[Identifier(system=ASSESSMENT_SYSTEM, value=str(assessment.public_id))],
        questionnaire=f"{questionnaire_url(instrument)}|{instrument.version}",
        status="completed" if assessment.is_submitted else "in-progress",
        subject=_practitioner(assessment.resident.username),
        author=_practitioner(assessment.rater.username),
        authored=assessment.submitted_at or assessment.created_at,
        item=items,
        extension=[Extension(
            url="urn:orstream:assessed-recording",
            valueIdentifier=Identifier(system=RECORDING_SYSTEM, value=str(recording.public_id)),
        )],
    )
    return resource.model_dump(mode="json", exclude_none=True)


CSV_COLUMNS = [
    "assessment", "programme", "instrument", "version", "recording", "procedure", "part_start", "part_end",
    "resident", "rater", "submitted_at", "item", "score", "comments",
]


def assessments_csv(assessments: Iterable[Assessment]) -> str:
    """One row per scored item of each submitted assessment; the item's comments, with their times, in the last column."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for a in assessments:
        scores = {s.item_id: s.score for s in a.scores.all()}
        comments: dict[int | None, list[str]] = {}
        for c in a.comments.all():
            comments.setdefault(c.item_id, []).append(f"[{clock(c.media_time)}] {c.text}")
        for item in a.instrument.items.all():
            writer.writerow([
                a.public_id, a.programme.name, a.instrument.short_name, a.instrument.version, a.recording.public_id,
                a.recording.session.procedure, "" if a.part_start is None else a.part_start, "" if a.part_end is None else a.part_end,
                a.resident.username, a.rater.username, a.submitted_at.isoformat() if a.submitted_at else "",
                item.name, scores.get(item.pk, ""), " | ".join(comments.get(item.pk, [])),
            ])
        if comments.get(None):
            writer.writerow([a.public_id, a.programme.name, a.instrument.short_name, a.instrument.version, a.recording.public_id,
                             a.recording.session.procedure, "", "", a.resident.username, a.rater.username,
                             a.submitted_at.isoformat() if a.submitted_at else "", "(whole performance)", "", " | ".join(comments[None])])
    return out.getvalue()

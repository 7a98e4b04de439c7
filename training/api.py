"""The training part of the JSON API (documented at /api/schema/): assessments with the pages'
blinding rule and consent limit, instruments, and their FHIR R5 exports. Each endpoint parses,
calls training.services (which applies the rules and audits) and shapes the reply."""

from __future__ import annotations

from typing import Any, cast

from django.http import Http404, HttpRequest
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orstream.pages import refusal_audit

from . import export, services
from .models import Assessment


def _assessment(public_id: Any) -> Assessment:
    assessment = services.assessment_get(public_id=public_id)
    if assessment is None:
        raise Http404("No such assessment.")
    return assessment


def card_json(card: services.AssessmentCard) -> dict[str, Any]:
    """An assessment as the API shows it: scores and comments only where the blinding rule lets
    the caller read them (``visible``)."""
    a = card.assessment
    body: dict[str, Any] = {
        "id": str(a.public_id), "recording": str(a.recording.public_id), "instrument": a.instrument.short_name,
        "version": a.instrument.version, "resident": a.resident.username, "rater": a.rater.username,
        "part": [a.part_start, a.part_end] if a.part_start is not None else None,
        "submitted_at": a.submitted_at, "visible": card.visible,
    }
    if card.visible:
        body |= {"scores": card.scores, "total": card.total, "summary": a.summary,
                 "comments": [{"t": c.media_time, "item": c.item.key if c.item else None, "text": c.text} for c in card.comments]}
    return body


def _refused(request: Request, message: str) -> Response:
    """The API's refusal, audited like a refusal page."""
    refusal_audit(request=cast(HttpRequest, request), message=message, title="Refused by the API", status=403)
    return Response({"detail": message}, status=status.HTTP_403_FORBIDDEN)


class AssessmentList(APIView):
    """The assessments you may know of; others' scores only once the blinding rule allows."""

    @extend_schema(operation_id="training_assessments_list", responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        return Response([card_json(c) for c in services.assessment_list_for(user=request.user)])


def _opened(request: Request, public_id: Any) -> Assessment | Response:
    """The assessment, opened under the blinding rule and the consent limit, or the 403 reply."""
    try:
        return services.assessment_open(assessment=_assessment(public_id), user=request.user)
    except services.TrainingAccessDenied as refusal:
        return _refused(request, str(refusal))


class AssessmentDetail(APIView):
    """One assessment with its scores and time-stamped comments (403 while blind to you)."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, public_id: Any) -> Response:
        assessment = _opened(request, public_id)
        if isinstance(assessment, Response):
            return assessment
        return Response(card_json(services.assessment_card(assessment=assessment, user=request.user)))


class AssessmentFhir(APIView):
    """A submitted assessment as a FHIR R5 QuestionnaireResponse."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, public_id: Any) -> Response:
        assessment = _opened(request, public_id)
        if isinstance(assessment, Response):
            return assessment
        if not assessment.is_submitted:
            return Response({"detail": "Only a submitted assessment is exported."}, status=status.HTTP_409_CONFLICT)
        return Response(export.assessment_to_fhir(assessment), content_type="application/fhir+json")


class InstrumentList(APIView):
    """The instruments in use, with their items, score ranges and anchors."""

    @extend_schema(operation_id="training_instruments_list", responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        if not request.user.is_authenticated:
            return _refused(request, "Sign in to read the instruments.")
        return Response([
            {"id": i.pk, "slug": i.slug, "version": i.version, "name": i.name, "short_name": i.short_name,
             "description": i.description, "source": i.source,
             "items": [{"key": it.key, "name": it.name, "min": it.min_score, "max": it.max_score, "anchors": it.anchors}
                       for it in i.items.all()]}
            for i in services.instrument_list_active()
        ])


class InstrumentFhir(APIView):
    """An instrument as a FHIR R5 Questionnaire."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, pk: int) -> Response:
        if not request.user.is_authenticated:
            return _refused(request, "Sign in to read the instruments.")
        instrument = services.instrument_get(pk=pk)
        if instrument is None:
            raise Http404("No such instrument.")
        return Response(export.instrument_to_fhir(instrument), content_type="application/fhir+json")

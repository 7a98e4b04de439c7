"""The recordings part of the JSON API (documented at /api/schema/): list, start, stop, export
and download, with the pages' rules. Each endpoint parses, calls one service of
recordings.services (which asks the consent gate, authorizes and audits) and shapes the reply."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from django.http import FileResponse, Http404, HttpRequest
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consent import services as consent_services
from mentoring import services as mentoring_services
from mentoring.services import is_uuid
from orstream.pages import found, refusal_audit

from . import services
from .models import Recording


class RecordingSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    session = serializers.UUIDField(source="session.public_id", read_only=True)
    parts = serializers.SerializerMethodField(help_text="How many parts (segments) can be downloaded")

    class Meta:
        model = Recording
        fields = [
            "id", "session", "status", "started_at", "ended_at", "duration", "width", "height", "fps",
            "video_codec", "audio_codec", "size", "tags", "legal_hold", "error", "parts",
        ]
        read_only_fields = fields

    def get_parts(self, recording: Recording) -> int:
        return recording.segments.count()


class ExportSerializer(serializers.Serializer):
    destination = serializers.CharField(help_text="A folder under one of ORSTREAM_EXPORT_DESTINATIONS")


class ExportJobSerializer(serializers.Serializer):
    job = serializers.UUIDField()
    status = serializers.CharField()
    progress = serializers.IntegerField()
    error = serializers.CharField()


def _refused(request: Request, message: str, code: int = status.HTTP_403_FORBIDDEN) -> Response:
    """The API's refusal, audited like a refusal page (a media server that failed is not a refusal)."""
    if code < 500:
        refusal_audit(request=cast(HttpRequest, request), message=message, title="Refused by the API", status=code)
    return Response({"detail": message}, status=code)


def _recording(public_id: Any) -> Recording:
    recording = services.recording_get(public_id=public_id)
    if recording is None:
        raise Http404("No such recording.")
    return recording


class RecordingList(APIView):
    """The recordings you may play (the library's rules), newest first."""

    @extend_schema(
        parameters=[OpenApiParameter("session", OpenApiTypes.UUID, description="only this session's recordings")],
        responses=RecordingSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        session = request.query_params.get("session", "")
        if session and not is_uuid(session):
            return Response({"session": ["Give the session's id (a UUID)."]}, status=status.HTTP_400_BAD_REQUEST)
        recordings = services.recording_list_for(user=request.user, filters=services.LibraryFilter(session=session))
        return Response(RecordingSerializer(recordings.prefetch_related("segments")[:500], many=True).data)


class RecordingStart(APIView):
    """Start recording a live session: the coordinator or the operating surgeon, under the
    patient's consent to recording."""

    @extend_schema(request=None, responses={201: RecordingSerializer})
    def post(self, request: Request, public_id: Any) -> Response:
        session = found(mentoring_services.session_get(public_id=public_id), "session")
        try:
            recording = services.recording_start(session=session, by=request.user)
        except consent_services.ConsentError:
            return _refused(request, "The patient's consent does not cover recording: the recording was not started.", 409)
        except services.RecordingAccessDenied as refusal:
            return _refused(request, str(refusal))
        except services.RecordingError as error:
            return _refused(request, str(error), status.HTTP_409_CONFLICT)
        return Response(RecordingSerializer(recording).data, status=status.HTTP_201_CREATED)


class RecordingStop(APIView):
    """Stop a recording; finalizing follows. Stopping one already stopped changes nothing."""

    @extend_schema(request=None, responses=RecordingSerializer)
    def post(self, request: Request, public_id: Any) -> Response:
        recording = _recording(public_id)
        try:
            services.recording_stop_check(recording=recording, user=request.user)
            recording = services.recording_stop(recording=recording, by=request.user)
        except services.RecordingAccessDenied as refusal:
            return _refused(request, str(refusal))
        except services.RecordingEdgeUnavailable as failure:
            return _refused(request, str(failure), status.HTTP_502_BAD_GATEWAY)
        return Response(RecordingSerializer(recording).data)


class RecordingExport(APIView):
    """Queue a verified copy to an allowed destination (the records office); follow the job on
    the recording's page or its WebSocket."""

    @extend_schema(request=ExportSerializer, responses={202: ExportJobSerializer})
    def post(self, request: Request, public_id: Any) -> Response:
        recording = _recording(public_id)
        data = ExportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            job = services.export_request(recording=recording, destination=Path(data.validated_data["destination"]), by=request.user)
        except services.RecordingAccessDenied as refusal:
            return _refused(request, str(refusal))
        except services.RecordingError as problem:
            return Response({"destination": [str(problem)]}, status=status.HTTP_400_BAD_REQUEST)
        job.refresh_from_db()
        body = {"job": str(job.public_id), "status": job.status, "progress": job.progress, "error": job.error}
        return Response(body, status=status.HTTP_202_ACCEPTED)


class RecordingDownload(APIView):
    """One part of the recording as an MP4 file (the records office and the surgeon; audited)."""

    @extend_schema(responses={(200, "video/mp4"): OpenApiTypes.BINARY})
    def get(self, request: Request, public_id: Any, index: int) -> Any:
        recording = _recording(public_id)
        try:
            media = services.recording_download_open(recording=recording, index=index, user=request.user)
        except services.RecordingAccessDenied as refusal:
            return _refused(request, str(refusal))
        except services.RecordingError:
            raise Http404("This recording has no such part.") from None
        response = FileResponse(media.handle, as_attachment=True, filename=media.name, content_type="video/mp4")
        response["Cache-Control"] = "private, no-store"
        return response

"""The JSON API for scheduling (documented at /api/schema/). Same services, validations and
permissions as the coordinator's pages: each endpoint parses, authorizes, calls one service."""

from __future__ import annotations

import zoneinfo
from typing import Any

from django.contrib.auth.models import User
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orstream import roles
from orstream.pages import found

from . import services
from .models import OperatingRoom, Participant, Role, Session

# Raised, not returned: DRF's reply to it is audited like every refusal (orstream.pages).
NOT_A_PARTICIPANT = "You are not part of this session."


class IsCoordinator(permissions.BasePermission):
    message = "This needs a coordinator: ask your administrator to add you to the coordinator group."

    def has_permission(self, request: Request, view: Any) -> bool:
        return roles.user_is_coordinator(request.user)


class RoomSerializer(serializers.ModelSerializer):
    class Meta:
        model = OperatingRoom
        fields = ["id", "name", "location", "is_active"]
        read_only_fields = ["id", "is_active"]


class ParticipantSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    link_state = serializers.SerializerMethodField(
        help_text="active, revoked, expired, used (a one-time link spent), removed or none (never sent)"
    )

    class Meta:
        model = Participant
        fields = ["id", "role", "display_name", "email", "is_external", "invited_at", "removed_at", "link_state"]
        read_only_fields = ["id", "invited_at", "removed_at", "link_state"]

    def get_link_state(self, participant: Participant) -> str:
        return services.participant_link_state(participant=participant)


class SessionSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    room = serializers.PrimaryKeyRelatedField(queryset=OperatingRoom.objects.all())
    surgeon = serializers.PrimaryKeyRelatedField(queryset=User.objects.filter(is_active=True))
    participants = ParticipantSerializer(many=True, read_only=True)

    class Meta:
        model = Session
        fields = [
            "id", "procedure", "room", "surgeon", "planned_start", "planned_end", "time_zone",
            "patient_ref", "notes", "status", "participants",
        ]
        read_only_fields = ["id", "status", "participants"]

    def validate_time_zone(self, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise serializers.ValidationError(f"Unknown time zone {value!r}: use a name such as Europe/Paris.") from None
        return value


class SessionSummarySerializer(serializers.ModelSerializer):
    """What a participant who does not manage the session sees of it, as on the session list: no
    case reference, notes or participants' e-mails (those are for the coordinator and the surgeon)."""

    id = serializers.UUIDField(source="public_id", read_only=True)

    class Meta:
        model = Session
        fields = ["id", "procedure", "room", "surgeon", "planned_start", "planned_end", "time_zone", "status"]
        read_only_fields = fields


def _may_manage(user: Any, session: Session) -> bool:
    """The coordinator and the operating surgeon manage a session (the session page is theirs)."""
    return roles.user_is_coordinator(user) or session.surgeon_id == user.pk


def _session_data(user: Any, session: Session) -> Any:
    return (SessionSerializer if _may_manage(user, session) else SessionSummarySerializer)(session).data


class InviteSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=[r.value for r in Role if r != Role.SURGEON])
    display_name = serializers.CharField(max_length=120)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    is_external = serializers.BooleanField(default=False)
    send_invitation = serializers.BooleanField(default=True)


class SpecialistSerializer(serializers.Serializer):
    display_name = serializers.CharField(max_length=120)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    minutes = serializers.IntegerField(min_value=1)
    is_external = serializers.BooleanField(default=True)


class JoinLinkSerializer(serializers.Serializer):
    participant = ParticipantSerializer()
    join_url = serializers.CharField()


def _scheduling_error(error: services.SchedulingError) -> Response:
    return Response({error.field or "non_field_errors": [str(error)]}, status=status.HTTP_400_BAD_REQUEST)


def _session(public_id: Any) -> Session:
    return found(services.session_get(public_id=public_id), "session")


class RoomList(APIView):
    """Operating rooms: list them (signed in), add one (coordinators)."""

    def get_permissions(self) -> list[Any]:
        return [permissions.IsAuthenticated()] if self.request.method == "GET" else [IsCoordinator()]

    @extend_schema(responses=RoomSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(RoomSerializer(services.room_list(), many=True).data)

    @extend_schema(request=RoomSerializer, responses={201: RoomSerializer})
    def post(self, request: Request) -> Response:
        data = RoomSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            room = services.room_create(name=data.validated_data["name"], location=data.validated_data.get("location", ""))
        except services.SchedulingError as error:
            return _scheduling_error(error)
        return Response(RoomSerializer(room).data, status=status.HTTP_201_CREATED)


class SessionList(APIView):
    """Sessions you are part of (coordinators: all); schedule one (coordinators)."""

    def get_permissions(self) -> list[Any]:
        return [permissions.IsAuthenticated()] if self.request.method == "GET" else [IsCoordinator()]

    @extend_schema(responses=SessionSerializer(many=True))
    def get(self, request: Request) -> Response:
        sessions = services.session_list_for(user=request.user, include_past=request.query_params.get("past") == "1")
        return Response([_session_data(request.user, s) for s in sessions.prefetch_related("participants__tokens")])

    @extend_schema(request=SessionSerializer, responses={201: SessionSerializer})
    def post(self, request: Request) -> Response:
        data = SessionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            session = services.session_schedule(created_by=request.user, **data.validated_data)
        except services.SchedulingError as error:
            return _scheduling_error(error)
        return Response(SessionSerializer(session).data, status=status.HTTP_201_CREATED)


class SessionDetail(APIView):
    """One session: with its case reference, notes and participants for the coordinator and the
    surgeon; as on the session list for its other participants."""

    @extend_schema(responses=SessionSerializer)
    def get(self, request: Request, public_id: Any) -> Response:
        session = _session(public_id)
        if not (roles.user_runs_session(request.user, session)
                or session.participants.filter(user=request.user).exists()):
            raise PermissionDenied(NOT_A_PARTICIPANT)
        return Response(_session_data(request.user, session))


class SessionAction(APIView):
    """Take a session live (start), end it (end) or cancel it (cancel): at once, no confirm step."""

    permission_classes = [IsCoordinator]
    actions = {"start": services.session_start, "end": services.session_end, "cancel": services.session_cancel}

    @extend_schema(request=None, responses=SessionSerializer, operation_id="sessions_action")
    def post(self, request: Request, public_id: Any, action: str) -> Response:
        act = self.actions.get(action)
        if act is None:
            return Response({"detail": f"Unknown action {action!r}; use start, end or cancel."}, status=404)
        try:
            session = act(session=_session(public_id), by=request.user)
        except services.SchedulingError as error:
            return _scheduling_error(error)
        return Response(SessionSerializer(session).data)


class ParticipantList(APIView):
    """Add a participant and send them a join link (shown once)."""

    permission_classes = [IsCoordinator]

    @extend_schema(request=InviteSerializer, responses={201: JoinLinkSerializer})
    def post(self, request: Request, public_id: Any) -> Response:
        session = _session(public_id)
        data = InviteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        try:
            participant, url = services.participant_invite(
                session=session, role=v["role"], display_name=v["display_name"], email=v["email"],
                is_external=v["is_external"], send_invitation=v["send_invitation"], by=request.user,
            )
        except services.SchedulingError as error:
            return _scheduling_error(error)
        return Response({"participant": ParticipantSerializer(participant).data, "join_url": url}, status=201)


class ParticipantRevoke(APIView):
    """Revoke a participant's links: their connection drops at once."""

    permission_classes = [IsCoordinator]

    @extend_schema(request=None, responses={200: None})
    def post(self, request: Request, participant_id: Any) -> Response:
        participant = found(services.participant_get(public_id=participant_id), "participant")
        return Response({"revoked": services.join_token_revoke(participant=participant, by=request.user)})


class ParticipantReinvite(APIView):
    """A new join link for a participant whose links were revoked or expired (e-mailed when they
    have an address); their earlier links stay revoked."""

    permission_classes = [IsCoordinator]

    @extend_schema(request=None, responses={201: JoinLinkSerializer})
    def post(self, request: Request, participant_id: Any) -> Response:
        participant = found(services.participant_get(public_id=participant_id), "participant")
        try:
            url = services.participant_reinvite(participant=participant, by=request.user)
        except services.SchedulingError as error:
            return _scheduling_error(error)
        return Response({"participant": ParticipantSerializer(participant).data, "join_url": url}, status=201)


class ParticipantDetail(APIView):
    """Remove a participant from the session: links revoked, connection dropped."""

    permission_classes = [IsCoordinator]

    @extend_schema(responses={204: None})
    def delete(self, request: Request, participant_id: Any) -> Response:
        participant = found(services.participant_get(public_id=participant_id), "participant")
        services.participant_remove(participant=participant, by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SpecialistLink(APIView):
    """A one-time link for a specialist while the session is live."""

    @extend_schema(request=SpecialistSerializer, responses={201: JoinLinkSerializer})
    def post(self, request: Request, public_id: Any) -> Response:
        data = SpecialistSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            participant, url = services.specialist_link_mint(session=_session(public_id), by=request.user, **data.validated_data)
        except services.SchedulingError as error:
            return _scheduling_error(error)
        return Response({"participant": ParticipantSerializer(participant).data, "join_url": url}, status=201)


class SessionCalendar(APIView):
    """The session's iCalendar file (in the session's time zone)."""

    @extend_schema(responses={(200, "text/calendar"): str})
    def get(self, request: Request, public_id: Any) -> HttpResponse:
        session = _session(public_id)
        if not (roles.user_runs_session(request.user, session)
                or session.participants.filter(user=request.user).exists()):
            raise PermissionDenied(NOT_A_PARTICIPANT)
        return HttpResponse(services.session_ics(session=session), content_type="text/calendar; charset=utf-8")

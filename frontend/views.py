"""JSON the live pages poll: who is connected and how their video fares (from the edge's stats),
recording and consent state; and the coordinator's live actions (remove someone, start or stop
a recording).

A page proves who it is with its join token in the ``X-Orstream-Token`` header (the same token it
joined the WebSocket with), or a logged-in coordinator uses their session. Each view parses,
authorizes, calls one service and shapes the reply; the rules live in the apps' services.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from consent import services as consent_services
from mentoring import services
from mentoring.models import Role, Session
from mentoring.views import page_context
from orstream import roles as site_roles
from orstream.pages import coordinator_required, found, refused
from recordings import services as recording_services


class Caller:
    """Who is asking: a coordinator's or surgeon's participant in this session, and the user who acts."""

    def __init__(self, *, role: str, user: Any) -> None:
        self.role = role
        self.user = user


def _refuse(message: str, status: int = 403) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _caller(request: HttpRequest, session: Session, roles: frozenset[str]) -> Caller | JsonResponse:
    token = request.headers.get("X-Orstream-Token", "")
    if token:
        try:
            admission = services.join_token_check(token=token, session_public_id=str(session.public_id))
        except services.JoinRefused as refusal:
            return _refuse(str(refusal))
        if admission.participant.role not in roles:
            return _refuse("Your link does not allow this.")
        return Caller(role=admission.participant.role, user=admission.participant.user)
    if site_roles.user_is_coordinator(request.user):
        return Caller(role=Role.COORDINATOR, user=request.user)
    return _refuse("Open this page from your join link, or sign in as a coordinator.")


def _session(public_id: Any) -> Session:
    return found(services.session_get(public_id=public_id), "session")


@require_GET
def live_state(request: HttpRequest, public_id: Any) -> HttpResponse:
    """Connected participants with their reported latency, the edge's per-viewer stats, recording
    and consent state. The edge being down is part of the answer, not an error."""
    session = _session(public_id)
    caller = _caller(request, session, site_roles.STATE_ROLES)
    if isinstance(caller, JsonResponse):
        return caller
    return JsonResponse(recording_services.session_live_state(session=session))


@require_POST
def live_remove(request: HttpRequest, public_id: Any, participant_id: Any) -> HttpResponse:
    """Remove a participant: their links stop working and their connection drops at once."""
    session = _session(public_id)
    caller = _caller(request, session, site_roles.REMOVE_ROLES)
    if isinstance(caller, JsonResponse):
        return caller
    if caller.user is None:
        return _refuse("Sign in as a coordinator to remove people from a session.")
    participant = found(services.participant_get(public_id=participant_id, session=session), "participant in this session")
    services.participant_remove(participant=participant, by=caller.user)
    return JsonResponse({"removed": services.participant_card(participant)})


@require_POST
def live_recording(request: HttpRequest, public_id: Any) -> HttpResponse:
    """Start or stop recording: body {"action": "start"} or {"action": "stop"}."""
    session = _session(public_id)
    caller = _caller(request, session, site_roles.RECORD_ROLES)
    if isinstance(caller, JsonResponse):
        return caller
    if caller.user is None:
        return _refuse("Sign in as the coordinator or the operating surgeon to record.")
    try:
        action = json.loads(request.body or b"{}").get("action")
    except (ValueError, AttributeError):
        action = None
    try:
        if action == "start":
            recording_services.recording_start(session=session, by=caller.user)
        elif action == "stop":
            recording = recording_services.recording_running_for(session=session)
            if recording is not None:
                recording_services.recording_stop(recording=recording, by=caller.user)
        else:
            return _refuse('Send {"action": "start"} or {"action": "stop"}.', status=400)
    except recording_services.RecordingEdgeUnavailable as failure:
        return _refuse(str(failure), status=502)
    except consent_services.ConsentError:
        return _refuse("The patient's consent does not cover recording: the recording was not started.", status=409)
    except recording_services.RecordingError as error:
        return _refuse(str(error), status=409)
    edge = services.session_edge_stats(session=session)
    return JsonResponse({"recording": recording_services.recording_live_card(session=session, edge=edge)})


@coordinator_required
def session_live(request: HttpRequest, public_id: Any) -> HttpResponse:
    """The live view for a logged-in coordinator, as the session's own coordinator participant."""
    session = _session(public_id)
    try:
        participant, token = services.session_live_join(session=session, user=request.user)
    except services.SchedulingError as error:
        return refused(request, str(error), title="This session is over")
    response = render(request, "frontend/live.html", page_context(session, participant, token))
    response["Cache-Control"] = "no-store"
    return response

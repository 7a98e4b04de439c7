"""Coordinator pages, join links and the edge's webhook. Each view parses, authorizes, calls one
service and shapes the reply; the rules live in mentoring.services."""

from __future__ import annotations

from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from orstream import roles
from orstream.pages import coordinator_required, found, refused

from . import events, services
from .forms import COMMON_ZONES, ParticipantForm, RoomForm, SessionForm, SpecialistForm
from .models import Participant, Session


def confirmation(
    request: HttpRequest, *, title: str, message: str, button: str, back: str, keep: str = "No, go back"
) -> HttpResponse | None:
    """The confirm step of a destructive action: None once the person confirmed, else the page
    that asks them (a plain form, so it works without script under a strict CSP). The JSON API
    acts at once."""
    if request.POST.get("confirmed") == "yes":
        return None
    context = {"title": title, "message": message, "button": button, "back": back, "keep": keep}
    return render(request, "mentoring/confirm.html", context)


def _form_errors(form: Any) -> str:
    return " ".join(str(error) for errors in form.errors.values() for error in errors)


def _session(public_id: Any) -> Session:
    return found(services.session_get(public_id=public_id), "session")


def _participant(participant_id: Any) -> Participant:
    return found(services.participant_get(public_id=participant_id), "participant")


def _may_manage(request: HttpRequest, session: Session) -> bool:
    return roles.user_runs_session(request.user, session)


@login_required
def session_list(request: HttpRequest) -> HttpResponse:
    sessions = services.session_list_for(user=request.user, include_past=request.GET.get("past") == "1")
    return render(
        request,
        "mentoring/session_list.html",
        {"sessions": sessions, "is_coordinator": roles.user_is_coordinator(request.user)},
    )


@coordinator_required
def session_new(request: HttpRequest) -> HttpResponse:
    form = SessionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            session = services.session_schedule(created_by=request.user, **form.cleaned_data)
        except services.SchedulingError as error:
            form.add_error(error.field if error.field in form.fields else None, str(error))
        else:
            messages.success(request, "Session scheduled. Add participants and send invitations below.")
            return redirect("mentoring:session_detail", session.public_id)
    status = 400 if request.method == "POST" else 200
    return render(request, "mentoring/session_form.html", {"form": form, "zones": COMMON_ZONES}, status=status)


@login_required
def session_detail(request: HttpRequest, public_id: Any) -> HttpResponse:
    session = _session(public_id)
    if not _may_manage(request, session):
        return refused(request, "Only the coordinator and the operating surgeon can manage this session.")
    return render(
        request,
        "mentoring/session_detail.html",
        {
            "session": session,
            "participants": [
                (p, services.participant_link_state(participant=p))
                for p in session.participants.filter(removed_at__isnull=True).prefetch_related("tokens")
            ],
            "connected": {p.pk for p in services.presence_connected(session=session)},
            "participant_form": ParticipantForm(),
            "specialist_form": SpecialistForm(),
            "is_coordinator": roles.user_is_coordinator(request.user),
            "feed_state": services.room_feed_state(room=session.room),
            "feed_preparing_message": services.FEED_PREPARING_MESSAGE,
        },
    )


@require_POST
@coordinator_required
def session_action(request: HttpRequest, public_id: Any, action: str) -> HttpResponse:
    session = _session(public_id)
    act = {"start": services.session_start, "end": services.session_end, "cancel": services.session_cancel}.get(action)
    if act is None:
        return refused(request, "Unknown action.", status=404)
    back = reverse("mentoring:session_detail", args=[session.public_id])
    if action == "end" and session.status == Session.Status.LIVE:
        ask = confirmation(
            request, title=f"End {session.procedure}?", back=back, button="End the session", keep="Keep it live",
            message="Everyone watching is disconnected, any recording stops, and the session cannot go live again.",
        )
    elif action == "cancel" and session.status == Session.Status.SCHEDULED:
        ask = confirmation(
            request, title=f"Cancel {session.procedure}?", back=back, button="Cancel the session", keep="Keep it scheduled",
            message="Every invitee gets a cancellation and every join link stops working. This cannot be undone.",
        )
    else:
        ask = None
    if ask is not None:
        return ask
    try:
        act(session=session, by=request.user)
    except services.SchedulingError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Session {session.get_status_display().lower()}.")
    return redirect("mentoring:session_detail", session.public_id)


@require_POST
@coordinator_required
def participant_invite(request: HttpRequest, public_id: Any) -> HttpResponse:
    session = _session(public_id)
    form = ParticipantForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return redirect("mentoring:session_detail", session.public_id)
    data = form.cleaned_data
    try:
        participant, url = services.participant_invite(
            session=session,
            role=data["role"],
            display_name=data["display_name"],
            email=data["email"],
            is_external=data["is_external"],
            send_invitation=data["send_invitation"],
            by=request.user,
        )
    except services.SchedulingError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Join link for {participant.display_name} (shown once): {url}")
    return redirect("mentoring:session_detail", session.public_id)


def _ask_about(request: HttpRequest, participant: Participant, title: str, button: str, message: str) -> HttpResponse | None:
    back = reverse("mentoring:session_detail", args=[participant.session.public_id])
    return confirmation(request, title=title, button=button, message=message, back=back)


@require_POST
@coordinator_required
def participant_revoke(request: HttpRequest, participant_id: Any) -> HttpResponse:
    participant = _participant(participant_id)
    ask = _ask_about(request, participant, f"Revoke the links of {participant.display_name}?", "Revoke their links",
                     "Their join links stop working and their connection drops now. You can send them a new link later.")
    if ask is not None:
        return ask
    count = services.join_token_revoke(participant=participant, by=request.user)
    messages.success(request, f"{count} link(s) of {participant.display_name} revoked; their connection was dropped.")
    return redirect("mentoring:session_detail", participant.session.public_id)


@require_POST
@coordinator_required
def participant_reinvite(request: HttpRequest, participant_id: Any) -> HttpResponse:
    participant = _participant(participant_id)
    try:
        url = services.participant_reinvite(participant=participant, by=request.user)
    except services.SchedulingError as error:
        messages.error(request, str(error))
    else:
        mailed = " and e-mailed to them" if participant.email else ""
        messages.success(request, f"New join link for {participant.display_name}{mailed} (shown once): {url}")
    return redirect("mentoring:session_detail", participant.session.public_id)


@require_POST
@coordinator_required
def participant_remove(request: HttpRequest, participant_id: Any) -> HttpResponse:
    participant = _participant(participant_id)
    ask = _ask_about(request, participant, f"Remove {participant.display_name} from the session?", "Remove them",
                     "They leave the participant list, their links stop working and their connection drops now.")
    if ask is not None:
        return ask
    services.participant_remove(participant=participant, by=request.user)
    messages.success(request, f"{participant.display_name} was removed from the session.")
    return redirect("mentoring:session_detail", participant.session.public_id)


@require_POST
@login_required
def specialist_link(request: HttpRequest, public_id: Any) -> HttpResponse:
    session = _session(public_id)
    form = SpecialistForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return redirect("mentoring:session_detail", session.public_id)
    try:
        participant, url = services.specialist_link_mint(session=session, by=request.user, **form.cleaned_data)
    except services.SchedulingError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"One-time link for {participant.display_name}, valid {form.cleaned_data['minutes']} min: {url}")
    return redirect("mentoring:session_detail", session.public_id)


@login_required
def session_calendar(request: HttpRequest, public_id: Any) -> HttpResponse:
    session = _session(public_id)
    if not (_may_manage(request, session) or session.participants.filter(user_id=cast(int, request.user.pk)).exists()):
        return refused(request, "You are not part of this session.")
    response = HttpResponse(services.session_ics(session=session), content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="orstream-{session.public_id}.ics"'
    return response


@coordinator_required
def room_new(request: HttpRequest) -> HttpResponse:
    form = RoomForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.room_create(**form.cleaned_data)
        except services.SchedulingError as error:
            form.add_error("name", str(error))
        else:
            messages.success(request, "Operating room added.")
            return redirect("mentoring:session_list")
    return render(request, "mentoring/room_form.html", {"form": form})


def page_context(session: Session, participant: Participant, token: str) -> dict[str, Any]:
    """What a live page needs: its session and participant, and the bootstrap its script reads."""
    return {
        "session": session,
        "participant": participant,
        "bootstrap": services.page_bootstrap(session=session, participant=participant, token=token),
    }


def join(request: HttpRequest, token: str) -> HttpResponse:
    """A join link: refuses with a clear 403 page, or opens the page for the participant's role."""
    try:
        admission = services.join_token_check(token=token)
    except services.JoinRefused as refusal:
        return refused(request, str(refusal), title="This link cannot be used")
    participant, session = admission.participant, admission.session
    page = {
        "surgeon": "frontend/console.html",
        "display": "frontend/display.html",
        "coordinator": "frontend/live.html",
    }.get(participant.role, "frontend/mentor.html")
    response = render(request, page, page_context(session, participant, token))
    # The token is in this URL: keep it out of referrers and caches.
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response


@csrf_exempt
@require_POST
def edge_events(request: HttpRequest) -> HttpResponse:
    """Signed webhooks from the edge: publisher up/down, viewers, recording segments."""
    try:
        event = events.edge_event_read(path=request.get_full_path(), body=request.body, headers=request.headers)
        handled = events.edge_event_handle(event=event)
    except events.EventError as error:
        return JsonResponse({"error": str(error)}, status=error.status)
    return JsonResponse({"ok": True, "duplicate": not handled})

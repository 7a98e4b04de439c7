"""The mentoring admin: a view of rooms, sessions, people and links for staff looking into a problem.

Every change that matters (a session's status, a participant's role, revoking links, removing
someone) goes through the services, as on the pages: audited, and live peers dropped. Sessions
and participants are added from the site's pages (bookings are checked, invitations sent), and
nothing is deleted here (the audit trail and PROTECT keys rely on it).
"""

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from orstream.adminkit import ReadOnlyAdmin

from . import services
from .models import Annotation, JoinToken, OperatingRoom, Participant, PresenceEvent, Session


def _each(
    admin_: admin.ModelAdmin, request: HttpRequest, rows: QuerySet[Any], act: Callable[[Any], Any], done: str
) -> None:
    """Run a service on each selected row; say what was done and what was refused, and why."""
    count = 0
    for row in rows:
        try:
            act(row)
        except services.SchedulingError as error:
            admin_.message_user(request, f"{row}: {error}", messages.ERROR)
        else:
            count += 1
    if count:
        admin_.message_user(request, f"{done}: {count}.", messages.SUCCESS)


class NoDelete:
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(OperatingRoom)
class OperatingRoomAdmin(NoDelete, admin.ModelAdmin):
    list_display = ["name", "location", "is_active", "edge_url"]
    fields = ["name", "location", "is_active", "edge_url", "ingest_url", "lower_ingest_url"]


class ParticipantInline(admin.TabularInline):
    model = Participant
    extra = 0
    can_delete = False
    fields = ("display_name", "role", "email", "is_external", "invited_at", "removed_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Session)
class SessionAdmin(NoDelete, admin.ModelAdmin):
    list_display = ["procedure", "room", "surgeon", "planned_start", "status"]
    list_filter = ["status", "room"]
    search_fields = ["procedure", "patient_ref"]
    inlines = [ParticipantInline]
    # Status, room, surgeon and times change only through the services (go live, end, cancel,
    # reschedule), which check the booking, tell the edge and the pages, and audit.
    readonly_fields = [
        "public_id", "status", "room", "surgeon", "planned_start", "planned_end", "time_zone", "sequence",
        "started_at", "ended_at", "created_by", "created_at",
    ]
    actions = ["start", "end", "cancel"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # scheduled from the site's page, which checks the room's bookings

    @admin.action(description="Take the selected sessions live", permissions=["change"])
    def start(self, request: HttpRequest, rows: QuerySet[Session]) -> None:
        _each(self, request, rows, lambda s: services.session_start(session=s, by=request.user), "Taken live")

    @admin.action(description="End the selected live sessions", permissions=["change"])
    def end(self, request: HttpRequest, rows: QuerySet[Session]) -> None:
        _each(self, request, rows, lambda s: services.session_end(session=s, by=request.user), "Ended")

    @admin.action(description="Cancel the selected scheduled sessions", permissions=["change"])
    def cancel(self, request: HttpRequest, rows: QuerySet[Session]) -> None:
        _each(self, request, rows, lambda s: services.session_cancel(session=s, by=request.user), "Cancelled")


@admin.register(Participant)
class ParticipantAdmin(NoDelete, admin.ModelAdmin):
    list_display = ["display_name", "role", "session", "is_external", "removed_at"]
    list_filter = ["role", "is_external"]
    fields = ["session", "public_id", "display_name", "role", "email", "is_external", "user", "invited_at", "removed_at"]
    readonly_fields = ["session", "public_id", "user", "invited_at", "removed_at"]
    actions = ["revoke_links", "remove"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # added from the session's page, which sends the invitation

    def save_model(self, request: HttpRequest, obj: Participant, form: Any, change: bool) -> None:
        role = obj.role
        if change and "role" in form.changed_data:
            obj.role = form.initial["role"]  # the other fields are saved as they are; the role by its service
        super().save_model(request, obj, form, change)
        if obj.role != role:
            try:
                services.participant_role_change(participant=obj, role=role, by=request.user)
            except services.SchedulingError as error:
                self.message_user(request, str(error), messages.ERROR)
            else:
                self.message_user(request, f"{obj.display_name}'s links were revoked with the role change: send a new link.")

    @admin.action(description="Revoke the selected participants' links (drops them now)", permissions=["change"])
    def revoke_links(self, request: HttpRequest, rows: QuerySet[Participant]) -> None:
        _each(self, request, rows, lambda p: services.join_token_revoke(participant=p, by=request.user), "Links revoked")

    @admin.action(description="Remove the selected participants from their session", permissions=["change"])
    def remove(self, request: HttpRequest, rows: QuerySet[Participant]) -> None:
        _each(self, request, rows, lambda p: services.participant_remove(participant=p, by=request.user), "Removed")


@admin.register(JoinToken)
class JoinTokenAdmin(NoDelete, admin.ModelAdmin):
    # Only hashes are stored: the admin can see and revoke, never recover a link.
    list_display = ["participant", "expires_at", "one_time", "used_at", "revoked_at"]
    readonly_fields = [
        "token_hash", "participant", "expires_at", "one_time", "created_at", "created_by", "used_at", "revoked_at",
    ]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke these links (every link of their participants; drops them now)", permissions=["change"])
    def revoke(self, request: HttpRequest, rows: QuerySet[JoinToken]) -> None:
        people = Participant.objects.filter(pk__in=rows.values("participant_id"))
        _each(self, request, people, lambda p: services.join_token_revoke(participant=p, by=request.user), "Links revoked")


@admin.register(PresenceEvent)
class PresenceEventAdmin(ReadOnlyAdmin):
    list_display = ["session", "participant", "kind", "at"]


@admin.register(Annotation)
class AnnotationAdmin(ReadOnlyAdmin):
    list_display = ["session", "participant", "kind", "media_time", "at"]

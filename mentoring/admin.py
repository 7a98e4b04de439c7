from django.contrib import admin

from .models import Annotation, JoinToken, OperatingRoom, Participant, PresenceEvent, Session


@admin.register(OperatingRoom)
class OperatingRoomAdmin(admin.ModelAdmin):
    list_display = ["name", "location", "is_active", "edge_url"]


class ParticipantInline(admin.TabularInline):
    model = Participant
    extra = 0
    fields = ["display_name", "role", "email", "is_external", "invited_at", "removed_at"]
    readonly_fields = ["invited_at", "removed_at"]


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ["procedure", "room", "surgeon", "planned_start", "status"]
    list_filter = ["status", "room"]
    search_fields = ["procedure", "patient_ref"]
    inlines = [ParticipantInline]
    readonly_fields = ["public_id", "sequence", "started_at", "ended_at"]


@admin.register(Participant)
class ParticipantAdmin(admin.ModelAdmin):
    list_display = ["display_name", "role", "session", "is_external", "removed_at"]
    list_filter = ["role", "is_external"]


@admin.register(JoinToken)
class JoinTokenAdmin(admin.ModelAdmin):
    # Only hashes are stored: the admin can see and revoke, never recover a link.
    list_display = ["participant", "expires_at", "one_time", "used_at", "revoked_at"]
    readonly_fields = ["token_hash", "participant", "created_at", "created_by", "used_at"]


@admin.register(PresenceEvent)
class PresenceEventAdmin(admin.ModelAdmin):
    list_display = ["session", "participant", "kind", "at"]


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["session", "participant", "kind", "media_time", "at"]

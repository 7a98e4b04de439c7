"""Admin for consent forms, records and the audit trail.

Consent records and audit events are read-only here: a record changes only through
consent.services (which audits it), and the audit trail is append-only.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from orstream.adminkit import ReadOnlyAdmin

from .models import AuditEvent, ConsentDecision, ConsentForm, ConsentRecord


@admin.register(ConsentForm)
class ConsentFormAdmin(admin.ModelAdmin):
    list_display = ("title", "version", "is_active", "created_at")
    list_filter = ("is_active",)


class ConsentDecisionInline(admin.TabularInline):
    model = ConsentDecision
    extra = 0
    can_delete = False
    readonly_fields = ("purpose", "granted")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ConsentRecord)
class ConsentRecordAdmin(admin.ModelAdmin):
    list_display = ("pk", "session", "form", "obtained_at", "withdrawn_at")
    list_filter = ("withdrawn_at",)
    inlines = [ConsentDecisionInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in ConsentRecord._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "at", "action", "outcome", "actor", "session_public_id", "target")
    list_filter = ("action", "outcome")
    search_fields = ("session_public_id", "target", "actor")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in AuditEvent._meta.fields]

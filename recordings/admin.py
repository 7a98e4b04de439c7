"""Admin for the records office: recordings, their segments, exports and retention policies.

Technical facts are read-only; legal hold and tags may be edited, and every status change goes
through recordings.services (actions below) so that it is audited. Never deletes a row.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from orstream.adminkit import ReadOnlyAdmin

from . import services
from .models import ArchiveChunk, ArchiveCopy, ExportJob, Recording, RetentionPolicy, Segment, Viewing

READ_ONLY = [
    "public_id", "session", "status", "started_by", "started_at", "ended_at", "expected_segments", "retain_until",
    "duration", "video_codec", "audio_codec", "width", "height", "fps", "size", "storage_key", "thumbnail",
    "contact_sheet", "archived_at", "verified_at", "restricted_at", "erase_started_at", "erased_at", "error",
    "legal_hold", "legal_hold_reason",
]

# A tuple: ModelAdmin types `fields` and `readonly_fields` as different (invariant) lists, a tuple fits both.
SEGMENT_FIELDS = ("index", "path", "size", "sha256", "duration", "video_frames", "audio_frames", "verified_at", "archived_key")


class SegmentInline(admin.TabularInline):
    model = Segment
    extra = 0
    can_delete = False
    fields = SEGMENT_FIELDS
    readonly_fields = SEGMENT_FIELDS

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Recording)
class RecordingAdmin(admin.ModelAdmin):
    list_display = ["public_id", "session", "status", "started_at", "duration", "retain_until", "legal_hold"]
    list_filter = ["status", "legal_hold", "retention_purpose"]
    search_fields = ["public_id", "session__public_id"]
    readonly_fields = READ_ONLY
    inlines = [SegmentInline]
    actions = ["hold", "release", "erase"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Put under legal hold")
    def hold(self, request: HttpRequest, queryset: QuerySet[Recording]) -> None:
        for recording in queryset:
            services.recording_legal_hold(recording=recording, hold=True, reason=f"held from the admin by {request.user}", by=request.user)

    @admin.action(description="Release legal hold")
    def release(self, request: HttpRequest, queryset: QuerySet[Recording]) -> None:
        for recording in queryset:
            services.recording_legal_hold(recording=recording, hold=False, reason="", by=request.user)

    @admin.action(description="Erase (files deleted, rows kept)")
    def erase(self, request: HttpRequest, queryset: QuerySet[Recording]) -> None:
        for recording in queryset:
            try:
                services.erase_request(recording=recording, by=request.user, reason="erased from the admin")
            except services.RecordingError as refusal:
                self.message_user(request, f"{recording.public_id}: {refusal}", messages.ERROR)


@admin.register(ExportJob)
class ExportJobAdmin(admin.ModelAdmin):
    list_display = ["public_id", "recording", "kind", "destination", "status", "progress", "sha256_verified", "created_at"]
    list_filter = ["status", "kind"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in ExportJob._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin):
    list_display = ["purpose", "days", "note"]


@admin.register(Viewing)
class ViewingAdmin(ReadOnlyAdmin):
    """Who watched what, and when: read-only (each viewing's audit event is the record)."""

    list_display = ("recording", "user", "started_at", "last_at")
    readonly_fields = ("recording", "user", "browser", "started_at", "last_at")


class ArchiveChunkInline(admin.TabularInline):
    model = ArchiveChunk
    extra = 0
    can_delete = False
    fields = ("index", "status", "frames", "duration", "runs", "tries", "crf", "vmaf_mean", "vmaf_min", "psnr", "ssim", "size")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ArchiveCopy)
class ArchiveCopyAdmin(admin.ModelAdmin):
    """Archive copies with their settings, scores and the gate's decision: read-only (recordings.services.archive writes them)."""

    list_display = ("recording", "codec", "status", "vmaf_mean", "vmaf_min_chunk", "size", "original_size", "originals_removed_at")
    list_filter = ("status", "codec")
    inlines = [ArchiveChunkInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in ArchiveCopy._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

"""Admin for training: a centre adds its own instruments (or a new version of a published one)
with their items and anchors, and keeps its programmes and their members."""

from __future__ import annotations

from django.contrib import admin

from .models import Collection, CollectionEntry, Instrument, InstrumentItem, Programme, ProgrammeMember


def _in_use(instrument: Instrument | None) -> bool:
    """An instrument version someone has been scored with: its items are what those scores mean."""
    return instrument is not None and instrument.pk is not None and instrument.assessments.exists()


class InstrumentItemInline(admin.TabularInline):
    model = InstrumentItem
    extra = 1
    fields = ["order", "key", "name", "description", "min_score", "max_score", "anchors"]

    # A version in use keeps its items as they were scored (a change of range or wording would
    # change what the existing scores mean): a change is a new version.
    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        return self.fields if _in_use(obj) else []

    def get_extra(self, request, obj=None, **kwargs):  # type: ignore[no-untyped-def]
        return 0 if _in_use(obj) else self.extra

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return not _in_use(obj) and super().has_add_permission(request, obj)

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return not _in_use(obj) and super().has_delete_permission(request, obj)


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = ["short_name", "name", "version", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["name", "short_name", "slug"]
    inlines = [InstrumentItemInline]

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        # A version already used for scores is frozen: a change is a new version.
        if _in_use(obj):
            return ["slug", "version", "name", "short_name"]
        return []


class ProgrammeMemberInline(admin.TabularInline):
    model = ProgrammeMember
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Programme)
class ProgrammeAdmin(admin.ModelAdmin):
    list_display = ["name", "specialty", "blind_assessment"]
    inlines = [ProgrammeMemberInline]


class CollectionEntryInline(admin.TabularInline):
    model = CollectionEntry
    extra = 0
    fields = ["recording", "start", "end", "note", "order"]
    raw_id_fields = ["recording"]


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    list_display = ["title", "specialty", "procedure"]
    inlines = [CollectionEntryInline]

"""Admin for training: a centre adds its own instruments (or a new version of a published one)
with their items and anchors, and keeps its programmes and their members."""

from __future__ import annotations

from django.contrib import admin

from .models import Collection, CollectionEntry, Instrument, InstrumentItem, Programme, ProgrammeMember


class InstrumentItemInline(admin.TabularInline):
    model = InstrumentItem
    extra = 1
    fields = ["order", "key", "name", "description", "min_score", "max_score", "anchors"]


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = ["short_name", "name", "version", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["name", "short_name", "slug"]
    inlines = [InstrumentItemInline]

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        # A version already used for scores is frozen: a change is a new version.
        if obj is not None and obj.assessments.exists():
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

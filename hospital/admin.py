"""The hospital's servers in the admin, each with a "Test connection" action (C-ECHO, a DICOMweb
study search, or FHIR /metadata and a token) whose result reads as a message on the list."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from . import services
from .models import (
    DicomExport,
    FhirLink,
    FhirServer,
    MppsReceiver,
    PacsDestination,
    Procedure,
    RoomModality,
    WorklistProvider,
)


@admin.action(description="Test connection")
def test_connection(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> None:
    for node in queryset:
        result = services.connection_test(node=node, by=request.user)
        modeladmin.message_user(request, ("Connected: " if result.ok else "Failed: ") + result.message,
                                messages.SUCCESS if result.ok else messages.ERROR)


@admin.register(PacsDestination)
class PacsDestinationAdmin(admin.ModelAdmin):
    list_display = ["name", "method", "ae_title", "host", "port", "dicomweb_url", "is_active"]
    actions = [test_connection]


@admin.register(WorklistProvider)
class WorklistProviderAdmin(admin.ModelAdmin):
    list_display = ["name", "ae_title", "host", "port", "calling_ae_title", "is_active"]
    actions = [test_connection]


@admin.register(MppsReceiver)
class MppsReceiverAdmin(admin.ModelAdmin):
    list_display = ["name", "ae_title", "host", "port", "calling_ae_title", "is_active"]
    actions = [test_connection]


@admin.register(FhirServer)
class FhirServerAdmin(admin.ModelAdmin):
    list_display = ["name", "base_url", "token_url", "client_id", "is_active"]
    actions = [test_connection]


@admin.register(RoomModality)
class RoomModalityAdmin(admin.ModelAdmin):
    list_display = ["room", "kind", "station_ae_title", "station_name"]


@admin.register(Procedure)
class ProcedureAdmin(admin.ModelAdmin):
    # The sealed patient identifiers are never shown, not even to the admin.
    list_display = ["session", "accession_number", "requested_procedure_description", "mpps_status"]
    exclude = ["patient_sealed"]
    readonly_fields = ["session", "study_instance_uid", "mpps_instance_uid", "mpps_status", "mpps_error", "picked_at"]


@admin.register(DicomExport)
class DicomExportAdmin(admin.ModelAdmin):
    list_display = ["public_id", "recording", "destination", "status", "progress", "attempts", "created_at"]
    list_filter = ["status", "destination"]
    readonly_fields = [f.name for f in DicomExport._meta.fields]


@admin.register(FhirLink)
class FhirLinkAdmin(admin.ModelAdmin):
    list_display = ["recording", "server", "document_reference_id", "procedure_id", "status", "sent_at"]
    readonly_fields = [f.name for f in FhirLink._meta.fields]

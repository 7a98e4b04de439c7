"""Celery tasks of the hospital app: the procedure step report, the DICOM export, the EHR link
and its reconciliation sweep.

Enqueued by hospital.services after commit. Each takes ids, loads the row, calls the service of
the same name and owns retries with backoff: a PACS, RIS or EHR that refuses or does not answer
is tried again (the service keeps the reason on the row for the pages); the last attempt's
failure stays on the row and in the audit trail.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import DatabaseError

import orstream.celery  # noqa: F401  (the Celery app, configured from Django settings)

from . import services
from .models import DicomExport, Procedure

MAX_RETRIES = 5


def _backoff(task: Any) -> int:
    return int(min(600, 15 * 2**task.request.retries))


@shared_task(name="hospital.tasks.procedure_step_report", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def procedure_step_report(self: Any, procedure_id: int, change: str) -> str:
    procedure = Procedure.objects.select_related("session__room").get(pk=procedure_id)
    try:
        services.procedure_step_report(procedure=procedure, change=change)
    except (services.HospitalError, DatabaseError) as failure:
        if self.request.retries < MAX_RETRIES and not self.request.is_eager:
            raise self.retry(countdown=_backoff(self)) from failure
        return "failed"
    return procedure.mpps_status


@shared_task(name="hospital.tasks.dicom_export_run", bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES)
def dicom_export_run(self: Any, export_id: int) -> str:
    export = DicomExport.objects.select_related("recording__session__room", "destination").get(pk=export_id)
    last = self.request.retries >= MAX_RETRIES or bool(self.request.is_eager)
    try:
        export = services.dicom_export_run(export=export, attempt_is_last=last)
    except (services.HospitalError, DatabaseError, OSError) as failure:
        raise self.retry(countdown=_backoff(self)) from failure
    return export.status


@shared_task(name="hospital.tasks.ehr_link_send", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def ehr_link_send(self: Any, export_id: int) -> str:
    export = DicomExport.objects.select_related("recording__session", "destination").get(pk=export_id)
    try:
        link = services.ehr_link_send(export=export)
    except (services.HospitalError, DatabaseError) as failure:
        if self.request.retries < MAX_RETRIES and not self.request.is_eager:
            raise self.retry(countdown=_backoff(self)) from failure
        return "failed"
    return link.document_reference_id


@shared_task(name="hospital.tasks.ehr_links_reconcile", bind=True, acks_late=True)
def ehr_links_reconcile(self: Any) -> list[str]:
    return [link.document_reference_id for link in services.ehr_links_reconcile()]

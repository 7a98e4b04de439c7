"""Rows of the hospital app: where the hospital's PACS, worklist, procedure-step receiver and FHIR
server are, what each room is, and what was taken from and sent to them.

Patient identifiers (the hospital's patient ID, name, birth date, sex) are held only in
``Procedure.patient_sealed``: Fernet-encrypted JSON, opened by hospital.services when a DICOM
instance or a FHIR resource needs them. No other field, path or audit detail carries them.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class DicomNode(models.Model):
    """A remote DICOM application entity: its AE title, host and port, and the AE title we call as."""

    name = models.CharField(max_length=100, unique=True)
    ae_title = models.CharField(max_length=16, help_text="The remote AE title (called AE).")
    host = models.CharField(max_length=200, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    calling_ae_title = models.CharField(max_length=16, default="ORSTREAM", help_text="Our AE title (calling AE).")
    is_active = models.BooleanField(default=True)

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.ae_title}@{self.host}:{self.port})"


class PacsDestination(DicomNode):
    class Method(models.TextChoices):
        CSTORE = "cstore", "DICOM C-STORE"
        STOW = "stow", "DICOMweb STOW-RS"

    method = models.CharField(max_length=8, choices=Method.choices, default=Method.CSTORE)
    dicomweb_url = models.URLField(
        blank=True, help_text="DICOMweb base URL (STOW-RS to store, WADO-RS to read back), e.g. https://pacs/dicom-web"
    )

    class Meta(DicomNode.Meta):
        abstract = False


class WorklistProvider(DicomNode):
    class Meta(DicomNode.Meta):
        abstract = False


class MppsReceiver(DicomNode):
    class Meta(DicomNode.Meta):
        abstract = False
        verbose_name = "MPPS receiver"


class FhirServer(models.Model):
    """The EHR's FHIR R5 endpoint and this site's SMART backend-services client there. The private
    key that signs the client's assertion comes from the environment (ORSTREAM_FHIR_PRIVATE_KEY)."""

    name = models.CharField(max_length=100, unique=True)
    base_url = models.URLField(help_text="FHIR base URL, e.g. https://ehr/fhir")
    token_url = models.URLField(blank=True, help_text="SMART token endpoint; empty when the server needs no token.")
    client_id = models.CharField(max_length=200, blank=True)
    key_id = models.CharField(max_length=100, blank=True, help_text="kid of the public key registered with the EHR.")
    scope = models.CharField(max_length=300, default="system/DocumentReference.cruds system/Procedure.cruds")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "FHIR server"

    def __str__(self) -> str:
        return f"{self.name} ({self.base_url})"


class RoomModality(models.Model):
    """What kind of video a room makes, and the AE title the hospital's worklist schedules it as."""

    class Kind(models.TextChoices):
        MICROSCOPE = "microscope", "Surgical microscope"
        EXOSCOPE = "exoscope", "Exoscope"
        ENDOSCOPE = "endoscope", "Endoscope"

    room = models.OneToOneField("mentoring.OperatingRoom", on_delete=models.CASCADE, related_name="modality")
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.MICROSCOPE)
    station_ae_title = models.CharField(max_length=16, help_text="Scheduled Station AE Title in the worklist.")
    station_name = models.CharField(max_length=16, blank=True)

    class Meta:
        verbose_name_plural = "room modalities"

    def __str__(self) -> str:
        return f"{self.room} as {self.station_ae_title} ({self.kind})"

    @property
    def modality(self) -> str:
        return "ES" if self.kind == self.Kind.ENDOSCOPE else "GM"


class Procedure(models.Model):
    """The hospital's scheduled procedure a session performs, as picked from the worklist."""

    class StepStatus(models.TextChoices):
        SCHEDULED = "", "Not started"
        IN_PROGRESS = "IN PROGRESS", "In progress"
        COMPLETED = "COMPLETED", "Completed"
        DISCONTINUED = "DISCONTINUED", "Discontinued"

    session = models.OneToOneField("mentoring.Session", on_delete=models.CASCADE, related_name="hospital_procedure")
    accession_number = models.CharField(max_length=16, blank=True)
    requested_procedure_id = models.CharField(max_length=16, blank=True)
    requested_procedure_description = models.CharField(max_length=64, blank=True)
    scheduled_step_id = models.CharField(max_length=16, blank=True)
    scheduled_step_description = models.CharField(max_length=64, blank=True)
    study_instance_uid = models.CharField(max_length=64)
    # Patient ID, name, birth date and sex as the worklist gave them: Fernet-encrypted JSON.
    patient_sealed = models.TextField(blank=True)
    mpps_instance_uid = models.CharField(max_length=64, blank=True)
    mpps_status = models.CharField(max_length=12, choices=StepStatus.choices, default="", blank=True)
    mpps_error = models.TextField(blank=True)
    picked_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"procedure {self.accession_number or self.requested_procedure_id} of session {self.session_id}"


class DicomExport(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        ENCODING = "encoding", "Preparing video"
        SENDING = "sending", "Sending"
        VERIFYING = "verifying", "Reading back"
        DONE = "done", "Stored in the PACS"
        FAILED = "failed", "Failed"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    recording = models.ForeignKey("recordings.Recording", on_delete=models.PROTECT, related_name="dicom_exports")
    destination = models.ForeignKey(PacsDestination, on_delete=models.PROTECT, related_name="exports")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    # A clip of a time range (seconds from the recording's start), or the whole recording.
    clip_start = models.FloatField(null=True, blank=True)
    clip_end = models.FloatField(null=True, blank=True)
    series_instance_uid = models.CharField(max_length=64, blank=True)
    transfer_syntax = models.CharField(max_length=64, blank=True)
    # One entry per instance: SOP Instance UID, video bytes, SHA-256, frames; filled as they are stored.
    instances = models.JSONField(default=list, blank=True)
    requested_by = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="Why the PACS did not take it, in words the records office can act on.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"DICOM export {self.public_id} ({self.status}, {self.progress}%)"


class FhirLink(models.Model):
    """What was sent to the EHR about one recording: a DocumentReference and the Procedure."""

    recording = models.OneToOneField("recordings.Recording", on_delete=models.PROTECT, related_name="fhir_link")
    server = models.ForeignKey(FhirServer, on_delete=models.PROTECT, related_name="+")
    document_reference_id = models.CharField(max_length=64, blank=True)
    procedure_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=20, default="current")
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"FHIR link of recording {self.recording_id} ({self.status})"

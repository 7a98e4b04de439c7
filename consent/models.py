"""Rows of the consent app: consent forms, per-procedure consent records, the audit trail.

Nothing here names a patient: a consent record carries the session's pseudonymous reference.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Purpose(models.TextChoices):
    RECORD = "record", "Record the procedure"
    LIVE_INTERNAL = "live_internal", "Live viewing inside the hospital (conference room, training)"
    LIVE_EXTERNAL = "live_external", "Live telementoring with other centres"
    ARCHIVE_TRAINING = "archive_training", "Keep the recording for training"
    RESEARCH = "research", "Use the recording for research"


class ConsentForm(models.Model):
    """A versioned consent text and the purposes it asks about."""

    title = models.CharField(max_length=200)
    version = models.CharField(max_length=20)
    text = models.TextField()
    purposes = models.JSONField(default=list, help_text="Purpose codes this form asks about.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["title", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["title", "version"], name="consent_form_version_unique")]

    def __str__(self) -> str:
        return f"{self.title} v{self.version}"


class ConsentRecord(models.Model):
    """The patient's decisions for one procedure (session), under one form version."""

    session = models.ForeignKey("mentoring.Session", on_delete=models.PROTECT, related_name="consents")
    form = models.ForeignKey(ConsentForm, on_delete=models.PROTECT, related_name="records")
    patient_ref = models.CharField(max_length=64, help_text="Pseudonymous identifier, never a name.")
    obtained_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    obtained_at = models.DateTimeField(default=timezone.now)
    attestation = models.TextField(help_text="Who attests, how consent was given (signed form, witness...).")
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    withdrawal_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-obtained_at"]
        constraints = [
            # consent_in_force reads one record: the database, not luck, keeps it to one.
            models.UniqueConstraint(
                fields=["session"], condition=models.Q(withdrawn_at__isnull=True), name="consent_one_in_force_per_session"
            ),
        ]

    def __str__(self) -> str:
        state = "withdrawn" if self.withdrawn_at else "in force"
        return f"consent {self.pk} for session {self.session_id} ({state})"


class ConsentDecision(models.Model):
    record = models.ForeignKey(ConsentRecord, on_delete=models.CASCADE, related_name="decisions")
    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    granted = models.BooleanField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["record", "purpose"], name="consent_decision_once")]

    def __str__(self) -> str:
        return f"{self.purpose}: {'granted' if self.granted else 'refused'}"


class AuditEvent(models.Model):
    """One security-relevant act. Append-only; each event's hash covers the previous one's."""

    at = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=40)
    outcome = models.CharField(max_length=10, choices=[("allowed", "allowed"), ("refused", "refused")])
    actor = models.CharField(max_length=120, help_text="user:<id>, participant:<uuid>, edge, system")
    session_public_id = models.CharField(max_length=36, blank=True)
    target = models.CharField(max_length=120, blank=True)
    detail = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action} {self.outcome} by {self.actor}"

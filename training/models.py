"""Rows of the training app: programmes and their people, who operated in a recorded session,
assessment instruments (versioned data), assessments with their scores and time-stamped comments,
and the model-procedure library.

Times on a recording (``start``, ``end``, ``media_time``) are seconds from the recording's start,
across its parts, as the library's player and the bookmarks count them. Rules that touch several
rows or other apps (consent, blinding, who may assess) live in training.services.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class Programme(models.Model):
    """A training programme (a residency in one specialty at one centre)."""

    name = models.CharField(max_length=200, unique=True)
    specialty = models.CharField(max_length=100)
    # Blind by default: a rater sees the others' scores of a recording only once they submitted their own.
    blind_assessment = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ProgrammeMember(models.Model):
    class Role(models.TextChoices):
        DIRECTOR = "director", "Programme director"
        FACULTY = "faculty", "Faculty"
        RESIDENT = "resident", "Resident"

    programme = models.ForeignKey(Programme, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="programme_memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    year = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Residents: postgraduate year.")

    class Meta:
        ordering = ["programme", "role", "user__username"]
        constraints = [models.UniqueConstraint(fields=["programme", "user", "role"], name="programme_member_once")]

    def __str__(self) -> str:
        return f"{self.user} ({self.get_role_display()}, {self.programme})"


class Performance(models.Model):
    """A resident who operated in a session, for a programme: the parts they performed are
    ``parts`` (time ranges on the session's recordings)."""

    session = models.ForeignKey("mentoring.Session", on_delete=models.PROTECT, related_name="performances")
    programme = models.ForeignKey(Programme, on_delete=models.PROTECT, related_name="performances")
    resident = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="performances")
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["session", "resident"], name="performance_once_per_resident")]

    def __str__(self) -> str:
        return f"{self.resident} operated in session {self.session_id}"


class PerformedPart(models.Model):
    performance = models.ForeignKey(Performance, on_delete=models.CASCADE, related_name="parts")
    recording = models.ForeignKey("recordings.Recording", on_delete=models.CASCADE, related_name="performed_parts")
    start = models.FloatField()
    end = models.FloatField()
    label = models.CharField(max_length=120, blank=True, help_text="The step performed, e.g. \"closure\".")

    class Meta:
        ordering = ["recording", "start"]
        constraints = [
            models.CheckConstraint(condition=models.Q(start__gte=0) & models.Q(end__gt=models.F("start")), name="performed_part_range"),
        ]

    def __str__(self) -> str:
        return f"{self.label or 'part'} {self.start:.0f}-{self.end:.0f} s"


class Instrument(models.Model):
    """An assessment instrument, one version of it: a published scale or a centre's own."""

    slug = models.SlugField(max_length=40)
    version = models.CharField(max_length=20)
    name = models.CharField(max_length=200)
    short_name = models.CharField(max_length=20)
    description = models.TextField(blank=True)
    source = models.TextField(help_text="Where the items come from (citation), and how faithfully they are encoded.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["short_name", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["slug", "version"], name="instrument_version_unique")]

    def __str__(self) -> str:
        return f"{self.short_name} v{self.version}"


class InstrumentItem(models.Model):
    """One item (domain) of an instrument, scored on ``min_score``..``max_score`` (1..5 for most
    scales, 0..2 for MARS10); ``anchors`` maps a score (as text, "1", "3", "5") to the behaviour
    that earns it."""

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="items")
    order = models.PositiveSmallIntegerField()
    key = models.SlugField(max_length=40)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    min_score = models.PositiveSmallIntegerField(default=1)
    max_score = models.PositiveSmallIntegerField(default=5)
    anchors = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["instrument", "order"]
        constraints = [
            models.UniqueConstraint(fields=["instrument", "key"], name="instrument_item_key_once"),
            models.CheckConstraint(condition=models.Q(max_score__gt=models.F("min_score")), name="instrument_item_range"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.min_score}-{self.max_score})"

    @property
    def scores(self) -> range:
        """Every score the item allows, lowest first."""
        return range(self.min_score, self.max_score + 1)

    @property
    def anchor_list(self) -> list[tuple[str, str]]:
        """The anchors in score order (by number: "10" after "9")."""
        return sorted(self.anchors.items(), key=lambda pair: (int(pair[0]) if pair[0].lstrip("-").isdigit() else 0, pair[0]))


class Assessment(models.Model):
    """One rater's scoring of one resident's recording (or a part of it) with one instrument.

    Created when a director assigns the rater (or a faculty member starts one); scores and comments
    are the rater's own until ``submitted_at``, after which they are final."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    programme = models.ForeignKey(Programme, on_delete=models.PROTECT, related_name="assessments")
    recording = models.ForeignKey("recordings.Recording", on_delete=models.PROTECT, related_name="assessments")
    resident = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="assessments_received")
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="assessments_given")
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="assessments")
    part_start = models.FloatField(null=True, blank=True)
    part_end = models.FloatField(null=True, blank=True)
    assigned_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    submitted_at = models.DateTimeField(null=True, blank=True)
    summary = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["recording", "instrument", "resident", "rater"], name="assessment_once_per_rater"),
        ]

    def __str__(self) -> str:
        state = "submitted" if self.submitted_at else "open"
        return f"{self.instrument} of {self.resident} by {self.rater} ({state})"

    @property
    def is_submitted(self) -> bool:
        return self.submitted_at is not None


class ItemScore(models.Model):
    assessment = models.ForeignKey(Assessment, on_delete=models.CASCADE, related_name="scores")
    item = models.ForeignKey(InstrumentItem, on_delete=models.PROTECT, related_name="+")
    score = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["assessment", "item__order"]
        constraints = [models.UniqueConstraint(fields=["assessment", "item"], name="item_score_once")]

    def __str__(self) -> str:
        return f"{self.item.name}: {self.score}"


class AssessmentComment(models.Model):
    """A rater's comment at a moment of the recording, on one item or on the whole performance.

    The moment is a private bookmark of the recording (``bookmark``): the library's player lists
    it with the other marks and jumps to it the same way, for the rater, and for the others only
    once the blinding rule lets them read the assessment (training.services.comment_bookmarks_revealed)."""

    assessment = models.ForeignKey(Assessment, on_delete=models.CASCADE, related_name="comments")
    item = models.ForeignKey(InstrumentItem, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    bookmark = models.OneToOneField("recordings.Bookmark", on_delete=models.PROTECT, related_name="assessment_comment")
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["assessment", "bookmark__media_time", "pk"]

    def __str__(self) -> str:
        return f"comment at {self.media_time:.1f} s"

    @property
    def media_time(self) -> float:
        """Seconds from the recording's start: its bookmark's moment."""
        return self.bookmark.media_time


class Collection(models.Model):
    """A curated set of model procedures, by specialty and procedure."""

    title = models.CharField(max_length=200)
    specialty = models.CharField(max_length=100)
    procedure = models.CharField(max_length=200, help_text="Matched against scheduled sessions' procedure for \"watch before\".")
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["specialty", "procedure", "title"]

    def __str__(self) -> str:
        return f"{self.title} ({self.specialty}: {self.procedure})"


class CollectionEntry(models.Model):
    """A recording, or a range of it (from a chapter to the next), with a short teaching note."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="entries")
    recording = models.ForeignKey("recordings.Recording", on_delete=models.CASCADE, related_name="collection_entries")
    start = models.FloatField(default=0)
    end = models.FloatField(null=True, blank=True)
    chapter = models.ForeignKey("recordings.Bookmark", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    note = models.TextField()
    order = models.PositiveIntegerField(default=0)
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["collection", "order", "pk"]
        verbose_name_plural = "collection entries"
        constraints = [models.CheckConstraint(condition=models.Q(start__gte=0), name="collection_entry_start")]

    def __str__(self) -> str:
        return f"entry {self.pk} of {self.collection}"

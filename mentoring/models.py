"""Rows of the mentoring app: operating rooms, sessions, participants and their join tokens.

Invariants that need several rows (a room is not double-booked) live in mentoring.services.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from orstream.edge.protocol import FEED_URL_MAX, feed_url_problem


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def validate_feed_url(value: str) -> None:
    """A room's feed URL the edge can ingest (the edge checks the same rule, then opens it)."""
    problem = feed_url_problem(value) if value else None
    if problem is not None:
        raise ValidationError(_sentence(problem), code="feed_url")


def room_feed_problems(*, ingest_url: str, lower_ingest_url: str) -> dict[str, str]:
    """What is wrong with a room's pair of feeds, by field (empty when nothing is)."""
    problems: dict[str, str] = {}
    for name, url in (("ingest_url", ingest_url), ("lower_ingest_url", lower_ingest_url)):
        problem = feed_url_problem(url) if url else None
        if problem is not None:
            problems[name] = _sentence(problem)
    if lower_ingest_url and not ingest_url:
        problems["lower_ingest_url"] = "A lower feed needs the room's own feed (ingest_url) beside it."
    elif lower_ingest_url and lower_ingest_url == ingest_url:
        problems["lower_ingest_url"] = "The lower feed must be the encoder's second, smaller stream, not the room's feed itself."
    return problems


class OperatingRoom(models.Model):
    name = models.CharField(max_length=100, unique=True)
    location = models.CharField(max_length=200, blank=True)
    # An OR cart or hospital may have its own edge; empty means the site's default edge.
    edge_url = models.URLField(blank=True)
    # The room's own video feed, when the edge ingests it directly (rtsp://, srt://, udp://, a file
    # path for the demo); empty when the OR console publishes from a browser.
    ingest_url = models.CharField(max_length=FEED_URL_MAX, blank=True, validators=[validate_feed_url])
    # The same encoder's second, lower stream: viewers on weak links get it instead of a transcode.
    lower_ingest_url = models.CharField(
        "lower feed URL",
        max_length=FEED_URL_MAX,
        blank=True,
        validators=[validate_feed_url],
        help_text=(
            "The room encoder's second, lower stream (for example 1280x720 at about 2.5 Mbit/s, "
            "rtsp://encoder/stream2), smaller than the room's feed. Viewers whose link cannot take "
            "the room's feed get this stream instead of one the media server transcodes, which costs "
            "most of a processor core. Leave empty when the encoder sends one stream. Its keyframes "
            "should come at most 3 seconds apart: a viewer moves onto it at its next one."
        ),
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        problems = room_feed_problems(ingest_url=self.ingest_url, lower_ingest_url=self.lower_ingest_url)
        if problems:
            raise ValidationError(problems)


class Session(models.Model):
    class Status(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        LIVE = "live", "Live"
        ENDED = "ended", "Ended"
        CANCELLED = "cancelled", "Cancelled"

    # The public identifier: in URLs, WebSocket paths, calendar UIDs and at the edge.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    procedure = models.CharField(max_length=200, help_text="The procedure, never the patient's name.")
    room = models.ForeignKey(OperatingRoom, on_delete=models.PROTECT, related_name="sessions")
    surgeon = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    planned_start = models.DateTimeField()
    planned_end = models.DateTimeField()
    time_zone = models.CharField(max_length=64, default="UTC")
    # A pseudonymous reference to the patient (e.g. a case number); never a name.
    patient_ref = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # iCalendar SEQUENCE: bumped on every change sent to invitees.
    sequence = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["planned_start"]
        constraints = [
            models.CheckConstraint(condition=models.Q(planned_end__gt=models.F("planned_start")), name="session_end_after_start"),
        ]
        indexes = [models.Index(fields=["room", "planned_start"])]

    def __str__(self) -> str:
        return f"{self.procedure} in {self.room.name} at {self.planned_start:%Y-%m-%d %H:%M} UTC"

    @property
    def is_open(self) -> bool:
        return self.status in (self.Status.SCHEDULED, self.Status.LIVE)

    @property
    def calendar_uid(self) -> str:
        return f"{self.public_id}@orstream"


class Role(models.TextChoices):
    SURGEON = "surgeon", "Surgeon / OR console"
    MENTOR = "mentor", "Mentor"
    SPECIALIST = "specialist", "Specialist (ad-hoc consultation)"
    RESIDENT = "resident", "Resident"
    OBSERVER = "observer", "Observer"
    DISPLAY = "display", "Conference-room display"
    COORDINATOR = "coordinator", "Coordinator"


class Participant(models.Model):
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="participants")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    role = models.CharField(max_length=16, choices=Role.choices)
    display_name = models.CharField(max_length=120)
    email = models.EmailField(blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="participations"
    )
    # From another centre: watching needs the live_external consent purpose.
    is_external = models.BooleanField(default=False)
    invited_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # The last glass-to-glass latency the participant's page reported.
    last_latency_ms = models.FloatField(null=True, blank=True)
    latency_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["session", "role", "display_name"]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.get_role_display()})"


class JoinToken(models.Model):
    """A join link's token. Only the SHA-256 of the token is stored."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    one_time = models.BooleanField(default=False)
    used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"token for {self.participant} until {self.expires_at:%Y-%m-%d %H:%M}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now() and not (self.one_time and self.used_at)


class PresenceEvent(models.Model):
    """Who joined or left a live session, kept for the coordinator's view and the record."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="presence")
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=[("joined", "joined"), ("left", "left")])
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at"]


class Connection(models.Model):
    """One open WebSocket of a participant, kept fresh by its server process's heartbeat.

    Presence is the set of open connections seen recently: a server process that dies, or a
    consumer the ASGI server kills, stops refreshing its rows, and they are closed (with a "left")
    a few seconds later by whichever process sweeps first (mentoring.services.connection_sweep).
    """

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="connections")
    token = models.ForeignKey(JoinToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    channel_name = models.CharField(max_length=200, unique=True)
    opened_at = models.DateTimeField(default=timezone.now)
    seen_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["opened_at"]
        indexes = [models.Index(fields=["closed_at", "seen_at"])]

    def __str__(self) -> str:
        return f"connection of {self.participant} since {self.opened_at:%H:%M:%S}"


class Annotation(models.Model):
    """A telestration stroke or a chat line, stored with the media time it refers to."""

    class Kind(models.TextChoices):
        STROKE = "stroke", "Stroke"
        CLEAR = "clear", "Clear"
        CHAT = "chat", "Chat"

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="annotations")
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    # Media timestamp (seconds on the edge's clock) the annotation refers to.
    media_time = models.FloatField(null=True, blank=True)
    payload = models.JSONField(default=dict)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at"]


class EdgeEventReceipt(models.Model):
    """A webhook from an edge that was handled, by its event id: a repeat (a retry after a lost
    reply, a replay) is dropped. Old receipts can be pruned; a repeat arrives within minutes."""

    event_id = models.CharField(max_length=64, unique=True)
    type = models.CharField(max_length=40)
    session_public_id = models.CharField(max_length=64)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["received_at"])]

    def __str__(self) -> str:
        return f"edge event {self.type} {self.event_id}"

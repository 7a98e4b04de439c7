"""Rows of the recordings app: recordings, their segments, export jobs and retention policies.

A recording is what the edge wrote for one session between a start and a stop: a series of
fragmented-MP4 segments on the spool, verified and archived by the Celery pipeline. Paths are
relative and pseudonymous (the recording's public id and a segment number): never patient data.
Rules that touch several rows or other apps live in recordings.services.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class RetentionPurpose(models.TextChoices):
    CLINICAL = "clinical", "Clinical record"
    TRAINING = "training", "Training only"
    RESEARCH = "research", "Research"


class Recording(models.Model):
    class Status(models.TextChoices):
        RECORDING = "recording", "Recording"
        FINALIZING = "finalizing", "Finalizing"
        AVAILABLE = "available", "Available"
        # Consent withdrawn: kept (it may be under legal hold) but nobody may view or export it.
        RESTRICTED = "restricted", "Restricted (consent withdrawn)"
        FAILED = "failed", "Failed verification"
        ERASING = "erasing", "Erasing"
        ERASED = "erased", "Erased"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    session = models.ForeignKey("mentoring.Session", on_delete=models.PROTECT, related_name="recordings")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECORDING)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    # Set when the edge says how many segments it closed; finalize waits until all are registered.
    expected_segments = models.PositiveIntegerField(null=True, blank=True)

    retention_purpose = models.CharField(
        max_length=16, choices=RetentionPurpose.choices, default=RetentionPurpose.CLINICAL
    )
    retain_until = models.DateField(null=True, blank=True)
    legal_hold = models.BooleanField(default=False)
    legal_hold_reason = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)

    duration = models.FloatField(null=True, blank=True, help_text="Seconds, from the decoded segments.")
    video_codec = models.CharField(max_length=32, blank=True)
    audio_codec = models.CharField(max_length=32, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    fps = models.FloatField(null=True, blank=True)
    size = models.PositiveBigIntegerField(default=0)

    # Keys in Django's default storage (FileSystemStorage under MEDIA_ROOT, or S3).
    storage_key = models.CharField(max_length=200, blank=True, help_text="Prefix of the archived segments.")
    thumbnail = models.CharField(max_length=200, blank=True)
    contact_sheet = models.CharField(max_length=200, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)

    restricted_at = models.DateTimeField(null=True, blank=True)
    erase_started_at = models.DateTimeField(null=True, blank=True)
    erased_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="Why finalizing failed, in words the records office can act on.")

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            # One live recording per session: the edge records one stream-copy at a time.
            models.UniqueConstraint(
                fields=["session"], condition=models.Q(status="recording"), name="recording_one_live_per_session"
            ),
        ]
        indexes = [models.Index(fields=["status", "retain_until"])]

    def __str__(self) -> str:
        return f"recording {self.public_id} ({self.status})"

    @property
    def prefix(self) -> str:
        """The pseudonymous folder of this recording, on the spool and in storage."""
        return str(self.public_id)


class Segment(models.Model):
    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="segments")
    index = models.PositiveIntegerField()
    # Relative to the spool (as written by the edge) and, once archived, to the storage prefix.
    path = models.CharField(max_length=200)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    duration = models.FloatField()
    video_frames = models.PositiveIntegerField()
    audio_frames = models.PositiveIntegerField()
    video_codec = models.CharField(max_length=32)
    audio_codec = models.CharField(max_length=32, blank=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    fps = models.FloatField()
    registered_at = models.DateTimeField(default=timezone.now)
    verified_at = models.DateTimeField(null=True, blank=True)
    archived_key = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["recording", "index"]
        constraints = [models.UniqueConstraint(fields=["recording", "index"], name="segment_index_once")]

    def __str__(self) -> str:
        return f"segment {self.index} of {self.recording.public_id}"


class ExportJob(models.Model):
    class Kind(models.TextChoices):
        DOWNLOAD = "download", "Download"
        COPY = "copy", "Copy to a destination"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        COPYING = "copying", "Copying"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    recording = models.ForeignKey(Recording, on_delete=models.PROTECT, related_name="exports")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.COPY)
    destination = models.CharField(max_length=500, blank=True, help_text="The folder written to (copy only).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    bytes_total = models.PositiveBigIntegerField(default=0)
    bytes_copied = models.PositiveBigIntegerField(default=0)
    sha256_verified = models.BooleanField(default=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(progress__lte=100), name="export_progress_percent"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} of {self.recording.public_id} ({self.status}, {self.progress}%)"


class RetentionPolicy(models.Model):
    """How long recordings kept for a purpose live. Without a row, the settings' default applies."""

    purpose = models.CharField(max_length=16, choices=RetentionPurpose.choices, unique=True)
    days = models.PositiveIntegerField()
    note = models.CharField(max_length=200, blank=True, help_text="The rule or law this follows.")

    class Meta:
        ordering = ["purpose"]
        verbose_name_plural = "retention policies"

    def __str__(self) -> str:
        return f"{self.get_purpose_display()}: {self.days} days"


class Bookmark(models.Model):
    """A point in a recording someone marked: a bookmark (a moment to come back to) or a chapter
    (where a phase of the procedure starts). ``media_time`` is seconds from the recording's start,
    across its parts, as the library's player counts it."""

    class Kind(models.TextChoices):
        BOOKMARK = "bookmark", "Bookmark"
        CHAPTER = "chapter", "Chapter"

    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="bookmarks")
    media_time = models.FloatField()
    label = models.CharField(max_length=120)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.BOOKMARK)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # A private mark is listed for its author, and for whom an app above reveals it (training: a
    # rater's time-stamped comments, under its blinding rule); see bookmark_reveals.
    private = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["recording", "media_time", "pk"]
        constraints = [models.CheckConstraint(condition=models.Q(media_time__gte=0), name="bookmark_time_not_negative")]

    def __str__(self) -> str:
        return f"{self.kind} {self.label!r} at {self.media_time:.1f} s"


class Viewing(models.Model):
    """One person watching one recording, audited once when it starts (see recording_viewing_touch).

    A viewing is every request of one signed-in user, from one sign-in (one browser), for any part
    of one recording, with no pause longer than ORSTREAM_RECORDING_VIEWING_IDLE_MINUTES between
    them. ``browser`` is a hash of the sign-in's session key (the key itself is a credential).
    """

    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="viewings")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    browser = models.CharField(max_length=64)
    started_at = models.DateTimeField(default=timezone.now)
    last_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["recording", "user", "browser", "last_at"])]

    def __str__(self) -> str:
        return f"viewing of {self.recording.public_id} by user {self.user_id} from {self.started_at:%Y-%m-%d %H:%M}"


class ArchiveCopy(models.Model):
    """A recompressed copy of a recording, at its own resolution and frame rate with its sound,
    made for long-term keeping (AV1, the default) or for the DICOM export of 4K (HEVC).

    The settings it was made with are stored with it (a rerun after a crash uses the same), and so
    are its quality scores against the original, per chunk (ArchiveChunk) and overall, and the
    gate's decision. Files live under the recording's storage prefix, so erasure removes them.
    """

    class Codec(models.TextChoices):
        AV1 = "av1", "AV1"
        HEVC = "hevc", "HEVC"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        ENCODING = "encoding", "Encoding"
        JOINING = "joining", "Joining"
        ACCEPTED = "accepted", "Accepted"
        # Below the quality thresholds after a second try, or a join that did not match: a person decides.
        FLAGGED = "flagged", "Needs a person"
        # No quality setting makes a copy smaller than the original (footage its recorder already
        # compressed hard): the original is the archive, kept as recorded. Done, nothing to fix.
        KEPT = "kept", "Original kept as the archive"

    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="archive_copies")
    codec = models.CharField(max_length=8, choices=Codec.choices, default=Codec.AV1)
    encoder = models.CharField(max_length=32)
    preset = models.CharField(max_length=16)
    crf = models.PositiveSmallIntegerField(help_text="The CRF every chunk is encoded at first (chosen by the search when it ran).")
    search = models.JSONField(
        default=dict, blank=True,
        help_text="The CRF search: its samples, the CRFs tried and their VMAF and size, the prediction for the one chosen.",
    )
    retry_crf = models.PositiveSmallIntegerField(help_text="The quality a chunk below the threshold is encoded again at.")
    chunk_seconds = models.FloatField()
    vmaf_model = models.CharField(max_length=32)
    vmaf_mean_min = models.FloatField()
    vmaf_chunk_min = models.FloatField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    chunks_total = models.PositiveIntegerField(default=0)

    key = models.CharField(max_length=200, blank=True, help_text="Storage key of the joined archive file.")
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    original_size = models.PositiveBigIntegerField(default=0)
    video_frames = models.PositiveIntegerField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True)
    vmaf_mean = models.FloatField(null=True, blank=True)
    vmaf_min_chunk = models.FloatField(null=True, blank=True)
    psnr_mean = models.FloatField(null=True, blank=True)
    ssim_mean = models.FloatField(null=True, blank=True)
    cpu_seconds = models.FloatField(default=0, help_text="Encoding and scoring, every chunk and try.")
    note = models.TextField(blank=True, help_text="Why it was flagged, in words the records office can act on.")

    # The original segments are removed once the keeping period after acceptance is over.
    originals_remove_after = models.DateField(null=True, blank=True)
    originals_removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        constraints = [models.UniqueConstraint(fields=["recording", "codec"], name="archive_copy_one_per_codec")]

    def __str__(self) -> str:
        return f"{self.codec} archive of {self.recording.public_id} ({self.status})"

    @property
    def folder(self) -> str:
        return f"recordings/{self.recording.prefix}/archive/{self.codec}"

    @property
    def size_ratio(self) -> float | None:
        return self.size / self.original_size if self.size and self.original_size else None


class ArchiveChunk(models.Model):
    """One piece of a recording cut at a keyframe, encoded by one Celery task, scored against the
    piece of the original it came from."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting"
        ENCODING = "encoding", "Encoding"
        DONE = "done", "Done"

    archive = models.ForeignKey(ArchiveCopy, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    source_key = models.CharField(max_length=200)
    output_key = models.CharField(max_length=200)
    frames = models.PositiveIntegerField()
    duration = models.FloatField()
    source_size = models.PositiveBigIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    runs = models.PositiveSmallIntegerField(default=0, help_text="Times a worker took this chunk (a crash makes it more than one).")
    tries = models.PositiveSmallIntegerField(default=0, help_text="Encodes of the finished chunk: 2 when it was encoded again at higher quality.")
    worker_pid = models.PositiveIntegerField(null=True, blank=True)
    crf = models.PositiveSmallIntegerField(null=True, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    vmaf_mean = models.FloatField(null=True, blank=True)
    vmaf_min = models.FloatField(null=True, blank=True)
    psnr = models.FloatField(null=True, blank=True)
    ssim = models.FloatField(null=True, blank=True)
    first_vmaf_mean = models.FloatField(null=True, blank=True, help_text="The first try's VMAF, when it was encoded again.")
    cpu_seconds = models.FloatField(default=0)
    encode_seconds = models.FloatField(default=0, help_text="Wall time of the encode that was kept.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["archive", "index"]
        constraints = [models.UniqueConstraint(fields=["archive", "index"], name="archive_chunk_index_once")]

    def __str__(self) -> str:
        return f"chunk {self.index} of {self.archive}"

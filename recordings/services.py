"""Recordings services: start and stop under consent, segment registration, verification,
archiving, export, restriction, erasure and retention.

Called by views (media), the library pages (list, player, marks, export, download, hold,
erasure), the progress consumer, the edge webhook view (segment_register, recording_stopped), tasks
(one per long job, same names), the consent effects registered in RecordingsConfig.ready
(restriction and stop when consent is withdrawn) and the admin. Every view, download, export and erasure is audited through consent.services, refusals
too. Never holds a database transaction across a call to the edge or a long file operation; never
writes a patient identifier into a path, a log line or a progress message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import IO, Any

import av
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from consent import services as consent_services
from consent.effects import ConsentNarrowed
from mentoring import edge
from mentoring.models import Role, Session
from orstream import roles
from orstream.edge import protocol

from .models import Bookmark, ExportJob, Recording, RetentionPolicy, RetentionPurpose, Segment, Viewing

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
# A segment path as the edge writes it: "<recording public id>/<file name>", nothing else.
SEGMENT_PATH = re.compile(r"^(?P<prefix>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/[A-Za-z0-9_.-]{1,80}$")
CONTACT_SHEET_COLUMNS = 4
CONTACT_SHEET_ROWS = 3
CONTACT_SHEET_TILE_WIDTH = 320
THUMBNAIL_WIDTH = 640
# An erasure that has not progressed for this long is taken to be dead and is resumed by retention.
ERASE_STALE_AFTER = timedelta(minutes=15)
# Decoded duration may differ from the edge's by at most this (one frame at 24 fps, plus rounding).
DURATION_TOLERANCE = 0.05

Progress = Callable[[str, int], None]


class RecordingError(Exception):
    """A recording request that cannot be honoured; the message says what to do about it."""


class RecordingNotReady(RecordingError):
    """Segments the edge announced are not registered yet: finalizing is retried later."""


class RecordingAccessDenied(RecordingError):
    """A view, download or export refused to this person (already audited)."""


# ---------------------------------------------------------------- helpers


def _actor(by: Any) -> str:
    if by is None:
        return "system"
    if getattr(by, "is_authenticated", False):
        return f"user:{by.pk}"
    return "anonymous"


def _audit(recording: Recording, action: str, by: Any, *, outcome: str = "allowed", **detail: Any) -> None:
    consent_services.audit_record(
        action=action,
        actor=_actor(by),
        outcome=outcome,
        session_public_id=str(recording.session.public_id),
        target=f"recording:{recording.public_id}",
        detail=detail,
    )


def recording_group(recording: Recording) -> str:
    return f"recording.{recording.public_id}"


def recording_progress_send(*, recording: Recording, stage: str, percent: int) -> None:
    """Push progress to the recording's Channels group (the library page and the coordinator).

    Sent at once, not after a commit: progress is about work outside any transaction.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "recording.progress", "stage": stage, "percent": int(percent)}
    try:
        async_to_sync(layer.group_send)(recording_group(recording), message)
    except Exception:  # Progress is a courtesy: a busy channel layer must not fail the job.
        log.warning("progress for recording %s not sent", recording.public_id, exc_info=True)


def _progress_for(recording: Recording, stage: str) -> Progress:
    last = {"percent": -1}

    def report(stage_now: str, percent: int) -> None:
        if percent != last["percent"]:
            last["percent"] = percent
            recording_progress_send(recording=recording, stage=stage_now or stage, percent=percent)

    return report


def _sha256_file(handle: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _storage_put(key: str, content: File[Any]) -> str:
    """Write ``content`` at exactly ``key`` in storage, replacing what is there: a job that died
    after a write and runs again overwrites its own file instead of leaving a renamed copy."""
    if default_storage.exists(key):
        default_storage.delete(key)
    saved = default_storage.save(key, content)
    if saved != key:
        # A backend that renamed it (a concurrent writer): keep one object, at the fixed key.
        default_storage.delete(saved)
        raise RecordingError(f"Storage kept {key} under another name; retry.")
    return key


def _storage_keys_under(prefix: str) -> list[str]:
    """Every key under ``prefix`` (a folder in storage), recursively."""
    try:
        folders, files = default_storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return []
    keys = [f"{prefix.rstrip('/')}/{name}" for name in files]
    for folder in folders:
        keys += _storage_keys_under(f"{prefix.rstrip('/')}/{folder}")
    return keys


def _spool_path(segment: Segment) -> Path:
    return Path(settings.RECORDINGS_SPOOL_DIR) / segment.path


def _segment_open(segment: Segment) -> IO[bytes]:
    """The segment's bytes: from storage once archived, from the spool before."""
    if segment.archived_key:
        return default_storage.open(segment.archived_key, "rb")
    return _spool_path(segment).open("rb")


def _segment_local_path(segment: Segment) -> str:
    """A path PyAV can open. For storage that is not on this disk (S3), a URL PyAV can stream."""
    if segment.archived_key:
        try:
            return default_storage.path(segment.archived_key)
        except NotImplementedError:
            return default_storage.url(segment.archived_key)
    return str(_spool_path(segment))


# ---------------------------------------------------------------- start, stop, segments


def _edge_record(recording: Recording) -> None:
    """Ask the session's edge to write ``recording`` (into its own folder on the spool)."""
    session = recording.session
    edge.recording_start(
        str(session.public_id),
        protocol.RecordingStart(recording_id=str(recording.public_id)),
        edge_url=session.room.edge_url or None,
    )


def recording_start(*, session: Session, by: Any) -> Recording:
    """Start recording ``session`` on its edge. Asks the consent gate for "record" first.

    Raises ConsentError (naming the purpose, audited) when the patient did not consent, and
    RecordingError when the session is not live, one is already running, or the edge refuses.
    """
    if not roles.user_runs_session(by, session):
        consent_services.audit_record(
            action="recording.start", actor=_actor(by), outcome="refused",
            session_public_id=str(session.public_id), detail={"reason": "not coordinator or surgeon"},
        )
        raise RecordingAccessDenied("Only the coordinator or the operating surgeon can start a recording.")
    # Outside any transaction so that a refusal's audit event is kept.
    consent_services.consent_require(session=session, purpose="record", actor=_actor(by), action="recording.start")
    if session.status != Session.Status.LIVE:
        raise RecordingError("The session is not live: start the session, then the recording.")
    with transaction.atomic():
        if Recording.objects.select_for_update().filter(session=session, status=Recording.Status.RECORDING).exists():
            raise RecordingError("This session is already being recorded.")
        recording = Recording.objects.create(
            session=session, started_by=by, retain_until=None, retention_purpose=RetentionPurpose.CLINICAL
        )
        _audit(recording, "recording.start", by)
    try:
        _edge_record(recording)
    except edge.EdgeError as failure:
        with transaction.atomic():
            recording.status = Recording.Status.FAILED
            recording.ended_at = timezone.now()
            recording.error = f"The media server did not start recording: {failure}"
            recording.save(update_fields=["status", "ended_at", "error"])
            _audit(recording, "recording.start", by, outcome="refused", reason="edge", error=str(failure))
        raise RecordingError(f"The media server did not start recording ({failure}). Try again.") from None
    return recording


def recording_stop(*, recording: Recording, by: Any) -> Recording:
    """Stop a live recording at the edge; finalizing starts after commit. Idempotent."""
    if recording.status != Recording.Status.RECORDING:
        return recording
    session = recording.session
    reply = edge.recording_stop(str(session.public_id), edge_url=session.room.edge_url or None)
    segments = reply.get("segments") if isinstance(reply, dict) else None
    if reply is None:
        # The edge was not recording it (it restarted and the recording could not go on), so no
        # "recording.stopped" will come: the spool says what there is.
        segments = _spool_segment_count(recording)
    return _recording_finish(recording, by=by, segments=segments if isinstance(segments, int) else None)


def _spool_segment_count(recording: Recording) -> int:
    """Segments of a recording no edge writes any more: those with a manifest (registered now if
    their webhook was lost) and those still being recovered by a restarted edge."""
    recording_rebuild_from_spool(recording=recording)
    spool = recording_spool_read(recording=recording)
    return max(recording.segments.count(), len(spool.manifests) + len(spool.unmanifested))


def _recording_finish(recording: Recording, *, by: Any, segments: int | None, **detail: Any) -> Recording:
    """The edge no longer writes ``recording``: it is finalizing, verified after commit once the
    number of segments is known (``segments``, or the edge's "recording.stopped" webhook)."""
    with transaction.atomic():
        recording = Recording.objects.select_for_update().get(pk=recording.pk)
        if recording.status != Recording.Status.RECORDING:
            return recording
        recording.status = Recording.Status.FINALIZING
        recording.ended_at = timezone.now()
        if segments is not None:
            recording.expected_segments = segments
        recording.save(update_fields=["status", "ended_at", "expected_segments"])
        _audit(recording, "recording.stop", by, **detail)
        # Without a count the edge's "recording.stopped" webhook says how many segments to wait for.
        if recording.expected_segments is not None:
            _enqueue("recording_finalize", recording.pk)
    return recording


def recording_live_for(*, session: Session, edge_stats: dict[str, Any] | None, edge_error: str = "") -> dict[str, Any]:
    """What the live pages say about recording, from the row and from the edge's own word.

    "off"; "recording" while the edge writes the running recording; "interrupted" when a
    recording runs here but the edge is not writing it (it restarted and has not resumed yet,
    or it cannot be reached): never "recording" while nothing records. ``edge_stats`` is the
    edge's stats of the session, None when it did not answer (``edge_error`` says why).
    """
    recording = Recording.objects.filter(session=session, status=Recording.Status.RECORDING).order_by("-started_at").first()
    if recording is None:
        # The last recording's trouble (failed its check, stuck), said where the coordinator looks.
        last = Recording.objects.filter(session=session).order_by("-started_at").first()
        problem = recording_problem_for(recording=last) if last is not None else ""
        return {"state": "off", "problem": problem} if problem else {"state": "off"}
    from mentoring.services import session_clock  # mentoring imports recordings

    card = {
        "id": str(recording.public_id),
        "started_at": recording.started_at.isoformat(),
        "since": session_clock(session=session, moment=recording.started_at),
    }
    if edge_stats is not None and edge_stats.get("recording_id") == str(recording.public_id):
        return {**card, "state": "recording"}
    if edge_stats is None and edge_error:
        note = (
            "Recording interrupted: the media server cannot be reached, so nothing is being recorded. "
            "What was recorded is kept; recording resumes by itself when the media server is back."
        )
    else:
        note = (
            "Recording interrupted: the media server restarted. What was recorded is kept; "
            "recording resumes by itself in a new part within a few seconds."
        )
    return {**card, "state": "interrupted", "note": note}


def recording_resume_for_session(*, session: Session) -> Recording | None:
    """The session's edge restarted while recording it: go on recording in a new segment.

    The edge writes into the recording's own folder and numbers the new segment after those
    already there (the one torn by the crash included, which the edge recovers when it starts),
    so finalizing sees one series. When the patient's consent no longer covers recording, or the
    edge refuses, the recording ends instead and what was written is finalized. Returns the
    recording, or None when none was running. Called through mentoring's reattach hooks (recordings/events.py).
    """
    recording = Recording.objects.filter(session=session, status=Recording.Status.RECORDING).select_related("session__room").first()
    if recording is None:
        return None
    if not consent_services.consent_granted(session=session, purpose="record"):
        return _recording_end_unresumed(recording, reason="the patient's consent no longer covers recording")
    try:
        _edge_record(recording)
    except edge.EdgeError as failure:
        if failure.status == 409:  # resumed meanwhile by the webhook or another offer
            return recording
        return _recording_end_unresumed(recording, reason=f"the media server did not resume it ({failure})")
    _audit(recording, "recording.resume", None, reason="edge restarted")
    return recording


def _recording_end_unresumed(recording: Recording, *, reason: str) -> Recording:
    log.warning("recording %s ended at an edge restart: %s", recording.public_id, reason)
    return _recording_finish(recording, by=None, segments=_spool_segment_count(recording),
                             reason=f"media server restarted; {reason}")


def recording_stopped(*, recording_public_id: str, segments: int | None) -> Recording:
    """The edge's "recording.stopped" webhook: it closed ``segments`` segments in all."""
    with transaction.atomic():
        recording = Recording.objects.select_for_update().get(public_id=recording_public_id)
        if segments is not None:
            recording.expected_segments = segments
        if recording.status == Recording.Status.RECORDING:
            # Stopped at the edge (publisher gone, disk full): finalize what was written.
            recording.status = Recording.Status.FINALIZING
        if recording.ended_at is None:
            recording.ended_at = timezone.now()
        recording.save(update_fields=["expected_segments", "status", "ended_at"])
        if _awaits_finalize(recording):
            _enqueue("recording_finalize", recording.pk)
    return recording


def _awaits_finalize(recording: Recording) -> bool:
    if recording.status == Recording.Status.FINALIZING:
        return True
    # Restricted by a withdrawal while live: still verified once the edge stopped it.
    return recording.status == Recording.Status.RESTRICTED and recording.verified_at is None and recording.ended_at is not None


def segment_register(
    *,
    recording_public_id: str,
    index: int,
    path: str,
    sha256: str,
    size: int,
    duration: float,
    video_frames: int,
    audio_frames: int,
    width: int,
    height: int,
    fps: float,
    video_codec: str,
    audio_codec: str = "",
) -> Segment:
    """Register a segment the edge closed. Idempotent on (recording, index): a repeated webhook
    with the same content returns the existing row; different content for the same index is refused.
    """
    match = SEGMENT_PATH.match(path)
    if match is None or match["prefix"] != str(recording_public_id):
        raise RecordingError(
            f"Segment path {path!r} must be '<recording id>/<file>' under the spool with the recording's own id."
        )
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise RecordingError("sha256 must be 64 lowercase hex digits.")
    if index < 0 or size < 0 or duration < 0 or video_frames < 0 or audio_frames < 0:
        raise RecordingError("Segment numbers must not be negative.")
    recording = Recording.objects.filter(public_id=recording_public_id).first()
    if recording is None:
        raise RecordingError(f"No recording {recording_public_id}: the edge recorded something never started here.")
    if recording.status in (Recording.Status.ERASING, Recording.Status.ERASED):
        raise RecordingError("This recording was erased; its segments are not taken any more.")
    fields = {
        "path": path, "sha256": sha256, "size": size, "duration": duration, "video_frames": video_frames,
        "audio_frames": audio_frames, "width": width, "height": height, "fps": fps,
        "video_codec": video_codec, "audio_codec": audio_codec,
    }
    with transaction.atomic():
        segment, created = Segment.objects.get_or_create(recording=recording, index=index, defaults=fields)
        # The last segment can arrive after the edge's "recording.stopped": finalize once all are in.
        if (
            created
            and recording.expected_segments is not None
            and _awaits_finalize(recording)
            and recording.segments.count() >= recording.expected_segments
        ):
            _enqueue("recording_finalize", recording.pk)
    if not created and any(getattr(segment, k) != v for k, v in fields.items() if k in ("path", "sha256", "size")):
        raise RecordingError(f"Segment {index} is already registered with other content; the edge must not rewrite it.")
    return segment


SEGMENT_REGISTER_FIELDS = (
    "recording_public_id", "index", "path", "sha256", "size", "duration", "video_frames", "audio_frames",
    "width", "height", "fps", "video_codec", "audio_codec",
)


def segment_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The arguments of segment_register found in a webhook's data or a manifest (newer edges
    may add fields; unknown ones are left out). A missing required field raises TypeError there."""
    return {key: data[key] for key in SEGMENT_REGISTER_FIELDS if key in data}


def _spool_folder(recording: Recording) -> Path:
    return Path(settings.RECORDINGS_SPOOL_DIR) / recording.prefix


@dataclass(frozen=True)
class SpoolState:
    """What the spool says about a recording: segment manifests the edge wrote, and segment files
    that have none yet (still being written, or left open by a crash not recovered yet)."""

    manifests: list[dict[str, Any]]
    unmanifested: list[str]


def recording_spool_read(*, recording: Recording) -> SpoolState:
    """Read the manifests (seg-NNNNN.json) beside the recording's segments on the spool."""
    folder = _spool_folder(recording)
    manifests: list[dict[str, Any]] = []
    unmanifested: list[str] = []
    if not folder.is_dir():
        return SpoolState(manifests, unmanifested)
    for entry in sorted(folder.iterdir()):
        if re.fullmatch(r"seg-\d{5,}\.json", entry.name):
            try:
                data = json.loads(entry.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                log.warning("unreadable manifest %s of recording %s", entry.name, recording.public_id)
                continue
            if isinstance(data, dict):
                manifests.append(data)
        elif re.fullmatch(r"seg-\d{5,}\.mp4", entry.name) and not entry.with_suffix(".json").exists():
            unmanifested.append(entry.name)
    return SpoolState(manifests, unmanifested)


def recording_rebuild_from_spool(*, recording: Recording) -> list[Segment]:
    """Register every segment whose manifest the edge wrote on the spool, as the "segment.closed"
    webhooks would have (idempotent: registered ones are returned as they are). For recordings
    whose webhooks were lost: the spool, not a webhook, is the truth of what was recorded."""
    registered = []
    for manifest in recording_spool_read(recording=recording).manifests:
        file = str(manifest.get("file", ""))
        fields = segment_fields({**manifest, "recording_public_id": str(recording.public_id), "path": f"{recording.prefix}/{file}"})
        try:
            registered.append(segment_register(**fields))
        except (TypeError, RecordingError) as error:
            log.error("manifest %s of recording %s not registered: %s", file, recording.public_id, error)
    return registered


@dataclass(frozen=True)
class SweepResult:
    finalized: list[str]
    failed: list[str]
    waiting: list[str]


def recording_sweep(*, now: datetime | None = None) -> SweepResult:
    """Recordings left finalizing (a lost webhook, an edge that died, a worker that was killed):
    rebuild their segments from the spool's manifests, take the count from there when the edge
    never said it, and finalize them; report as failed, with what to do, those still stuck after
    RECORDINGS_STUCK_MINUTES. Run every minute by Celery beat; idempotent."""
    now = now or timezone.now()
    grace = timedelta(seconds=settings.RECORDINGS_SWEEP_GRACE_SECONDS)
    stuck_after = timedelta(minutes=settings.RECORDINGS_STUCK_MINUTES)
    candidates = Recording.objects.select_related("session").filter(ended_at__lt=now - grace).filter(
        Q(status=Recording.Status.FINALIZING) | Q(status=Recording.Status.RESTRICTED, verified_at__isnull=True)
    )
    finalized, failed, waiting = [], [], []
    for recording in candidates:
        recording_rebuild_from_spool(recording=recording)
        spool = recording_spool_read(recording=recording)
        if recording.expected_segments is None and not spool.unmanifested:
            # The edge never said how many it closed: its manifests say it.
            Recording.objects.filter(pk=recording.pk, expected_segments__isnull=True).update(
                expected_segments=len(spool.manifests)
            )
        recording.refresh_from_db()
        try:
            recording = recording_finalize(recording=recording)
        except RecordingNotReady as wait:
            if recording.ended_at is not None and recording.ended_at < now - stuck_after:
                _fail(recording, f"{wait} Nothing more came from the media server for {settings.RECORDINGS_STUCK_MINUTES} minutes.")
                failed.append(str(recording.public_id))
            else:
                waiting.append(str(recording.public_id))
            continue
        except RecordingError:
            failed.append(str(recording.public_id))
            continue
        if recording.verified_at is not None:
            finalized.append(str(recording.public_id))
    return SweepResult(finalized=finalized, failed=failed, waiting=waiting)


def recording_problem_for(*, recording: Recording) -> str:
    """Why ``recording`` is not available and what to do next, in a coordinator's words; empty
    when there is nothing to do (available, erased, or still finalizing in time)."""
    if recording.status == Recording.Status.FAILED:
        if "no segment" in recording.error or "nothing was recorded" in recording.error:
            happened = "The media server saved nothing for this recording."
        elif "missing" in recording.error or "waiting for the edge" in recording.error or "Nothing more came" in recording.error:
            happened = "Part of this recording never reached the server."
        else:
            happened = "This recording did not pass its integrity check."
        return (
            f"{happened} Nothing has been deleted. Press \"Check again\" to retry; if it fails again, "
            "ask IT to compare the media server's copy before anyone erases anything."
        )
    if recording.status == Recording.Status.FINALIZING and recording.ended_at is not None:
        late = timezone.now() - recording.ended_at > timedelta(seconds=settings.RECORDINGS_SWEEP_GRACE_SECONDS)
        if late:
            return "This recording is taking longer than usual to be checked. It is retried every minute; nothing is lost."
    return ""


@dataclass(frozen=True)
class RecordingProblem:
    recording: Recording
    problem: str


def recording_problems_for(*, user: Any, session: Session | None = None) -> list[RecordingProblem]:
    """Recordings that need a coordinator (failed their check, or finalizing for too long), newest
    first, each with what to do; nothing for anyone else (they may not act on them)."""
    if not roles.user_is_coordinator(user):
        return []
    query = Recording.objects.select_related("session", "session__room").filter(
        status__in=[Recording.Status.FAILED, Recording.Status.FINALIZING]
    )
    if session is not None:
        query = query.filter(session=session)
    found = []
    for recording in query.order_by("-started_at")[:50]:
        problem = recording_problem_for(recording=recording)
        if problem:
            found.append(RecordingProblem(recording, problem))
    return found


def recording_retry(*, recording: Recording, by: Any) -> Recording:
    """A coordinator asks to check a failed recording again: back to finalizing, segments rebuilt
    from the spool, finalize queued after commit. Audited; refused to anyone else."""
    recording = Recording.objects.select_related("session").get(pk=recording.pk)
    if not roles.user_is_coordinator(by):
        _audit(recording, "recording.retry", by, outcome="refused", reason="not coordinator")
        raise RecordingAccessDenied("Only coordinators can check a recording again.")
    if recording.status != Recording.Status.FAILED:
        raise RecordingError("Only a recording that failed its check can be checked again.")
    recording_rebuild_from_spool(recording=recording)
    spool = recording_spool_read(recording=recording)
    with transaction.atomic():
        recording = Recording.objects.select_for_update().get(pk=recording.pk)
        recording.status = Recording.Status.FINALIZING
        recording.error = ""
        if recording.ended_at is None:
            recording.ended_at = timezone.now()
        if recording.expected_segments is None or recording.expected_segments < len(spool.manifests):
            recording.expected_segments = len(spool.manifests) or recording.expected_segments
        recording.save(update_fields=["status", "error", "ended_at", "expected_segments"])
        _audit(recording, "recording.retry", by)
        _enqueue("recording_finalize", recording.pk)
    return recording


# ---------------------------------------------------------------- finalize


@dataclass
class _Decoded:
    video_frames: int
    audio_frames: int
    duration: float
    width: int
    height: int
    fps: float
    video_codec: str
    audio_codec: str


def _jpeg(frame: av.VideoFrame, width: int) -> bytes:
    """Encode one frame as a JPEG with FFmpeg's MJPEG encoder (no Pillow needed)."""
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    context = av.CodecContext.create("mjpeg", "w")
    context.width, context.height = width, height
    context.pix_fmt = "yuvj420p"
    context.time_base = Fraction(1, 25)
    context.options = {"qscale": "3"}
    image = frame.reformat(width=width, height=height, format="yuvj420p")
    image.pts = 0
    packets = list(context.encode(image)) + list(context.encode(None))
    return b"".join(bytes(p) for p in packets)


def _contact_sheet(frames: list[av.VideoFrame]) -> bytes:
    """Tile small frames into one JPEG with FFmpeg's tile filter (row by row, in time order)."""
    first = frames[0]
    graph = av.filter.Graph()
    source = graph.add_buffer(width=first.width, height=first.height, format=first.format, time_base=Fraction(1, 25))
    tile = graph.add("tile", f"{CONTACT_SHEET_COLUMNS}x{CONTACT_SHEET_ROWS}:padding=4:margin=4")
    sink = graph.add("buffersink")
    source.link_to(tile)
    tile.link_to(sink)
    graph.configure()
    for number, frame in enumerate(frames):
        frame.pts = number
        graph.push(frame)
    graph.push(None)
    sheet = graph.pull()
    assert isinstance(sheet, av.VideoFrame)
    return _jpeg(sheet, sheet.width)


def _decode(
    segment: Segment, *, grab_at: list[float], grabbed: list[av.VideoFrame], offset: float
) -> _Decoded:
    """Decode every packet of the segment. Grabs small frames at ``grab_at`` recording times."""
    video_frames = audio_frames = 0
    end = 0.0
    with av.open(_segment_local_path(segment)) as container:
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        audio = container.streams.audio[0] if container.streams.audio else None
        streams = [video] + ([audio] if audio is not None else [])
        for packet in container.demux(*streams):
            for frame in packet.decode():
                if not isinstance(frame, (av.VideoFrame, av.AudioFrame)):
                    continue  # only video and audio streams are demuxed
                if frame.pts is not None and frame.time_base is not None:
                    end = max(end, float(frame.pts * frame.time_base) + (
                        float(packet.duration * packet.time_base) if packet.duration else 0.0
                    ))
                if isinstance(frame, av.VideoFrame):
                    video_frames += 1
                    at = offset + float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base is not None else offset
                    if grab_at and at >= grab_at[0]:
                        grab_at.pop(0)
                        height = max(2, round(frame.height * CONTACT_SHEET_TILE_WIDTH / frame.width / 2) * 2)
                        grabbed.append(frame.reformat(width=CONTACT_SHEET_TILE_WIDTH, height=height, format="yuv420p"))
                else:
                    audio_frames += 1
        start = float(video.start_time * video.time_base) if video.start_time is not None and video.time_base is not None else 0.0
        rate = video.average_rate or video.base_rate or video.guessed_rate
        return _Decoded(
            video_frames=video_frames,
            audio_frames=audio_frames,
            duration=max(0.0, end - start),
            width=video.codec_context.width,
            height=video.codec_context.height,
            fps=float(rate) if rate else 0.0,
            video_codec=video.codec_context.name,
            audio_codec=audio.codec_context.name if audio is not None else "",
        )


def _first_frame(segment: Segment) -> av.VideoFrame:
    with av.open(_segment_local_path(segment)) as container:
        for frame in container.decode(video=0):
            return frame
    raise RecordingError(f"Segment {segment.index} has no picture.")


def _check(segment: Segment, decoded: _Decoded) -> list[str]:
    problems = []
    if decoded.video_frames != segment.video_frames:
        problems.append(f"{decoded.video_frames} video frames decoded, the edge wrote {segment.video_frames}")
    if decoded.audio_frames != segment.audio_frames:
        problems.append(f"{decoded.audio_frames} audio frames decoded, the edge wrote {segment.audio_frames}")
    frame_time = 1 / segment.fps if segment.fps else 0.0
    if abs(decoded.duration - segment.duration) > DURATION_TOLERANCE + frame_time:
        problems.append(f"lasts {decoded.duration:.3f} s, the edge reported {segment.duration:.3f} s")
    if (decoded.width, decoded.height) != (segment.width, segment.height):
        problems.append(f"is {decoded.width}x{decoded.height}, the edge reported {segment.width}x{segment.height}")
    return problems


def _fail(recording: Recording, message: str) -> RecordingError:
    with transaction.atomic():
        # A restricted recording stays restricted (nobody may view it); the error says what failed.
        Recording.objects.filter(pk=recording.pk, status=Recording.Status.FINALIZING).update(
            status=Recording.Status.FAILED, error=message
        )
        Recording.objects.filter(pk=recording.pk, status=Recording.Status.RESTRICTED).update(error=message)
        _audit(recording, "recording.finalize", None, outcome="refused", error=message)
    log.error("recording %s failed verification: %s", recording.public_id, message)
    return RecordingError(message)


def recording_finalize(*, recording: Recording, progress: Progress | None = None) -> Recording:
    """Verify every segment and make the thumbnail and contact sheet; then the recording is available.

    Each segment is decoded end to end with PyAV; frame counts, duration and size are checked
    against what the edge registered and the SHA-256 is recomputed. A mismatch marks the
    recording failed (nothing is deleted) and raises RecordingError naming the segment.
    Idempotent: an available, restricted or erased recording is returned as it is.
    """
    recording = Recording.objects.select_related("session").get(pk=recording.pk)
    # A recording restricted by a withdrawal is still verified once the edge stopped it: it may be
    # kept under legal hold, and erasing needs to know what exists.
    if not _awaits_finalize(recording):
        return recording
    report = progress or _progress_for(recording, "finalize")
    segments = list(recording.segments.order_by("index"))
    if recording.expected_segments is None:
        raise RecordingNotReady("Waiting for the edge to report how many segments it closed.")
    if len(segments) < recording.expected_segments:
        raise RecordingNotReady(
            f"{len(segments)} of {recording.expected_segments} segments are registered; waiting for the edge."
        )
    if not segments:
        raise _fail(recording, "The edge registered no segment: nothing was recorded.")
    if [s.index for s in segments] != list(range(len(segments))):
        raise _fail(recording, f"Segments are missing: registered {[s.index for s in segments]}.")
    total = sum(s.duration for s in segments) or 1.0
    grab_at = [total * (n + 0.5) / (CONTACT_SHEET_COLUMNS * CONTACT_SHEET_ROWS) for n in range(CONTACT_SHEET_COLUMNS * CONTACT_SHEET_ROWS)]
    grabbed: list[av.VideoFrame] = []
    offset = 0.0
    decoded_all: list[_Decoded] = []
    report("finalize", 0)
    for number, segment in enumerate(segments):
        try:
            with _segment_open(segment) as handle:
                digest = _sha256_file(handle)
            decoded = _decode(segment, grab_at=grab_at, grabbed=grabbed, offset=offset)
        except FileNotFoundError:
            raise _fail(recording, f"Segment {segment.index} ({segment.path}) is missing from the spool.") from None
        except av.FFmpegError as broken:
            raise _fail(recording, f"Segment {segment.index} ({segment.path}) does not decode: {broken}.") from None
        problems = _check(segment, decoded)
        if digest != segment.sha256:
            problems.insert(0, "its SHA-256 differs from the edge's: the file changed after it was written")
        if problems:
            raise _fail(
                recording,
                f"Segment {segment.index} ({segment.path}) {'; '.join(problems)}. The files are kept; "
                "compare with the edge's copy before erasing anything.",
            )
        Segment.objects.filter(pk=segment.pk).update(verified_at=timezone.now())
        decoded_all.append(decoded)
        offset += segment.duration
        report("finalize", round(90 * (number + 1) / len(segments)))
    thumbnail_key = _storage_put(f"recordings/{recording.prefix}/thumbnail.jpg", ContentFile(_jpeg(_first_frame(segments[0]), THUMBNAIL_WIDTH)))
    sheet_key = _storage_put(f"recordings/{recording.prefix}/contact-sheet.jpg", ContentFile(_contact_sheet(grabbed))) if grabbed else ""
    first = decoded_all[0]
    with transaction.atomic():
        recording = Recording.objects.select_for_update().get(pk=recording.pk)
        recording.duration = sum(d.duration for d in decoded_all)
        recording.video_codec, recording.audio_codec = first.video_codec, first.audio_codec
        recording.width, recording.height, recording.fps = first.width, first.height, first.fps
        recording.size = sum(s.size for s in segments)
        recording.thumbnail, recording.contact_sheet = thumbnail_key, sheet_key
        recording.verified_at = timezone.now()
        if recording.retain_until is None:
            recording.retain_until = retention_until(purpose=recording.retention_purpose, start=recording.started_at.date())
        # Consent may have been withdrawn while we verified: then it stays restricted.
        if recording.status == Recording.Status.FINALIZING:
            recording.status = Recording.Status.AVAILABLE
        recording.save()
        _audit(recording, "recording.finalize", None, segments=len(segments), duration=round(recording.duration, 3))
        _enqueue("recording_archive", recording.pk)
    report("finalize", 100)
    return recording


# ---------------------------------------------------------------- archive


def recording_archive(*, recording: Recording, progress: Progress | None = None) -> Recording:
    """Copy verified segments from the spool into Django storage, check each copy's SHA-256,
    then free the spool. Idempotent: segments already archived are skipped.
    """
    recording = Recording.objects.select_related("session").get(pk=recording.pk)
    if recording.status in (Recording.Status.ERASING, Recording.Status.ERASED, Recording.Status.FAILED):
        return recording
    if recording.verified_at is None:
        raise RecordingError("Finalize (verify) the recording before archiving it.")
    report = progress or _progress_for(recording, "archive")
    segments = list(recording.segments.order_by("index"))
    for number, segment in enumerate(segments):
        if segment.archived_key:
            continue
        name = Path(segment.path).name
        with _spool_path(segment).open("rb") as source:
            key = _storage_put(f"recordings/{recording.prefix}/{name}", File(source, name=name))
        with default_storage.open(key, "rb") as copy:
            if _sha256_file(copy) != segment.sha256:
                default_storage.delete(key)
                raise RecordingError(f"The archived copy of segment {segment.index} differs from the original; retry.")
        Segment.objects.filter(pk=segment.pk).update(archived_key=key)
        _spool_path(segment).unlink(missing_ok=True)
        _spool_path(segment).with_suffix(".json").unlink(missing_ok=True)
        report("archive", round(100 * (number + 1) / len(segments)))
    with transaction.atomic():
        Recording.objects.filter(pk=recording.pk).update(storage_key=f"recordings/{recording.prefix}/", archived_at=timezone.now())
    recording.refresh_from_db()
    return recording


# ---------------------------------------------------------------- access


def recording_access_check(*, recording: Recording, user: Any, action: str) -> None:
    """Allow or refuse ``user`` to view/download ``recording``, auditing a refusal.

    Coordinators, the session's surgeon and faculty may view an available recording; the
    session's residents (or users in the resident group) only if the patient consented to
    training use (archive_training). Nobody views a restricted, failed or erased one.
    """
    session = recording.session
    if not getattr(user, "is_authenticated", False):
        consent_services.audit_refusal_aggregated(
            action=action, reason="not signed in", key=str(recording.public_id),
            session_public_id=str(recording.session.public_id), detail={"target": f"recording:{recording.public_id}"},
        )
        raise RecordingAccessDenied("Sign in to view recordings.")
    if recording.status != Recording.Status.AVAILABLE:
        _audit(recording, action, user, outcome="refused", reason=f"status {recording.status}")
        if recording.status == Recording.Status.RESTRICTED:
            raise RecordingAccessDenied("This recording is restricted: the patient withdrew consent.")
        raise RecordingAccessDenied(f"This recording is {recording.get_status_display().lower()} and cannot be viewed.")
    if roles.user_runs_session(user, session) or roles.user_is_faculty(user):
        return
    is_resident = (
        session.participants.filter(user=user, role=Role.RESIDENT, removed_at__isnull=True).exists()
        or user.groups.filter(name="resident").exists()
    )
    if is_resident:
        try:
            consent_services.consent_require(session=session, purpose="archive_training", actor=_actor(user), action=action)
        except consent_services.ConsentError as refusal:
            raise RecordingAccessDenied(
                f"You cannot view this recording: the patient did not consent to its use for training ({refusal.purpose})."
            ) from None
        return
    _audit(recording, action, user, outcome="refused", reason="no role in this recording")
    raise RecordingAccessDenied("You have no access to this recording. Ask the coordinator if you should.")


def recording_get(*, public_id: Any) -> Recording | None:
    return Recording.objects.select_related("session", "session__room").filter(public_id=public_id).first()


@dataclass
class MediaFile:
    handle: IO[bytes]
    size: int
    name: str


def recording_media_open(*, recording: Recording, index: int, user: Any, browser: str) -> MediaFile:
    """Open segment ``index`` of ``recording`` for ``user`` (checked, and audited once per viewing).

    Call it for every request that serves bytes, whatever its Range header: the first request of
    a viewing writes its ``recording.view`` event before any byte is served (recording_viewing_touch).
    ``browser`` identifies the sign-in the request comes from (its session key).
    """
    recording_access_check(recording=recording, user=user, action="recording.view")
    segment = recording.segments.filter(index=index).first()
    if segment is None:
        raise RecordingError(f"This recording has no part {index}.")
    recording_viewing_touch(recording=recording, user=user, browser=browser, index=index)
    return MediaFile(handle=_segment_open(segment), size=segment.size, name=f"{recording.prefix}-{index:05d}.mp4")


# A viewing seen this recently is not written again on every range request.
VIEWING_TOUCH_SECONDS = 60


def recording_viewing_touch(*, recording: Recording, user: Any, browser: str, index: int) -> Viewing:
    """The viewing this request belongs to: continued, or started and audited (``recording.view``).

    What a viewing is: every request of one signed-in user, from one sign-in (``browser``), for any
    part of one recording, with no pause longer than RECORDING_VIEWING_IDLE_MINUTES. A player's
    range requests and seeks, and the next part of the same recording, continue it; a pause that
    long, another browser or a new sign-in starts a new one. Concurrent first requests of one
    viewing (players fetch in parallel) write one event: viewings of a recording start one at a time.
    """
    digest = hashlib.sha256(f"orstream.viewing:{browser}".encode()).hexdigest()
    now = timezone.now()
    with transaction.atomic():
        list(Recording.objects.select_for_update().filter(pk=recording.pk).values_list("pk", flat=True))
        viewing = (
            Viewing.objects.filter(
                recording=recording,
                user=user,
                browser=digest,
                last_at__gte=now - timedelta(minutes=settings.RECORDING_VIEWING_IDLE_MINUTES),
            )
            .order_by("-last_at")
            .first()
        )
        if viewing is not None:
            if (now - viewing.last_at).total_seconds() >= VIEWING_TOUCH_SECONDS:
                viewing.last_at = now
                viewing.save(update_fields=["last_at"])
            return viewing
        viewing = Viewing.objects.create(recording=recording, user=user, browser=digest, started_at=now, last_at=now)
        _audit(recording, "recording.view", user, segment=index, viewing=viewing.pk)
    return viewing


# ---------------------------------------------------------------- export


def export_destination_check(destination: Path) -> Path:
    """``destination`` resolved, when it is inside one of ORSTREAM_EXPORT_DESTINATIONS."""
    allowed = [Path(d).resolve() for d in settings.EXPORT_DESTINATIONS]
    target = Path(destination).resolve()
    if not any(target == root or target.is_relative_to(root) for root in allowed):
        choices = ", ".join(str(a) for a in allowed) or "none configured (ORSTREAM_EXPORT_DESTINATIONS)"
        raise RecordingError(f"Exports may only be written under: {choices}.")
    return target


def export_check(*, recording: Recording, destination: Path, by: Any) -> Path:
    """Who may export, and where to: the resolved destination, or a refusal (audited)."""
    if not roles.user_is_coordinator(by):
        _audit(recording, "recording.export", by, outcome="refused", reason="not coordinator")
        raise RecordingAccessDenied("Only the records office (coordinators) can export recordings.")
    try:
        return export_destination_check(destination)
    except RecordingError:
        _audit(recording, "recording.export", by, outcome="refused", reason="destination not allowed")
        raise


def export_request(*, recording: Recording, destination: Path, by: Any) -> ExportJob:
    """Queue a verified copy of ``recording`` to ``destination`` (checked against the allow-list)."""
    target = export_check(recording=recording, destination=destination, by=by)
    with transaction.atomic():
        job = ExportJob.objects.create(
            recording=recording, kind=ExportJob.Kind.COPY, destination=str(target), requested_by=by
        )
        _enqueue("recording_export", job.pk)
    return job


def recording_export(*, job: ExportJob, progress: Progress | None = None) -> ExportJob:
    """Copy the recording's segments and a SHA256SUMS manifest into ``<destination>/<recording id>/``.

    Each copy is read back and its SHA-256 compared with the registered one. Progress is in
    bytes. Refused (and audited) when the recording is not available: consent withdrawn, erased.
    Idempotent: a finished job is returned as it is; a re-run copies again over a partial copy.
    """
    job = ExportJob.objects.select_related("recording__session", "requested_by").get(pk=job.pk)
    if job.status == ExportJob.Status.DONE:
        return job
    recording, by = job.recording, job.requested_by
    if recording.status != Recording.Status.AVAILABLE:
        message = f"The recording is {recording.get_status_display().lower()}: it cannot be exported."
        ExportJob.objects.filter(pk=job.pk).update(status=ExportJob.Status.FAILED, error=message, finished_at=timezone.now())
        _audit(recording, "recording.export", by, outcome="refused", reason=f"status {recording.status}")
        raise RecordingError(message)
    try:
        consent_services.consent_require(session=recording.session, purpose="record", actor=_actor(by), action="recording.export")
    except consent_services.ConsentError as refusal:
        ExportJob.objects.filter(pk=job.pk).update(status=ExportJob.Status.FAILED, error=str(refusal), finished_at=timezone.now())
        raise RecordingError(str(refusal)) from None
    target = export_destination_check(Path(job.destination)) / recording.prefix
    report = progress or _progress_for(recording, "export")
    segments = list(recording.segments.order_by("index"))
    total = sum(s.size for s in segments)
    ExportJob.objects.filter(pk=job.pk).update(status=ExportJob.Status.COPYING, bytes_total=total, bytes_copied=0, progress=0)
    _audit(recording, "recording.export", by, destination=str(target), export=str(job.public_id))
    target.mkdir(parents=True, exist_ok=True)
    copied = 0
    lines = []
    try:
        for segment in segments:
            name = Path(segment.path).name
            partial = target / f".{name}.part"
            digest = hashlib.sha256()
            with _segment_open(segment) as source, partial.open("wb") as sink:
                for chunk in iter(lambda: source.read(CHUNK), b""):
                    digest.update(chunk)
                    sink.write(chunk)
                    copied += len(chunk)
                    percent = min(99, round(100 * copied / total)) if total else 99
                    ExportJob.objects.filter(pk=job.pk).update(bytes_copied=copied, progress=percent)
                    report("export", percent)
                sink.flush()
            if digest.hexdigest() != segment.sha256:
                raise RecordingError(f"Segment {segment.index} read back with another SHA-256: the archive is damaged.")
            with partial.open("rb") as written:
                if _sha256_file(written) != segment.sha256:
                    raise RecordingError(f"The copy of segment {segment.index} at the destination is corrupt; retry the export.")
            partial.replace(target / name)
            lines.append(f"{segment.sha256}  {name}\n")
        (target / "SHA256SUMS").write_text("".join(lines))
        (target / "recording.json").write_text(json.dumps(_manifest(recording, segments), indent=2))
    except (OSError, RecordingError) as failure:
        ExportJob.objects.filter(pk=job.pk).update(status=ExportJob.Status.FAILED, error=str(failure), finished_at=timezone.now())
        _audit(recording, "recording.export", by, outcome="refused", reason="copy failed", error=str(failure))
        raise
    ExportJob.objects.filter(pk=job.pk).update(
        status=ExportJob.Status.DONE, progress=100, bytes_copied=copied, sha256_verified=True, finished_at=timezone.now(), error=""
    )
    report("export", 100)
    job.refresh_from_db()
    return job


def _manifest(recording: Recording, segments: list[Segment]) -> dict[str, Any]:
    """What travels with an export: pseudonymous ids, technical facts, checksums; no patient data."""
    return {
        "recording": str(recording.public_id),
        "session": str(recording.session.public_id),
        "procedure": recording.session.procedure,
        "started_at": recording.started_at.isoformat(),
        "ended_at": recording.ended_at.isoformat() if recording.ended_at else None,
        "duration": recording.duration,
        "video": {"codec": recording.video_codec, "width": recording.width, "height": recording.height, "fps": recording.fps},
        "audio": {"codec": recording.audio_codec},
        "segments": [{"index": s.index, "file": Path(s.path).name, "size": s.size, "sha256": s.sha256, "duration": s.duration} for s in segments],
    }


# ---------------------------------------------------------------- restriction, erasure, retention


def recording_restrict_for_session(*, session: Session, reason: str, by: Any = None) -> list[Recording]:
    """Consent was withdrawn: restrict every recording of the session at once (no one may view or
    export them). Runs in the caller's transaction; returns the recordings restricted now.
    """
    restricted = []
    with transaction.atomic():
        for recording in Recording.objects.select_for_update().select_related("session").filter(
            session=session,
            status__in=[Recording.Status.RECORDING, Recording.Status.FINALIZING, Recording.Status.AVAILABLE],
        ):
            recording_restrict(recording=recording, reason=reason, by=by)
            restricted.append(recording)
    return restricted


def recording_restrict(*, recording: Recording, reason: str, by: Any = None) -> Recording:
    """Make one recording unavailable to everyone at once. A live one keeps its state until the
    edge stops: its status becomes restricted and finalizing leaves it so.
    """
    with transaction.atomic():
        Recording.objects.filter(pk=recording.pk).update(status=Recording.Status.RESTRICTED, restricted_at=timezone.now())
        _audit(recording, "recording.restrict", by, reason=reason)
    recording.refresh_from_db()
    return recording


def recording_restrict_uncovered(*, change: ConsentNarrowed) -> None:
    """Consent effect, inside the withdrawal's transaction (registered in RecordingsConfig.ready):
    without consent to record, every recording of the session is restricted at once."""
    if change.covers("record"):
        return
    session = Session.objects.get(pk=change.session_id)
    recording_restrict_for_session(session=session, reason=change.reason, by=_user(change.by_id))


def recording_stop_uncovered(*, change: ConsentNarrowed) -> None:
    """Consent effect, after the withdrawal commits (in consent's retried job): stop at the edge
    the recordings it restricted while live. Raises EdgeError while one is still live, so the
    job tries again; a stopped one is not stopped twice."""
    if change.covers("record"):
        return
    session = Session.objects.get(pk=change.session_id)
    recording_live_stop_for_session(session=session, by=_user(change.by_id))
    if Recording.objects.filter(session=session, status=Recording.Status.RESTRICTED, ended_at__isnull=True).exists():
        raise edge.EdgeError("the edge has not stopped the recording yet")


def _user(pk: int | None) -> Any:
    return None if pk is None else get_user_model().objects.filter(pk=pk).first()


def recording_live_stop_for_session(*, session: Session, by: Any = None) -> list[Recording]:
    """After a withdrawal: stop at the edge every recording of ``session`` that was still live
    when it was restricted, and queue its verification (it stays restricted). Called after commit.

    When the edge cannot be reached the refusal is audited and the recording left as it is; the
    caller (recording_stop_uncovered, in a retried job) tries again.
    """
    stopped = []
    for recording in Recording.objects.select_related("session__room").filter(
        session=session, status=Recording.Status.RESTRICTED, ended_at__isnull=True
    ):
        try:
            reply = edge.recording_stop(str(session.public_id), edge_url=session.room.edge_url or None)
        except edge.EdgeError as failure:
            log.error("edge did not stop recording %s after a withdrawal: %s", recording.public_id, failure)
            _audit(recording, "recording.stop", by, outcome="refused", reason="edge", error=str(failure))
            continue
        segments = reply.get("segments") if isinstance(reply, dict) else None
        with transaction.atomic():
            recording = Recording.objects.select_for_update().get(pk=recording.pk)
            if recording.ended_at is None:
                recording.ended_at = timezone.now()
            if isinstance(segments, int):
                recording.expected_segments = segments
            recording.save(update_fields=["ended_at", "expected_segments"])
            _audit(recording, "recording.stop", by, reason="consent withdrawn")
            # Otherwise the edge's "recording.stopped" webhook gives the count and queues it.
            if recording.expected_segments is not None:
                _enqueue("recording_finalize", recording.pk)
        stopped.append(recording)
    return stopped


def recording_legal_hold(*, recording: Recording, hold: bool, reason: str, by: Any) -> Recording:
    """Put a recording under legal hold (never erased, even past retention) or release it."""
    if not roles.user_is_coordinator(by):
        raise RecordingAccessDenied("Only the records office (coordinators) can change a legal hold.")
    if hold and not reason.strip():
        raise RecordingError("Say why the recording is held (case or request reference).")
    with transaction.atomic():
        Recording.objects.filter(pk=recording.pk).update(legal_hold=hold, legal_hold_reason=reason if hold else "")
        _audit(recording, "recording.legal_hold", by, hold=hold, reason=reason)
    recording.refresh_from_db()
    return recording


def erase_request(*, recording: Recording, by: Any, reason: str) -> Recording:
    """A person asks for erasure: checked here, carried out by the recording_erase task after commit."""
    if not roles.user_is_coordinator(by):
        _audit(recording, "recording.erase", by, outcome="refused", reason="not coordinator")
        raise RecordingAccessDenied("Only the records office (coordinators) can erase recordings.")
    if recording.legal_hold:
        _audit(recording, "recording.erase", by, outcome="refused", reason="legal hold")
        raise RecordingError("This recording is under legal hold: release the hold before erasing it.")
    with transaction.atomic():
        _mark_erasing(recording, by=by, reason=reason)
        _enqueue("recording_erase", recording.pk)
    recording.refresh_from_db()
    return recording


def _mark_erasing(recording: Recording, *, by: Any, reason: str) -> bool:
    updated = Recording.objects.filter(pk=recording.pk).exclude(status__in=[Recording.Status.ERASING, Recording.Status.ERASED]).update(
        status=Recording.Status.ERASING, erase_started_at=timezone.now()
    )
    if updated:
        _audit(recording, "recording.erase", by, step="started", reason=reason)
    return bool(updated)


def _recording_files(recording: Recording) -> Iterator[tuple[str, Callable[[], None]]]:
    """(description, delete) for every file of the recording; each delete tolerates a missing file."""
    for segment in recording.segments.order_by("index"):
        spool = _spool_path(segment)
        yield f"spool segment {segment.index}", partial(spool.unlink, missing_ok=True)
        if segment.archived_key:
            yield f"archived segment {segment.index}", partial(default_storage.delete, segment.archived_key)
    for key in (recording.thumbnail, recording.contact_sheet):
        if key:
            yield "picture", partial(default_storage.delete, key)


def recording_erase(*, recording: Recording, by: Any = None, reason: str = "") -> Recording:
    """Erase a recording's media. Safe to run twice and after a worker died half-way.

    Marks the recording erasing (and audits it) before touching a file, deletes every file
    (a missing file counts as deleted), then marks it erased and audits that. A legal hold stops
    it before anything is deleted. Rows stay, with checksums and sizes, as the record of what was
    erased; the files themselves are gone.
    """
    recording = Recording.objects.select_related("session").get(pk=recording.pk)
    if recording.status == Recording.Status.ERASED:
        return recording
    if recording.legal_hold:
        _audit(recording, "recording.erase", by, outcome="refused", reason="legal hold")
        raise RecordingError("This recording is under legal hold: release the hold before erasing it.")
    if recording.status == Recording.Status.RECORDING:
        raise RecordingError("Stop the recording before erasing it.")
    with transaction.atomic():
        if not _mark_erasing(recording, by=by, reason=reason):
            _audit(recording, "recording.erase", by, step="resumed")
    pause = settings.RECORDINGS_ERASE_PAUSE_SECONDS
    deleted = 0
    for _, delete in _recording_files(recording):
        delete()
        deleted += 1
        # Keeps "erase_started_at" fresh so retention does not resume an erasure that is alive.
        if deleted % 50 == 0:
            Recording.objects.filter(pk=recording.pk).update(erase_started_at=timezone.now())
        if pause:
            time.sleep(pause)
    # Whatever else lies under the recording's prefix (a copy a killed job left, pictures, the
    # edge's manifests and set-aside files): removed too, then checked.
    for key in _storage_keys_under(f"recordings/{recording.prefix}"):
        default_storage.delete(key)
        deleted += 1
    folder = _spool_folder(recording)
    shutil.rmtree(folder, ignore_errors=True)
    left = _storage_keys_under(f"recordings/{recording.prefix}") + ([str(folder)] if folder.exists() else [])
    if left:
        # Retried by the task; the recording stays "erasing", so retention resumes it too.
        raise OSError(f"{len(left)} file(s) of recording {recording.public_id} are still there after erasing; retrying.")
    with transaction.atomic():
        Recording.objects.filter(pk=recording.pk).update(
            status=Recording.Status.ERASED, erased_at=timezone.now(), thumbnail="", contact_sheet="", storage_key=""
        )
        Segment.objects.filter(recording=recording).update(archived_key="")
        _audit(recording, "recording.erase", by, step="completed", files=deleted)
    recording.refresh_from_db()
    return recording


def retention_until(*, purpose: str, start: date) -> date:
    """The last day a recording kept for ``purpose`` and started on ``start`` is kept."""
    policy = RetentionPolicy.objects.filter(purpose=purpose).first()
    if policy is not None:
        days = policy.days
    else:
        days = {
            RetentionPurpose.CLINICAL: settings.RETENTION_DAYS,
            RetentionPurpose.TRAINING: settings.RETENTION_TRAINING_DAYS,
            RetentionPurpose.RESEARCH: settings.RETENTION_RESEARCH_DAYS,
        }[RetentionPurpose(purpose)]
    return start + timedelta(days=days)


@dataclass(frozen=True)
class RetentionResult:
    erased: list[str]
    held: list[str]
    resumed: list[str]


def retention_apply(*, today: date | None = None) -> RetentionResult:
    """Erase recordings past their retain_until date, except those under legal hold; resume
    erasures whose worker died (erasing and untouched for ERASE_STALE_AFTER). Run daily by beat.
    """
    today = today or timezone.localdate()
    due = Recording.objects.filter(retain_until__lt=today).exclude(
        status__in=[Recording.Status.RECORDING, Recording.Status.FINALIZING, Recording.Status.ERASING, Recording.Status.ERASED]
    )
    held = [str(r.public_id) for r in due.filter(legal_hold=True)]
    erased = []
    for recording in due.filter(legal_hold=False):
        try:
            recording_erase(recording=recording, reason=f"retention ended {recording.retain_until}")
        except RecordingError:
            # Held in the meantime: the next run looks again.
            log.warning("retention could not erase recording %s", recording.public_id, exc_info=True)
            continue
        erased.append(str(recording.public_id))
    resumed = []
    stale = Recording.objects.filter(
        status=Recording.Status.ERASING, legal_hold=False, erase_started_at__lt=timezone.now() - ERASE_STALE_AFTER
    )
    for recording in stale:
        recording_erase(recording=recording, reason="resuming an interrupted erasure")
        resumed.append(str(recording.public_id))
    return RetentionResult(erased=erased, held=held, resumed=resumed)


# ---------------------------------------------------------------- jobs


def _enqueue(name: str, pk: int) -> None:
    """Queue the task of the same name after the current transaction commits.

    Robust: a broker that is down at that instant is logged and does not undo the committed
    change; rows left finalizing or erasing are picked up again (retention resumes erasures).
    """

    def send() -> None:
        from . import tasks

        getattr(tasks, name).delay(pk)

    transaction.on_commit(send, robust=True)


# ---------------------------------------------------------------- library (pages)

BOOKMARK_LABEL_MAX = 120


@dataclass(frozen=True)
class LibraryFilter:
    """What the library is searched by; empty fields do not filter."""

    text: str = ""
    procedure: str = ""
    room: str = ""
    surgeon: str = ""
    since: date | None = None
    until: date | None = None
    tag: str = ""
    session: str = ""


def recording_list_for(*, user: Any, filters: LibraryFilter | None = None) -> QuerySet[Recording]:
    """The recordings ``user`` may play, newest first, narrowed by ``filters``.

    The same rules as recording_access_check, as one query and without auditing (a list is not a
    view): only available recordings (restricted, failed and erased ones are never listed);
    coordinators and faculty see all, a surgeon their own, residents only those whose patient
    consent in force grants archive_training. Everyone else sees nothing.
    """
    if not getattr(user, "is_authenticated", False):
        return Recording.objects.none()
    query = Recording.objects.select_related("session", "session__room", "session__surgeon").filter(
        status=Recording.Status.AVAILABLE
    )
    if not (roles.user_is_coordinator(user) or roles.user_is_faculty(user)):
        in_resident_group = user.groups.filter(name=roles.RESIDENT).exists()
        resident_of = Q() if in_resident_group else Q(
            session__participants__user=user,
            session__participants__role=Role.RESIDENT,
            session__participants__removed_at__isnull=True,
        )
        trained = Recording.objects.filter(
            resident_of,
            session__consents__withdrawn_at__isnull=True,
            session__consents__decisions__purpose="archive_training",
            session__consents__decisions__granted=True,
        ).values("pk")
        query = query.filter(Q(session__surgeon=user) | Q(pk__in=trained))
    f = filters or LibraryFilter()
    if f.text:
        query = query.filter(
            Q(session__procedure__icontains=f.text) | Q(session__room__name__icontains=f.text) | Q(tags__icontains=f.text)
        )
    if f.procedure:
        query = query.filter(session__procedure__icontains=f.procedure)
    if f.room:
        query = query.filter(session__room__name=f.room)
    if f.surgeon:
        query = query.filter(session__surgeon__username=f.surgeon)
    if f.since:
        query = query.filter(started_at__date__gte=f.since)
    if f.until:
        query = query.filter(started_at__date__lte=f.until)
    if f.tag:
        query = query.filter(tags__contains=[f.tag])
    if f.session:
        query = query.filter(session__public_id=f.session)
    return query.distinct().order_by("-started_at")


@dataclass(frozen=True)
class LibraryChoices:
    rooms: list[str]
    surgeons: list[tuple[str, str]]
    tags: list[str]


def library_choices_for(*, user: Any) -> LibraryChoices:
    """The rooms, surgeons (username, name) and tags of what ``user`` may see, for the filters."""
    rooms: set[str] = set()
    surgeons: dict[str, str] = {}
    tags: set[str] = set()
    for recording in recording_list_for(user=user):
        session = recording.session
        rooms.add(session.room.name)
        surgeons[session.surgeon.username] = session.surgeon.get_full_name() or session.surgeon.username
        tags.update(str(t) for t in recording.tags or [])
    return LibraryChoices(sorted(rooms), sorted(surgeons.items(), key=lambda s: s[1]), sorted(tags))


def recording_may_manage(*, recording: Recording, user: Any) -> bool:
    """Export, legal hold and erasure are the records office's (coordinators')."""
    return roles.user_is_coordinator(user)


def recording_may_download(*, recording: Recording, user: Any) -> bool:
    """A download leaves the hospital's control: the records office and the operating surgeon."""
    return roles.user_runs_session(user, recording.session)


def _annotation_offset(card: dict[str, Any], started: float) -> float:
    # media_time is the edge's ingest wall clock (Unix seconds) of the frame the mentor saw; the
    # recording starts at started_at on the same clock (the control plane and the edge keep NTP
    # time). Strokes without a media time fall back to when the server stored them.
    when = card.get("media_time")
    if not isinstance(when, (int, float)):
        when = datetime.fromisoformat(card["at"]).timestamp()
    return float(when) - started


def recording_playback_for(*, recording: Recording, user: Any) -> dict[str, Any]:
    """What the library's player needs, for ``user`` (checked, refusals audited):

    ``parts``: each segment's URL and its start within the recording (the durations before it);
    ``annotations``: the session's strokes and clears that fall inside the recording, with
    ``t``, seconds from the recording's start (see _annotation_offset for the mapping);
    ``bookmarks``: bookmarks and chapters in time order.
    """
    from mentoring.services import annotation_list_for

    recording_access_check(recording=recording, user=user, action="recording.view")
    parts = []
    offset = 0.0
    for segment in recording.segments.order_by("index"):
        parts.append({"index": segment.index, "url": f"/recordings/{recording.public_id}/parts/{segment.index}.mp4",
                      "start": round(offset, 3), "duration": segment.duration})
        offset += segment.duration
    duration = recording.duration or offset
    started = recording.started_at.timestamp()
    annotations = []
    for card in annotation_list_for(session=recording.session):
        if card["kind"] not in ("stroke", "clear"):
            continue
        t = _annotation_offset(card, started)
        if t < 0 or t > duration:
            continue
        annotations.append({"t": round(t, 3), "kind": card["kind"], "tool": card.get("tool"), "color": card.get("color"),
                            "points": card.get("points", []), "from_name": card["from_name"]})
    annotations.sort(key=lambda a: a["t"])
    return {
        "recording": str(recording.public_id),
        "duration": duration,
        "parts": parts,
        "annotations": annotations,
        "bookmarks": [bookmark_card(b) for b in bookmark_list_for(recording=recording)],
    }


def bookmark_card(bookmark: Bookmark) -> dict[str, Any]:
    return {"id": bookmark.pk, "t": bookmark.media_time, "label": bookmark.label, "kind": bookmark.kind}


def bookmark_list_for(*, recording: Recording) -> list[Bookmark]:
    return list(recording.bookmarks.order_by("media_time", "pk"))


def bookmark_add(*, recording: Recording, user: Any, media_time: float, label: str, kind: str = Bookmark.Kind.BOOKMARK) -> Bookmark:
    """Mark a moment of ``recording``; anyone who may view it may mark it. Chapters are faculty's,
    the surgeon's and the records office's (they structure the recording for everyone)."""
    recording_access_check(recording=recording, user=user, action="recording.bookmark")
    label = label.strip()
    if not label:
        raise RecordingError("Give the bookmark a short label, e.g. \"dissection starts\".")
    if len(label) > BOOKMARK_LABEL_MAX:
        raise RecordingError(f"Keep the label under {BOOKMARK_LABEL_MAX} characters.")
    if kind not in Bookmark.Kind.values:
        raise RecordingError("A mark is a bookmark or a chapter.")
    if kind == Bookmark.Kind.CHAPTER and not (
        roles.user_runs_session(user, recording.session) or roles.user_is_faculty(user)
    ):
        raise RecordingAccessDenied("Only faculty, the surgeon and the records office add chapters; add a bookmark instead.")
    duration = recording.duration or sum(s.duration for s in recording.segments.all())
    if not 0 <= media_time <= duration + DURATION_TOLERANCE:
        raise RecordingError(f"The time must be within the recording (0 to {duration:.0f} s).")
    return Bookmark.objects.create(recording=recording, media_time=float(media_time), label=label, kind=kind, created_by=user)


def recording_download_open(*, recording: Recording, index: int, user: Any) -> MediaFile:
    """Open part ``index`` as a download for ``user``: the records office or the surgeon; audited."""
    recording_access_check(recording=recording, user=user, action="recording.download")
    if not recording_may_download(recording=recording, user=user):
        _audit(recording, "recording.download", user, outcome="refused", reason="not coordinator or surgeon")
        raise RecordingAccessDenied("Only the records office and the operating surgeon can download recordings.")
    segment = recording.segments.filter(index=index).first()
    if segment is None:
        raise RecordingError(f"This recording has no part {index}.")
    _audit(recording, "recording.download", user, segment=index)
    return MediaFile(handle=_segment_open(segment), size=segment.size, name=f"{recording.prefix}-{index:05d}.mp4")


def recording_stop_check(*, recording: Recording, user: Any) -> None:
    """May ``user`` stop ``recording``? The coordinator or the operating surgeon, as for a start;
    a refusal is audited."""
    if roles.user_runs_session(user, recording.session):
        return
    _audit(recording, "recording.stop", user, outcome="refused", reason="not coordinator or surgeon")
    raise RecordingAccessDenied("Only the coordinator or the operating surgeon can stop a recording.")


def recording_progress_check(*, recording: Recording, user: Any) -> None:
    """May ``user`` follow the progress of jobs on ``recording``? Coordinators always (they follow
    finalizing and erasure too); others when they may view it. Refusals are audited."""
    if roles.user_is_coordinator(user):
        return
    recording_access_check(recording=recording, user=user, action="recording.progress")

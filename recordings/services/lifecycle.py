"""Recording lifecycle writes: start and stop on the edge, segment registration from the edge's
webhooks, the end of a recording, resumption after an edge restart, retrying a failed one.

Called by the session pages and API (start, stop), the edge webhook handlers in recordings.events
(segment_register, recording_stopped), the session reattach hook (recording_resume_for_session)
and the library (retry).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.db import transaction
from django.utils import timezone

from consent import services as consent_services
from consent.audit import audit_record
from mentoring.models import Session
from orstream import edgeclient, roles
from orstream.edge import protocol

from ..models import Recording, RetentionPurpose, Segment
from .common import (
    SEGMENT_PATH,
    RecordingAccessDenied,
    RecordingEdgeUnavailable,
    RecordingError,
    _actor,
    _audit,
    _awaits_finalize,
    _enqueue,
)
from .spool import recording_spool_read

log = logging.getLogger(__name__)

RECORDING_NOT_STOPPED = "The media server did not stop the recording, so it is still recording: try stopping it again in a moment."


def _edge_record(recording: Recording) -> None:
    """Ask the session's edge to write ``recording`` (into its own folder on the spool)."""
    session = recording.session
    edgeclient.recording_start(
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
        audit_record(
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
    except edgeclient.EdgeError as failure:
        with transaction.atomic():
            recording.status = Recording.Status.FAILED
            recording.ended_at = timezone.now()
            recording.error = f"The media server did not start recording: {failure}"
            recording.save(update_fields=["status", "ended_at", "error"])
            _audit(recording, "recording.start", by, outcome="refused", reason="edge", error=str(failure))
        raise RecordingError(f"The media server did not start recording ({failure}). Try again.") from None
    return recording


def recording_stop(*, recording: Recording, by: Any) -> Recording:
    """Stop a live recording at the edge; finalizing starts after commit. Idempotent. Raises
    RecordingEdgeUnavailable when the edge does not answer (the recording goes on)."""
    if recording.status != Recording.Status.RECORDING:
        return recording
    session = recording.session
    try:
        reply = edgeclient.recording_stop(str(session.public_id), edge_url=session.room.edge_url or None)
    except edgeclient.EdgeError as failure:
        # The edge's own words stay in the log: the person gets what happened and what to do.
        log.warning("recording %s not stopped by the edge (status %s): %s", recording.public_id, failure.status, failure)
        raise RecordingEdgeUnavailable(RECORDING_NOT_STOPPED) from None
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
    except edgeclient.EdgeError as failure:
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
            reply = edgeclient.recording_stop(str(session.public_id), edge_url=session.room.edge_url or None)
        except edgeclient.EdgeError as failure:
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

"""Long-term archive services: a recompressed copy of a recording, proved faithful, spread over
Celery workers; the originals removed after a keeping period; the storage report.

The pipeline, one Celery task per step (recordings.tasks, same names):
``archive_request`` (a person, or automatically once a recording is stored) -> ``archive_prepare``
(cut at the recording's own keyframes by stream copy, one row per chunk; then the quality search:
a few samples from keyframes encoded at 2-3 CRFs and scored choose the highest CRF predicted to
pass the gate, or find that no copy would be smaller, and the original is kept as the archive) ->
``archive_chunk_encode`` for each chunk at that CRF, in parallel on as many workers as there are
(encode, then VMAF/PSNR/SSIM against the original chunk; a chunk below the threshold is encoded
once more at higher quality) -> ``archive_join`` (join by stream copy with the original sound,
check frame count, duration and picture/sound alignment against the original, then the quality
gate: accepted, the original kept when the copy is no smaller, or flagged for a person). Every step is idempotent: files are written whole under fixed names and moved into
place, rows say what is done, and a worker that dies mid-chunk has its chunk taken again.
``archive_originals_apply`` (daily) removes originals whose accepted copy has been kept long enough.

Called by the tasks, the recording and storage pages, the other services modules (to queue the archive
of a stored recording, and to play an archive copy once the originals are gone) and the DICOM
export (``archive_hevc_for``). Every decision and every refusal is audited through
consent.audit. Files live under the recording's storage prefix, so erasure removes them all.
Never holds a transaction across an encode; never writes a patient identifier anywhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from consent.audit import audit_record
from orstream import roles

from .. import encode
from ..models import ArchiveChunk, ArchiveCopy, Recording, Segment
from .common import _actor, _audit, _enqueue

log = logging.getLogger(__name__)

# Picture and sound must start as far apart in the copy as in the original, to within this.
AV_TOLERANCE = 0.002


class ArchiveError(Exception):
    """An archive request that cannot be honoured; the message says what to do about it."""


class ArchiveNotReady(ArchiveError):
    """The archive copy asked for is being made: ask again later (a task retries)."""


class ArchiveAccessDenied(ArchiveError):
    """Refused to this person (already audited)."""


def _path(key: str) -> Path:
    """The file behind a storage key. The archive's workers read and write files with FFmpeg, so
    storage must be a filesystem they share (MEDIA_ROOT on a shared volume)."""
    try:
        return Path(default_storage.path(key))
    except NotImplementedError:
        raise ArchiveError(
            "Archive encoding needs the recordings' storage on a shared filesystem (MEDIA_ROOT); "
            "it cannot work on object storage yet."
        ) from None


def _segment_file(segment: Segment) -> Path:
    if segment.archived_key:
        return _path(segment.archived_key)
    return Path(settings.RECORDINGS_SPOOL_DIR) / segment.path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _codec_settings(codec: str) -> tuple[str, int]:
    if codec == ArchiveCopy.Codec.AV1:
        return settings.ARCHIVE_AV1_PRESET, settings.ARCHIVE_AV1_CRF
    return settings.ARCHIVE_HEVC_PRESET, settings.ARCHIVE_HEVC_CRF


def _crf_range(codec: str) -> tuple[int, int]:
    if codec == ArchiveCopy.Codec.AV1:
        low, high = settings.ARCHIVE_AV1_CRF_MIN, settings.ARCHIVE_AV1_CRF_MAX
    else:
        low, high = settings.ARCHIVE_HEVC_CRF_MIN, settings.ARCHIVE_HEVC_CRF_MAX
    if not 0 <= low <= high:
        raise ArchiveError(f"The archive's CRF range for {codec} is {low}..{high}: set its CRF_MIN at or below its CRF_MAX.")
    return low, high


def _replaces_original(archive: ArchiveCopy) -> bool:
    """A copy in the archive codec stands for the recording once its original goes, so it must be
    smaller; another (the HEVC input of the DICOM export) is made for its format, whatever its size."""
    return archive.codec == settings.ARCHIVE_CODEC


# ---------------------------------------------------------------- request


def archive_request(*, recording: Recording, codec: str = "", by: Any = None) -> ArchiveCopy:
    """Make an archive copy of ``recording`` in ``codec`` (ARCHIVE_CODEC by default), with the
    settings in force now, stored on the row. Idempotent: a copy being made or accepted is
    returned as it is. A flagged copy is made again only when a person asks (the records office).
    Raises ArchiveAccessDenied for anyone else (audited) and ArchiveError when the recording is
    not a verified, available one.
    """
    codec = codec or settings.ARCHIVE_CODEC
    if codec not in encode.ENCODERS:
        raise ArchiveError(f"ORSTREAM_ARCHIVE_CODEC must be one of {', '.join(encode.ENCODERS)}, not {codec!r}.")
    recording = Recording.objects.select_related("session").get(pk=recording.pk)
    if by is not None and not roles.user_is_coordinator(by):
        _audit(recording, "recording.archive", by, outcome="refused", reason="not coordinator")
        raise ArchiveAccessDenied("Only the records office (coordinators) can ask for an archive copy.")
    if recording.status != Recording.Status.AVAILABLE or recording.verified_at is None:
        raise ArchiveError(
            f"This recording is {recording.get_status_display().lower()}: only a verified, available recording is archived."
        )
    preset, crf = _codec_settings(codec)
    if settings.ARCHIVE_CRF_SEARCH:
        _crf_range(codec)  # a range that cannot be searched is said now, to the person who asked
    with transaction.atomic():
        list(Recording.objects.select_for_update().filter(pk=recording.pk).values_list("pk", flat=True))
        existing = ArchiveCopy.objects.filter(recording=recording, codec=codec).first()
        if existing is not None:
            if existing.status != ArchiveCopy.Status.FLAGGED or by is None:
                return existing
            _archive_files_remove(existing)
            existing.delete()
        archive = ArchiveCopy.objects.create(
            recording=recording, codec=codec, encoder=encode.ENCODERS[codec], preset=preset, crf=crf,
            retry_crf=max(0, crf - settings.ARCHIVE_RETRY_CRF_STEP), chunk_seconds=settings.ARCHIVE_CHUNK_SECONDS,
            vmaf_model=encode.vmaf_model_for(recording.width or 0, recording.height or 0),
            vmaf_mean_min=settings.ARCHIVE_VMAF_MEAN_MIN, vmaf_chunk_min=settings.ARCHIVE_VMAF_CHUNK_MIN,
            requested_by=by, original_size=recording.size,
        )
        _audit(recording, "recording.archive", by, step="requested", codec=codec, encoder=archive.encoder,
               preset=preset, crf=crf, vmaf_model=archive.vmaf_model)
        _enqueue("archive_prepare", archive.pk)
    return archive


def _archive_files_remove(archive: ArchiveCopy) -> None:
    shutil.rmtree(_path(archive.folder), ignore_errors=True)


def _erased_meanwhile(archive: ArchiveCopy, *files: Path) -> bool:
    """The recording is being erased: drop what this step just wrote, so erasure leaves nothing."""
    status = Recording.objects.filter(pk=archive.recording_id).values_list("status", flat=True).first()
    if status not in (Recording.Status.ERASING, Recording.Status.ERASED, None):
        return False
    for file in files:
        file.unlink(missing_ok=True)
    shutil.rmtree(_path(archive.folder), ignore_errors=True)  # and the folders this step made
    return True


def _original_kept(archive: ArchiveCopy, note: str, **detail: Any) -> ArchiveCopy:
    """The original is the archive: no copy is smaller. Done (not flagged), audited, no file kept."""
    shutil.rmtree(_path(archive.folder), ignore_errors=True)
    with transaction.atomic():
        ArchiveCopy.objects.filter(pk=archive.pk).update(
            status=ArchiveCopy.Status.KEPT, note=note, key="", sha256="", finished_at=timezone.now(),
        )
        _audit(archive.recording, "recording.archive", None, **{"step": "original_kept", "codec": archive.codec, **detail, "note": note})
    log.info("archive %s of recording %s: original kept", archive.codec, archive.recording.public_id)
    archive.refresh_from_db()
    return archive


def _kept_note(ratio: float, crf: int, *, predicted: bool) -> str:
    would = "would take about" if predicted else "took"
    return (
        f"The original is kept as the archive: it is already as compact as an archive copy can be. "
        f"A copy at the lowest quality that still passes the checks (CRF {crf}) {would} {ratio:.0%} of the "
        "original's space, so nothing would be saved. Nothing needs doing; the original stays as recorded."
    )


def _flag(archive: ArchiveCopy, note: str, **detail: Any) -> ArchiveCopy:
    """Stop and leave the copy for a person, saying why; the originals stay as they are."""
    with transaction.atomic():
        ArchiveCopy.objects.filter(pk=archive.pk).update(status=ArchiveCopy.Status.FLAGGED, note=note, finished_at=timezone.now())
        _audit(archive.recording, "recording.archive", None, outcome="refused", step="flagged", codec=archive.codec, note=note, **detail)
    log.warning("archive %s of recording %s flagged: %s", archive.codec, archive.recording.public_id, note)
    archive.refresh_from_db()
    return archive


# ---------------------------------------------------------------- prepare: cut at keyframes


def archive_prepare(*, archive: ArchiveCopy) -> ArchiveCopy:
    """Cut the recording at its keyframes into chunks (stream copy), one row each, and queue one
    encode per chunk. Idempotent: a copy already cut is returned; a cut a killed worker left is
    cut again from the start (the chunk files are rewritten under the same names)."""
    archive = ArchiveCopy.objects.select_related("recording__session").get(pk=archive.pk)
    if archive.status != ArchiveCopy.Status.QUEUED:
        return archive
    recording = archive.recording
    segments = list(recording.segments.order_by("index"))
    if not segments:
        return _flag(archive, "The recording has no segment to archive.")
    folder = f"{archive.folder}/source"
    try:
        files = encode.chunks_cut([_segment_file(s) for s in segments], _path(folder), seconds=archive.chunk_seconds)
        probes = [encode.media_probe([file]) for file in files]
    except encode.EncodeError as failure:
        return _flag(archive, f"The recording could not be cut into chunks: {failure}")
    if _erased_meanwhile(archive, *files):
        return archive
    choice = None
    if settings.ARCHIVE_CRF_SEARCH:
        try:
            choice = encode.crf_search(
                files, _path(f"{archive.folder}/search"),
                encode.EncodeSettings(archive.codec, archive.preset, archive.crf, settings.ARCHIVE_THREADS),
                fps=probes[0].fps or 30.0, model=archive.vmaf_model, vmaf_mean_min=archive.vmaf_mean_min,
                vmaf_chunk_min=archive.vmaf_chunk_min, margin=settings.ARCHIVE_SEARCH_MARGIN,
                crf_range=_crf_range(archive.codec), samples=settings.ARCHIVE_SEARCH_SAMPLES,
                sample_seconds=settings.ARCHIVE_SEARCH_SAMPLE_SECONDS,
            )
        except encode.EncodeError as failure:
            return _flag(archive, f"The quality search on samples of the recording failed: {failure}")
        shutil.rmtree(_path(f"{archive.folder}/search"), ignore_errors=True)
        if _erased_meanwhile(archive, *files):
            return archive
    if choice is not None:
        with transaction.atomic():
            archive = ArchiveCopy.objects.select_for_update().select_related("recording__session").get(pk=archive.pk)
            if archive.status != ArchiveCopy.Status.QUEUED:
                return archive
            step = archive.crf - archive.retry_crf
            archive.crf, archive.retry_crf = choice.crf, max(0, choice.crf - step)
            archive.search = choice.record()
            archive.cpu_seconds += choice.cpu_seconds
            archive.original_size = sum(s.size for s in segments)
            archive.save(update_fields=["crf", "retry_crf", "search", "cpu_seconds", "original_size"])
            _audit(recording, "recording.archive", None, step="quality_chosen", codec=archive.codec, **choice.record())
        if _replaces_original(archive) and choice.predicted_size_ratio >= 1.0:
            note = _kept_note(choice.predicted_size_ratio, choice.crf, predicted=True)
            return _original_kept(archive, note, crf=choice.crf, predicted_size_ratio=round(choice.predicted_size_ratio, 4))
    with transaction.atomic():
        archive = ArchiveCopy.objects.select_for_update().select_related("recording__session").get(pk=archive.pk)
        if archive.status != ArchiveCopy.Status.QUEUED:
            return archive
        for index, (file, probe) in enumerate(zip(files, probes, strict=True)):
            chunk, _ = ArchiveChunk.objects.update_or_create(
                archive=archive, index=index,
                defaults={
                    "source_key": f"{folder}/{file.name}", "output_key": f"{archive.folder}/chunks/{file.name}",
                    "frames": probe.video_frames, "duration": probe.duration, "source_size": file.stat().st_size,
                },
            )
            _enqueue("archive_chunk_encode", chunk.pk)
        archive.status = ArchiveCopy.Status.ENCODING
        archive.chunks_total = len(files)
        archive.started_at = timezone.now()
        archive.original_size = sum(s.size for s in segments)
        archive.save(update_fields=["status", "chunks_total", "started_at", "original_size"])
        _audit(recording, "recording.archive", None, step="cut", codec=archive.codec, chunks=len(files), crf=archive.crf)
    return archive


# ---------------------------------------------------------------- one chunk


def _retry_below(archive: ArchiveCopy) -> float:
    """The VMAF under which a chunk is encoded again. With a CRF chosen by the search for the mean,
    a chunk is retried only under the per-chunk threshold (else most would be, for nothing); with
    a fixed CRF, under the mean threshold."""
    return archive.vmaf_chunk_min if archive.search else archive.vmaf_mean_min


def archive_chunk_encode(*, chunk: ArchiveChunk) -> ArchiveChunk:
    """Encode one chunk and score it against the original chunk (VMAF, PSNR, SSIM); below the
    copy's retry threshold (``_retry_below``) it is encoded once more at the copy's retry quality. The last chunk
    done queues the join. Idempotent: a done chunk is returned as it is; a chunk whose worker died
    is encoded again from the start, over the same file."""
    chunk = ArchiveChunk.objects.select_related("archive__recording__session").get(pk=chunk.pk)
    archive = chunk.archive
    if chunk.status == ArchiveChunk.Status.DONE or archive.status != ArchiveCopy.Status.ENCODING:
        return chunk
    ArchiveChunk.objects.filter(pk=chunk.pk).update(
        status=ArchiveChunk.Status.ENCODING, runs=F("runs") + 1, worker_pid=os.getpid(), started_at=timezone.now()
    )
    source, target = _path(chunk.source_key), _path(chunk.output_key)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = encode.chunk_archive(
            source, target, encode.EncodeSettings(archive.codec, archive.preset, archive.crf, settings.ARCHIVE_THREADS),
            retry_crf=archive.retry_crf, vmaf_target=_retry_below(archive), model=archive.vmaf_model,
        )
    except encode.EncodeError as failure:
        if not _erased_meanwhile(archive, target):
            _flag(archive, f"Chunk {chunk.index} could not be encoded: {failure}", chunk=chunk.index)
        return chunk
    if _erased_meanwhile(archive, target):
        return chunk
    quality, cpu = result.quality, result.cpu_seconds
    with transaction.atomic():
        ArchiveChunk.objects.filter(pk=chunk.pk).update(
            status=ArchiveChunk.Status.DONE, tries=result.tries, crf=result.crf, size=target.stat().st_size,
            vmaf_mean=quality.vmaf_mean, vmaf_min=quality.vmaf_min, psnr=quality.psnr, ssim=quality.ssim,
            first_vmaf_mean=result.first_vmaf_mean, cpu_seconds=cpu, encode_seconds=result.encode_seconds,
            finished_at=timezone.now(),
        )
        archive = ArchiveCopy.objects.select_for_update().get(pk=archive.pk)
        archive.cpu_seconds += cpu
        archive.save(update_fields=["cpu_seconds"])
        done = archive.chunks.filter(status=ArchiveChunk.Status.DONE).count()
        if done == archive.chunks_total and archive.status == ArchiveCopy.Status.ENCODING:
            archive.status = ArchiveCopy.Status.JOINING
            archive.save(update_fields=["status"])
            _enqueue("archive_join", archive.pk)
    chunk.refresh_from_db()
    return chunk


# ---------------------------------------------------------------- join, check, gate


def archive_join(*, archive: ArchiveCopy) -> ArchiveCopy:
    """Join the encoded chunks with the original sound (stream copy), check the joined file
    against the original (video frames, duration, audio packets, picture/sound offset), then the
    quality gate: the frame-weighted VMAF mean and every chunk's mean at or above the copy's
    thresholds. Accepted; the original kept as the archive when a faithful copy is no smaller;
    or flagged for a person; audited with scores, sizes and settings. The chunk files are removed afterwards (the rows keep their scores)."""
    archive = ArchiveCopy.objects.select_related("recording__session").get(pk=archive.pk)
    if archive.status != ArchiveCopy.Status.JOINING:
        return archive
    recording = archive.recording
    chunks = list(archive.chunks.order_by("index"))
    sources = [_segment_file(s) for s in recording.segments.order_by("index")]
    key = f"{archive.folder}/archive.mp4"
    target = _path(key)
    try:
        original = encode.media_probe(sources)
        encoded = [_path(c.output_key) for c in chunks]
        joined_video = encode.media_probe(encoded)
        encode.chunks_join(encoded, sources, target, video_offset=original.video_start - joined_video.video_start)
        copy = encode.media_probe([target])
    except encode.EncodeError as failure:
        return _flag(archive, f"The encoded chunks could not be joined: {failure}")
    if _erased_meanwhile(archive, target):
        return archive
    problems = _join_problems(original, copy)
    frames = sum(c.frames for c in chunks) or 1
    vmaf_mean = sum((c.vmaf_mean or 0.0) * c.frames for c in chunks) / frames
    worst = min(chunks, key=lambda c: c.vmaf_mean or 0.0)
    scores: dict[str, float] = {
        "vmaf_mean": round(vmaf_mean, 3), "vmaf_min_chunk": round(worst.vmaf_mean or 0.0, 3),
        "psnr_mean": round(sum((c.psnr or 0.0) * c.frames for c in chunks) / frames, 3),
        "ssim_mean": round(sum((c.ssim or 0.0) * c.frames for c in chunks) / frames, 5),
    }
    if vmaf_mean < archive.vmaf_mean_min:
        problems.append(f"its VMAF is {vmaf_mean:.1f} on average, below the {archive.vmaf_mean_min:g} required")
    for c in chunks:
        if (c.vmaf_mean or 0.0) < archive.vmaf_chunk_min:
            start = sum(p.duration for p in chunks[: c.index])
            problems.append(
                f"the part from {start:.0f} s to {start + c.duration:.0f} s reached VMAF {c.vmaf_mean:.1f} "
                f"(below {archive.vmaf_chunk_min:g}) even when encoded again at CRF {c.crf}"
            )
    size = target.stat().st_size
    # Faithful but no smaller (footage its recorder already squeezed hard): the original is the archive.
    no_smaller = _replaces_original(archive) and bool(archive.original_size) and size >= archive.original_size
    settings_used: dict[str, Any] = {"codec": archive.codec, "encoder": archive.encoder, "preset": archive.preset, "crf": archive.crf,
                     "retry_crf": archive.retry_crf, "vmaf_model": archive.vmaf_model}
    facts: dict[str, Any] = {"size": size, "original_size": archive.original_size, "video_frames": copy.video_frames,
             "duration": round(copy.duration, 3), "chunks": len(chunks),
             "chunks_encoded_again": sum(1 for c in chunks if c.tries > 1)}
    for c in chunks:
        _path(c.source_key).unlink(missing_ok=True)
        _path(c.output_key).unlink(missing_ok=True)
    if no_smaller and not problems:
        ArchiveCopy.objects.filter(pk=archive.pk).update(
            size=size, video_frames=copy.video_frames, duration=copy.duration, vmaf_mean=scores["vmaf_mean"],
            vmaf_min_chunk=scores["vmaf_min_chunk"], psnr_mean=scores["psnr_mean"], ssim_mean=scores["ssim_mean"],
        )
        note = _kept_note(size / archive.original_size, archive.crf, predicted=False)
        return _original_kept(archive, note, **scores, **facts, **settings_used)
    if no_smaller:
        problems.append(f"it is no smaller than the original ({size} bytes for {archive.original_size})")
    with transaction.atomic():
        archive = ArchiveCopy.objects.select_for_update().select_related("recording__session").get(pk=archive.pk)
        if archive.status != ArchiveCopy.Status.JOINING:
            return archive
        archive.key, archive.size, archive.sha256 = key, size, _sha256(target)
        archive.video_frames, archive.duration = copy.video_frames, copy.duration
        archive.vmaf_mean, archive.vmaf_min_chunk = scores["vmaf_mean"], scores["vmaf_min_chunk"]
        archive.psnr_mean, archive.ssim_mean = scores["psnr_mean"], scores["ssim_mean"]
        archive.finished_at = timezone.now()
        if problems:
            archive.status = ArchiveCopy.Status.FLAGGED
            archive.note = (
                f"The archive copy was not accepted: {'; '.join(problems)}. The original is kept. "
                "Look at the copy, then ask for it again (after IT raises the quality setting) or keep the original."
            )
            _audit(recording, "recording.archive", None, outcome="refused", **{
                "step": "flagged", "problems": problems, **scores, **facts, **settings_used})
        else:
            archive.status = ArchiveCopy.Status.ACCEPTED
            archive.note = ""
            if archive.codec == settings.ARCHIVE_CODEC:
                archive.originals_remove_after = timezone.localdate() + timedelta(days=settings.ARCHIVE_KEEP_ORIGINAL_DAYS)
            _audit(recording, "recording.archive", None, **{
                "step": "accepted", **scores, **facts, **settings_used, "originals_remove_after": archive.originals_remove_after})
        archive.save()
    return archive


def _join_problems(original: encode.Probe, copy: encode.Probe) -> list[str]:
    problems = []
    if copy.video_frames != original.video_frames:
        problems.append(f"it has {copy.video_frames} video frames, the original {original.video_frames}")
    if copy.audio_packets != original.audio_packets:
        problems.append(f"it has {copy.audio_packets} sound packets, the original {original.audio_packets}")
    frame = 1 / original.fps if original.fps else 0.04
    if abs(copy.duration - original.duration) > frame / 2:
        problems.append(f"it lasts {copy.duration:.3f} s, the original {original.duration:.3f} s")
    if (copy.width, copy.height) != (original.width, original.height):
        problems.append(f"it is {copy.width}x{copy.height}, the original {original.width}x{original.height}")
    if original.audio_start is not None:
        if copy.audio_start is None:
            problems.append("it has no sound")
        else:
            drift = (copy.video_start - copy.audio_start) - (original.video_start - original.audio_start)
            if abs(drift) > AV_TOLERANCE:
                problems.append(f"picture and sound are {drift * 1000:+.0f} ms off compared with the original")
    return problems


# ---------------------------------------------------------------- reads


@dataclass(frozen=True)
class ArchiveProgress:
    status: str
    label: str
    chunks_done: int
    chunks_total: int
    seconds_left: float | None

    def card(self) -> dict[str, Any]:
        return {"status": self.status, "label": self.label, "chunks_done": self.chunks_done,
                "chunks_total": self.chunks_total, "seconds_left": self.seconds_left}


def archive_progress_for(*, archive: ArchiveCopy) -> ArchiveProgress:
    """Chunks done of total and an estimate of the time left: the time the chunks took so far,
    per chunk, times the chunks left (so it counts every worker that encodes in parallel)."""
    done = archive.chunks.filter(status=ArchiveChunk.Status.DONE).count()
    left: float | None = None
    if archive.status == ArchiveCopy.Status.ENCODING and done and archive.started_at is not None:
        elapsed = (timezone.now() - archive.started_at).total_seconds()
        left = round(elapsed / done * (archive.chunks_total - done), 1)
    return ArchiveProgress(archive.status, archive.get_status_display(), done, archive.chunks_total, left)


def archive_flagged_for(*, user: Any) -> list[ArchiveCopy]:
    """Archive copies that need a person (the gate did not accept them), newest first, for the
    records office; nothing for anyone else (they may not act on them)."""
    if not roles.user_is_coordinator(user):
        return []
    return list(ArchiveCopy.objects.select_related("recording__session__room").filter(
        status=ArchiveCopy.Status.FLAGGED, recording__status=Recording.Status.AVAILABLE,
    ).order_by("-finished_at")[:50])


def archive_list_for(*, recording: Recording) -> list[ArchiveCopy]:
    return list(ArchiveCopy.objects.filter(recording=recording).prefetch_related("chunks").order_by("codec"))


def archive_playable_for(*, recording: Recording) -> ArchiveCopy | None:
    """The accepted archive copy that stands for the recording once its originals are removed."""
    return ArchiveCopy.objects.filter(
        recording=recording, codec=settings.ARCHIVE_CODEC, status=ArchiveCopy.Status.ACCEPTED,
        originals_removed_at__isnull=False,
    ).first()


@dataclass(frozen=True)
class ArchivePart:
    """The accepted archive copy in the place of a recording's segments once they are removed:
    what the player, downloads and exports use (the fields they read from a Segment)."""

    index: int
    path: str
    size: int
    sha256: str
    duration: float
    archived_key: str


def archive_parts_for(*, recording: Recording) -> list[ArchivePart] | None:
    """The one part that plays, downloads and exports once the originals are removed; None while
    the recording's own segments are there."""
    copy = archive_playable_for(recording=recording)
    if copy is None:
        return None
    return [ArchivePart(0, f"{recording.prefix}/archive-{copy.codec}.mp4", copy.size, copy.sha256, copy.duration or 0.0, copy.key)]


def archive_hevc_for(*, recording: Recording) -> str:
    """The storage key of an accepted HEVC copy of ``recording`` at its own resolution and frame
    rate, with its sound (the DICOM export of 4K stores it as .107/.108). When there is none yet
    it is asked for and ArchiveNotReady is raised: call again from a retried task. A copy that
    was flagged raises ArchiveError: a person must look at it first."""
    archive = archive_request(recording=recording, codec=ArchiveCopy.Codec.HEVC)
    if archive.status == ArchiveCopy.Status.ACCEPTED:
        return archive.key
    if archive.status == ArchiveCopy.Status.FLAGGED:
        raise ArchiveError(f"The HEVC copy of this recording needs a person: {archive.note}")
    if archive.status == ArchiveCopy.Status.KEPT:
        raise ArchiveError(
            "This recording has no HEVC copy: HEVC is the archive codec here and its original is kept as the archive. "
            "Ask IT to archive in AV1 (ORSTREAM_ARCHIVE_CODEC=av1): an HEVC copy is then made for the export whatever its size."
        )
    raise ArchiveNotReady("The HEVC copy of this recording is being made; try again in a few minutes.")


def archive_file_path(*, key: str) -> Path:
    """The file behind an archive copy's key (for FFmpeg-based exports on the same storage)."""
    return _path(key)


# ---------------------------------------------------------------- originals


def archive_originals_apply(*, today: date | None = None) -> list[str]:
    """Remove the originals of recordings whose accepted archive copy has been kept for
    ARCHIVE_KEEP_ORIGINAL_DAYS, except under legal hold (both are kept). Run daily by beat."""
    today = today or timezone.localdate()
    due = ArchiveCopy.objects.select_related("recording__session").filter(
        codec=settings.ARCHIVE_CODEC, status=ArchiveCopy.Status.ACCEPTED, originals_removed_at__isnull=True,
        originals_remove_after__lte=today, recording__legal_hold=False, recording__status=Recording.Status.AVAILABLE,
    )
    removed = []
    for archive in due:
        try:
            archive_originals_remove(archive=archive)
        except ArchiveError:
            log.error("originals of recording %s kept", archive.recording.public_id, exc_info=True)
            continue
        removed.append(str(archive.recording.public_id))
    return removed


def archive_originals_remove(*, archive: ArchiveCopy) -> ArchiveCopy:
    """Delete the original segments of an accepted copy's recording; the copy plays, downloads and
    exports from then on. Checks the copy's SHA-256 first (never removes the originals of a damaged
    copy) and refuses under legal hold. Idempotent."""
    archive = ArchiveCopy.objects.select_related("recording__session").get(pk=archive.pk)
    recording = archive.recording
    if archive.originals_removed_at is not None:
        return archive
    if archive.status != ArchiveCopy.Status.ACCEPTED:
        raise ArchiveError("Only an accepted archive copy replaces the original.")
    if recording.legal_hold:
        _audit(recording, "recording.originals_remove", None, outcome="refused", reason="legal hold")
        raise ArchiveError("This recording is under legal hold: its original is kept with the archive copy.")
    if _sha256(_path(archive.key)) != archive.sha256:
        _audit(recording, "recording.originals_remove", None, outcome="refused", reason="archive copy changed")
        raise ArchiveError("The archive copy no longer matches its checksum: the original is kept; tell IT.")
    segments = list(recording.segments.order_by("index"))
    for segment in segments:
        if segment.archived_key:
            default_storage.delete(segment.archived_key)
        (Path(settings.RECORDINGS_SPOOL_DIR) / segment.path).unlink(missing_ok=True)
    with transaction.atomic():
        Segment.objects.filter(recording=recording).update(archived_key="")
        ArchiveCopy.objects.filter(pk=archive.pk).update(originals_removed_at=timezone.now())
        _audit(recording, "recording.originals_remove", None, segments=len(segments),
               bytes_freed=sum(s.size for s in segments), archive=archive.key)
    archive.refresh_from_db()
    return archive


# ---------------------------------------------------------------- storage report


@dataclass(frozen=True)
class StorageLine:
    recording: Recording
    original_bytes: int  # as recorded
    held_bytes: int  # on storage now: originals still kept, and every copy
    after_bytes: int  # once the originals of an accepted copy are removed
    archive: ArchiveCopy | None

    @property
    def saved_bytes(self) -> int:
        return self.original_bytes - self.after_bytes


@dataclass(frozen=True)
class StorageReport:
    lines: list[StorageLine]
    original_bytes: int
    held_bytes: int
    after_bytes: int

    @property
    def ratio(self) -> float | None:
        return self.after_bytes / self.original_bytes if self.original_bytes else None


def storage_report_for(*, user: Any) -> StorageReport:
    """Per recording and in total, the bytes as recorded, held now, and held once the originals
    of accepted copies are removed. For the records office (coordinators); refusals audited."""
    if not roles.user_is_coordinator(user):
        audit_record(action="recordings.storage_report", actor=_actor(user), outcome="refused",
                                      detail={"reason": "not coordinator"})
        raise ArchiveAccessDenied("Only the records office (coordinators) can see the storage report.")
    audit_record(action="recordings.storage_report", actor=_actor(user))
    recordings = Recording.objects.select_related("session", "session__room").exclude(
        status__in=[Recording.Status.RECORDING, Recording.Status.ERASED]
    ).prefetch_related("archive_copies")
    lines = []
    for recording in recordings.order_by("-started_at"):
        copies = list(recording.archive_copies.all())
        main = next((a for a in copies if a.codec == settings.ARCHIVE_CODEC), None)
        original = recording.size or sum(s.size for s in recording.segments.all())
        copies_bytes = sum(a.size for a in copies if a.key)
        removed = main is not None and main.originals_removed_at is not None
        held = (0 if removed else original) + copies_bytes
        replaces = main is not None and main.status == ArchiveCopy.Status.ACCEPTED and not recording.legal_hold
        after = copies_bytes if replaces or removed else held
        lines.append(StorageLine(recording, original, held, after, main))
    return StorageReport(
        lines, sum(x.original_bytes for x in lines), sum(x.held_bytes for x in lines), sum(x.after_bytes for x in lines)
    )

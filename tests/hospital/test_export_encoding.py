"""What the export does to video no DICOM syntax carries as recorded, into a real Orthanc: H.264
outside .102/.104 is re-encoded to a conforming stream, and 4K goes as the archive's HEVC copy
(Main, Level 5.1 or below: .107). Each stored instance is read back from Orthanc byte for byte
(the fragment may carry one byte of padding) and passes dciodvfy."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.encaps import generate_fragments
from pydicom.uid import MPEG4HP41

from hospital import services, video
from hospital.models import DicomExport, Procedure
from recordings import encode
from recordings.models import Recording
from recordings.services import archive
from tests.hospital.conftest import worklist_write
from tests.recordings.archive_fixtures import stored_recording, textured_segments


def _clip(path: Path, *, width: int, height: int, codec_args: list[str], fps: int = 30, seconds: float = 1.0) -> Path:
    """A test-pattern clip with Opus sound, fragmented as the edge records, encoded as asked."""
    encode.ffmpeg_run(
        ["-f", "lavfi", "-i", f"testsrc2=s={width}x{height}:r={fps}", "-f", "lavfi", "-i", "sine=f=440:r=48000",
         "-t", f"{seconds:.3f}", "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast",
         "-x264-params", f"bframes=0:scenecut=0:keyint={fps}:min-keyint={fps}", *codec_args,
         "-c:a", "libopus", "-b:a", "64k", "-ac", "1", "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", str(path)],
        what="write a test clip",
    )
    return path


def _procedure(orthanc: Any, worklist_provider: Any, recording: Recording, alice: Any, accession: str) -> Procedure:
    worklist_write(orthanc, accession=accession, day=date.today())
    entry = services.worklist_query(provider=worklist_provider, day=date.today())[0]
    return services.procedure_pick(session=recording.session, choice=entry.choice, by=alice)


def _read_back(orthanc: Any, export: DicomExport, folder: Path) -> tuple[pydicom.Dataset, Path, Path]:
    """The stored instance from Orthanc, its file, and its video as sent (padding checked, then cut)."""
    series = [s for s in orthanc.get("/series?expand") if s["MainDicomTags"]["SeriesInstanceUID"] == export.series_instance_uid]
    assert len(series) == 1 and len(series[0]["Instances"]) == 1
    path = folder / "stored.dcm"
    path.write_bytes(orthanc.get_bytes(f"/instances/{series[0]['Instances'][0]}/file"))
    stored = pydicom.dcmread(path)
    bot, fragment = generate_fragments(stored.PixelData)
    size = export.instances[0]["size"]
    assert bot == b"" and len(fragment) == size + size % 2 and fragment[size:] in (b"", b"\x00")
    assert hashlib.sha256(fragment[:size]).hexdigest() == export.instances[0]["sha256"]
    sent = folder / "sent.mp4"
    sent.write_bytes(fragment[:size])
    return stored, path, sent


def _dciodvfy_knows(syntax: str) -> bool:
    return syntax.encode() in Path(shutil.which("dciodvfy") or "/usr/bin/dciodvfy").read_bytes()


def _valid(path: Path) -> None:
    """dciodvfy finds no error in the instance. Debian's dicom3tools (1.00~20220618) has no HEVC
    syntax in its tables and cannot read a .107 file's encapsulated pixel data: the modules are
    then checked on a copy labelled with an encapsulated syntax it knows (.102), and the .107
    stream itself by the caller (profile and level parsed from it)."""
    stored = pydicom.dcmread(path)
    if not _dciodvfy_knows(str(stored.file_meta.TransferSyntaxUID)):
        stored.file_meta.TransferSyntaxUID = MPEG4HP41
        path = path.with_name("relabelled.dcm")
        stored.save_as(path, enforce_file_format=True)
    check = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    assert "Error" not in check.stderr, check.stderr


@pytest.mark.parametrize(("width", "height", "codec_args", "why"), [
    (1920, 1080, ["-profile:v", "high", "-level:v", "5.1", "-pix_fmt", "yuv420p"], "level 5.1 is above the 4.1"),
    (640, 360, ["-profile:v", "high444", "-pix_fmt", "yuv444p"], "profile 244 is above High"),
], ids=["1080p-level-5.1", "high-4:4:4"])
def test_h264_outside_102_is_reencoded_to_a_conforming_stream(
    orthanc: Any, worklist_provider: Any, cstore_pacs: Any, room_modality: Any, session: Any, consenting_patient: Any,
    alice: Any, bob: Any, spool: Path, tmp_path: Path, django_capture_on_commit_callbacks: Any,
    width: int, height: int, codec_args: list[str], why: str,
) -> None:
    clip = _clip(tmp_path / "clip.mp4", width=width, height=height, codec_args=codec_args)
    with pytest.raises(video.NeedsEncoding, match=why):
        video.transfer_syntax_for(video.video_facts(str(clip)))
    recording = stored_recording(session, bob, [clip], spool, width=width, height=height)
    _procedure(orthanc, worklist_provider, recording, alice, "ACC0971")

    with django_capture_on_commit_callbacks(execute=True):
        services.dicom_export_request(recording=recording, destination=cstore_pacs, by=alice)
    export = DicomExport.objects.get(recording=recording)

    assert (export.status, export.error) == ("done", "")
    assert export.transfer_syntax == "1.2.840.10008.1.2.4.102"
    stored, path, sent = _read_back(orthanc, export, tmp_path)
    facts = video.video_facts(str(sent))
    assert (facts.codec, facts.profile_idc, facts.pix_fmt) == ("h264", 100, "yuv420p")
    assert facts.level_idc <= 41 and (facts.width, facts.height) == (width, height)
    assert stored.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.102" and int(stored.NumberOfFrames) == 30
    _valid(path)


def test_h264_that_fits_is_sent_as_recorded(tmp_path: Path) -> None:
    clip = _clip(tmp_path / "fits.mp4", width=1280, height=720, codec_args=["-profile:v", "high", "-level:v", "4.1"])
    assert str(video.transfer_syntax_for(video.video_facts(str(clip)))) == "1.2.840.10008.1.2.4.102"
    fast = _clip(tmp_path / "fast.mp4", width=1280, height=720, fps=60, codec_args=["-profile:v", "high", "-level:v", "4.2"])
    assert str(video.transfer_syntax_for(video.video_facts(str(fast)))) == "1.2.840.10008.1.2.4.104"


def test_4k_goes_to_the_pacs_as_the_archives_hevc_main_51(
    orthanc: Any, worklist_provider: Any, stow_pacs: Any, room_modality: Any, session: Any, consenting_patient: Any,
    alice: Any, bob: Any, spool: Path, tmp_path: Path, settings: Any, django_capture_on_commit_callbacks: Any,
) -> None:
    # One second of 4K: a 4K HEVC encode is slow on small machines. The archive's quality gate is
    # tested with its defaults in the archive's own tests; here only that a copy is accepted.
    settings.ARCHIVE_HEVC_PRESET = "ultrafast"
    settings.ARCHIVE_CRF_SEARCH, settings.ARCHIVE_HEVC_CRF = False, 18  # the CRF as set, not searched for
    settings.ARCHIVE_VMAF_MEAN_MIN, settings.ARCHIVE_VMAF_CHUNK_MIN = 80.0, 75.0
    segments = textured_segments(tmp_path / "4k", width=3840, height=2160, seconds=1, segment_seconds=1)
    recording = stored_recording(session, bob, segments, spool, width=3840, height=2160)
    _procedure(orthanc, worklist_provider, recording, alice, "ACC0972")
    with django_capture_on_commit_callbacks(execute=False):
        export = services.dicom_export_request(recording=recording, destination=stow_pacs, by=alice)

    # The first attempt asks the archive for its HEVC copy and waits (the task retries)...
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(services.HospitalError, match="being made"):
        services.dicom_export_run(export=export, attempt_is_last=False)
    assert archive.archive_hevc_for(recording=recording)  # ...which the archive job made meanwhile.
    export.refresh_from_db()
    export = services.dicom_export_run(export=export)

    assert (export.status, export.error) == ("done", ""), export.error
    assert export.transfer_syntax == "1.2.840.10008.1.2.4.107"
    stored, path, sent = _read_back(orthanc, export, tmp_path)
    facts = video.video_facts(str(sent))
    assert (facts.codec, facts.width, facts.height, facts.pix_fmt) == ("hevc", 3840, 2160, "yuv420p")
    assert facts.profile_idc == video.HEVC_MAIN and 0 < facts.level_idc <= 153
    assert (stored.Rows, stored.Columns) == (2160, 3840) and int(stored.NumberOfFrames) == 30
    assert stored.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.107"
    assert stored.LossyImageCompressionMethod == "ISO_23008_2"
    _valid(path)

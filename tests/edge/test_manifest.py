"""Segment numbering, manifests beside closed segments, and recovery of segments a crash left open."""

from __future__ import annotations

import json
import pathlib
import shutil
from typing import Any

import av
import pytest

from orstream.edge.hub import Edge
from orstream.edge.record import (
    Recorder,
    file_sha256,
    recover_directory,
    segment_describe,
    set_aside_unplayable,
)
from tests.edge.test_record import clip_frames, make_clip, source_video_count

IDENTITY = {"recording_id": "3f2b8a7e-0000-4000-8000-000000000001", "session_id": "5a1c9d3e-0000-4000-8000-000000000002"}


@pytest.fixture(scope="module")
def clip_4s(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "four.mp4", seconds=4.0)


def record(clip: pathlib.Path, directory: pathlib.Path, **options: Any) -> list[dict[str, Any]]:
    closed: list[dict[str, Any]] = []
    with Recorder(directory, on_segment_closed=closed.append, identity=IDENTITY, **options) as recorder:
        for frame in clip_frames(clip):
            recorder.write(frame)
    return closed


def decoded_frames(path: pathlib.Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_segments_are_numbered_from_zero_with_a_manifest_beside_each(clip_4s: pathlib.Path, tmp_path: pathlib.Path) -> None:
    closed = record(clip_4s, tmp_path, segment_seconds=1.5)

    assert [info["index"] for info in closed] == [0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "recording.json", "seg-00000.json", "seg-00000.mp4", "seg-00001.json", "seg-00001.mp4",
    ]  # no temporary file left behind
    for info in closed:
        manifest = json.loads(pathlib.Path(info["path"]).with_suffix(".json").read_text())
        assert manifest["file"] == pathlib.Path(info["path"]).name
        assert manifest["sha256"] == file_sha256(pathlib.Path(info["path"])) == info["sha256"]
        for key in ("index", "size", "duration", "video_frames", "audio_frames", "width", "height", "fps"):
            assert manifest[key] == info[key], key
        assert manifest["recording_id"] == IDENTITY["recording_id"]
        assert manifest["session_id"] == IDENTITY["session_id"]
    assert json.loads((tmp_path / "recording.json").read_text()) == IDENTITY
    assert sum(info["video_frames"] for info in closed) == source_video_count(clip_4s)


def test_reading_a_closed_segment_back_gives_what_the_recorder_reported(clip_4s: pathlib.Path, tmp_path: pathlib.Path) -> None:
    (info,) = record(clip_4s, tmp_path)
    facts = segment_describe(pathlib.Path(info["path"]))
    for key in ("video_frames", "audio_frames", "width", "height", "video_codec", "audio_codec"):
        assert facts[key] == info[key], key
    assert abs(facts["duration"] - info["duration"]) < 0.05
    assert abs(facts["fps"] - info["fps"]) < 0.5


def test_a_torn_segment_is_recovered_with_a_manifest_of_what_survived(clip_4s: pathlib.Path, tmp_path: pathlib.Path) -> None:
    (info,) = record(clip_4s, tmp_path / "whole")
    folder = tmp_path / IDENTITY["recording_id"]
    folder.mkdir()
    shutil.copy(tmp_path / "whole" / "recording.json", folder)
    torn = folder / "seg-00000.mp4"
    data = pathlib.Path(info["path"]).read_bytes()
    torn.write_bytes(data[: len(data) * 3 // 4])  # as a kill -9 leaves it: no manifest, a torn tail

    (manifest,) = recover_directory(folder)

    assert manifest["recovered"] is True and manifest["truncated_bytes"] > 0
    assert manifest["sha256"] == file_sha256(torn) and manifest["size"] == torn.stat().st_size
    assert manifest["video_frames"] == decoded_frames(torn)
    assert 0 < manifest["video_frames"] < info["video_frames"]
    assert manifest["session_id"] == IDENTITY["session_id"]
    assert json.loads((folder / "seg-00000.json").read_text()) == manifest
    assert recover_directory(folder) == []  # done once


def test_a_segment_with_nothing_playable_gives_its_number_to_the_next(clip_4s: pathlib.Path, tmp_path: pathlib.Path) -> None:
    record(clip_4s, tmp_path)
    (tmp_path / "seg-00001.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2")  # killed at once

    assert [p.name for p in set_aside_unplayable(tmp_path)] == ["seg-00001.mp4.unplayable"]
    closed = record(clip_4s, tmp_path)
    assert [info["index"] for info in closed] == [1]


async def test_an_edge_starting_up_recovers_and_reports_segments_a_crash_left_open(
    clip_4s: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    spool = tmp_path / "spool"
    (info,) = record(clip_4s, tmp_path / "whole")
    folder = spool / IDENTITY["recording_id"]
    folder.mkdir(parents=True)
    shutil.copy(tmp_path / "whole" / "recording.json", folder)
    shutil.copy(info["path"], folder / "seg-00000.mp4")
    shutil.copy(pathlib.Path(info["path"]).with_suffix(".json"), folder / "seg-00000.json")  # closed before the crash
    data = pathlib.Path(info["path"]).read_bytes()
    (folder / "seg-00001.mp4").write_bytes(data[: len(data) // 2])  # open at the crash
    events: list[tuple[str, str, dict[str, Any]]] = []
    edge = Edge(emit_event=lambda *event: events.append(event), media_dir=spool)

    assert [p.name for p in edge.recovery_start()] == ["seg-00001.mp4"]
    assert edge._recovery is not None
    await edge._recovery

    (event,) = events
    kind, session_id, data_sent = event
    assert (kind, session_id) == ("segment.closed", IDENTITY["session_id"])
    assert data_sent["recording_public_id"] == IDENTITY["recording_id"]
    assert data_sent["path"] == f"{IDENTITY['recording_id']}/seg-00001.mp4"
    assert data_sent["index"] == 1
    assert data_sent["sha256"] == file_sha256(folder / "seg-00001.mp4")
    assert data_sent["video_frames"] == decoded_frames(folder / "seg-00001.mp4") > 0
    assert (folder / "seg-00001.json").exists()
    await edge.close()

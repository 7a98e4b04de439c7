"""The lower layer: viewers moved onto it and back with real aiortc peers, the lower layer made by
the real encoder process or taken from the encoder's second feed.

The move itself is what the hub's adaptation decides from a browser's transport-cc feedback
(which aiortc peers do not send; the weak-link browser test covers that decision end to end):
here the hub is told to move a viewer, and what the viewer then receives is checked.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bench.fuzz import annexb_units
from orstream.edge.h264 import has_idr, split_nal_units
from orstream.edge.hub import Edge, HubError
from orstream.edge.protocol import SourceAttach

from .conftest import CLIP_FPS, CLIP_GOP, make_clip
from .test_hub import edge, join, recording_viewers, wait_for  # noqa: F401 (fixtures)

FRAME_TICKS = 90_000 // CLIP_FPS


async def test_a_viewer_moves_to_the_lower_layer_and_back_only_on_keyframes_while_others_keep_the_source(
    edge: Edge, aac_clip: Path, source_video_units: list[bytes]  # noqa: F811
) -> None:
    hub = edge.session_create("s1")
    await hub.attach_source(SourceAttach(url=str(aac_clip), loop=True))
    alice = await join(hub, "alice")
    bob = await join(hub, "bob")
    await wait_for(lambda: len(bob.frames("video")) >= 10)
    source = set(source_video_units)
    viewer = hub.viewers["bob"]

    hub._move_down(viewer, time.monotonic())  # what a low estimate leads to
    await wait_for(lambda: viewer.layer == "lower", timeout=30)
    assert hub.lower is not None and hub.lower.running
    down_at = len(bob.frames("video"))
    await wait_for(lambda: len(bob.frames("video")) >= down_at + 2 * CLIP_FPS, timeout=20)

    viewer.target = "full"  # what a good probe leads to
    await wait_for(lambda: viewer.layer == "full", timeout=20)
    up_at = len(bob.frames("video"))
    await wait_for(lambda: len(bob.frames("video")) >= up_at + CLIP_FPS, timeout=20)

    frames = bob.frames("video")
    layers = ["full" if f.data in source else "lower" for f in frames]
    runs: list[tuple[str, int]] = []  # (layer, index of its first frame)
    for i, layer in enumerate(layers):
        if not runs or runs[-1][0] != layer:
            runs.append((layer, i))
    assert [layer for layer, _ in runs] == ["full", "lower", "full"], runs
    for layer, first in runs:
        assert has_idr(split_nal_units(frames[first].data)), f"the {layer} layer starts on a keyframe at frame {first}"
    # Time never goes back, and within a layer no frame is missing (a file source's loop may add
    # a little to one step, never a frame): nothing shown depends on a frame the viewer did not get.
    for before, after, layer, prev_layer in zip(frames, frames[1:], layers[1:], layers, strict=False):
        step = (after.timestamp - before.timestamp) & 0xFFFFFFFF
        assert 0 < step < 0x80000000, "RTP time goes forward across the switch"
        if layer == prev_layer and not has_idr(split_nal_units(after.data)):
            assert step < 2 * FRAME_TICKS, "no frame is missing between two frames of one layer"
    lower_frames = [f for f, layer in zip(frames, layers, strict=True) if layer == "lower"]
    assert len(lower_frames) >= 2 * CLIP_FPS

    # Alice was never moved: every frame she got is the source's own bytes.
    alice_frames = alice.frames("video")
    assert len(alice_frames) > len(frames) - 10
    assert all(f.data in source for f in alice_frames)
    stats = hub.stats()
    assert stats["counters"]["layer_switches_down"] == 1 and stats["counters"]["layer_switches_up"] == 1
    assert stats["lower_layer"]["frames_out"] > 0
    await alice.close()
    await bob.close()


async def test_viewers_go_back_to_the_source_when_the_lower_layer_process_dies(
    edge: Edge, aac_clip: Path, source_video_units: list[bytes]  # noqa: F811
) -> None:
    hub = edge.session_create("s1")
    await hub.attach_source(SourceAttach(url=str(aac_clip), loop=True))
    bob = await join(hub, "bob")
    viewer = hub.viewers["bob"]
    hub._move_down(viewer, time.monotonic())
    await wait_for(lambda: viewer.layer == "lower", timeout=30)
    assert hub.lower is not None and hub.lower._process is not None
    hub.lower._process.kill()
    await wait_for(lambda: viewer.layer == "full", timeout=20)
    # The switch happens as the source's keyframe is sent; lower-layer frames sent just before it
    # may still be on their way, so they can arrive after it, never after a source frame.
    at = len(bob.frames("video"))
    source = set(source_video_units)
    await wait_for(lambda: sum(f.data in source for f in bob.frames("video")[at:]) >= 10, timeout=20)
    after = bob.frames("video")[at:]
    first = next(i for i, f in enumerate(after) if f.data in source)
    assert first <= 10, f"{first} lower-layer frames arrived after the switch"
    assert has_idr(split_nal_units(after[first].data)), "back on the source at its keyframe"
    assert all(f.data in source for f in after[first:])
    await bob.close()


async def test_a_viewer_on_keyframes_only_gets_lower_layer_keyframes_and_all_the_sound_then_moving_pictures_again(
    edge: Edge, aac_clip: Path, source_video_units: list[bytes]  # noqa: F811
) -> None:
    hub = edge.session_create("s1")
    await hub.attach_source(SourceAttach(url=str(aac_clip), loop=True))
    bob = await join(hub, "bob")
    viewer = hub.viewers["bob"]
    hub._move_down(viewer, time.monotonic())
    await wait_for(lambda: viewer.layer == "lower", timeout=30)

    hub._move_to_keyframes(viewer, time.monotonic())  # what an estimate below the lower layer's rate leads to
    await wait_for(lambda: viewer.layer == "keyframes", timeout=20)
    assert hub.stats()["viewers"][0]["layer"] == "keyframes"
    # Lower-layer frames sent just before the switch may still be on their way; after the first
    # keyframe that follows, nothing but keyframes.
    video_at, audio_at, started = len(bob.frames("video")), len(bob.frames("audio")), time.monotonic()
    await wait_for(lambda: sum(has_idr(split_nal_units(f.data)) for f in bob.frames("video")[video_at:]) >= 3, timeout=30)
    arrived = bob.frames("video")[video_at:]
    first = next(i for i, f in enumerate(arrived) if has_idr(split_nal_units(f.data)))
    assert first <= 10, f"{first} moving-picture frames arrived after the switch"
    stills = arrived[first:]
    elapsed = time.monotonic() - started
    source = set(source_video_units)
    assert all(has_idr(split_nal_units(f.data)) for f in stills), "only keyframes, each a picture of its own"
    assert not any(f.data in source for f in stills), "the lower layer's keyframes, not the source's"
    # the sound goes on: Opus at 50 packets a second, whatever the picture does
    assert len(bob.frames("audio")) - audio_at >= 40 * elapsed * 0.75

    viewer.target = "lower"  # what a good probe leads to
    assert hub.lower is not None
    hub.lower.request_keyframe()
    await wait_for(lambda: viewer.layer == "lower", timeout=20)
    at = len(bob.frames("video"))
    await wait_for(lambda: len(bob.frames("video")) >= at + CLIP_FPS, timeout=20)
    assert sum(not has_idr(split_nal_units(f.data)) for f in bob.frames("video")[at:]) > CLIP_FPS // 2
    await bob.close()


def _layer_children() -> list[int]:
    """Child processes of this test making a lower layer by transcoding (layer.py's child)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"orstream.edge.layer" in command:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def encoder_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An encoder's two streams of one picture: the source, and its second, lower stream."""
    folder = tmp_path_factory.mktemp("encoder")
    return (
        make_clip(folder / "main.mp4", width=640, height=360),
        make_clip(folder / "lower.mp4", width=320, height=180),
    )


async def test_a_second_feed_is_the_lower_layer_without_a_transcoder(
    edge: Edge, encoder_pair: tuple[Path, Path]  # noqa: F811
) -> None:
    main, lower_clip = encoder_pair
    source, lower_units = set(annexb_units(main)), set(annexb_units(lower_clip))
    hub = edge.session_create("s1")
    await hub.attach_source(SourceAttach(url=str(main), loop=True, lower_url=str(lower_clip)))
    alice = await join(hub, "alice")
    bob = await join(hub, "bob")
    await wait_for(lambda: len(bob.frames("video")) >= 10)
    viewer = hub.viewers["bob"]
    assert hub.lower is not None and hub.lower.kind == "feed"

    hub._move_down(viewer, time.monotonic())  # what a low estimate leads to
    await wait_for(lambda: viewer.layer == "lower", timeout=10)
    down_at = len(bob.frames("video"))
    await wait_for(lambda: len(bob.frames("video")) >= down_at + 2 * CLIP_FPS, timeout=20)
    viewer.target = "full"  # what a good probe leads to
    await wait_for(lambda: viewer.layer == "full", timeout=10)
    up_at = len(bob.frames("video"))
    await wait_for(lambda: len(bob.frames("video")) >= up_at + CLIP_FPS, timeout=20)

    frames = bob.frames("video")
    layers = ["full" if f.data in source else "lower" if f.data in lower_units else "other" for f in frames]
    assert "other" not in layers, "every frame is the source's or the lower feed's own bytes"
    runs = [(layer, i) for i, layer in enumerate(layers) if i == 0 or layers[i - 1] != layer]
    assert [layer for layer, _ in runs] == ["full", "lower", "full"], runs
    for layer, first in runs:
        assert has_idr(split_nal_units(frames[first].data)), f"the {layer} layer starts on a keyframe at frame {first}"
    for before, after in zip(frames, frames[1:], strict=False):
        step = (after.timestamp - before.timestamp) & 0xFFFFFFFF
        assert 0 < step < 0x80000000, "RTP time goes forward across the switches"
    # The lower feed's frames carry on the source's clock: a switch skips at most the wait for
    # the target's keyframe (a GOP), never the feeds' own, unrelated, timelines.
    for layer, first in runs[1:]:
        step = (frames[first].timestamp - frames[first - 1].timestamp) & 0xFFFFFFFF
        assert step <= (CLIP_GOP + 3) * FRAME_TICKS, f"the move to {layer} jumps {step / 90_000:.2f} s"

    alice_frames = alice.frames("video")
    assert len(alice_frames) > len(frames) - 10
    assert all(f.data in source for f in alice_frames), "the full layer is the source's bytes"
    assert _layer_children() == [], "no transcoding process"
    stats = hub.stats()
    assert stats["counters"]["layer_switches_down"] == 1 and stats["counters"]["layer_switches_up"] == 1
    lower = stats["lower_layer"]
    assert lower["source"] == "feed" and lower["keyframe_on_request"] is False
    assert lower["resolution"] == "320x180" and lower["frames_out"] > 2 * CLIP_FPS
    assert lower["keyframe_interval_s"] is not None and lower["keyframe_interval_s"] < 1.0
    assert lower["cpu_s"] is not None and lower["cpu_s"] < 2.0, "a demux, not a transcode"
    await alice.close()
    await bob.close()
    await hub.detach_source()
    assert hub.lower is None, "the second feed stops with the source"


async def test_a_second_feed_that_is_bad_or_not_smaller_is_refused_with_the_reason(
    edge: Edge, encoder_pair: tuple[Path, Path], tmp_path: Path  # noqa: F811
) -> None:
    main, lower_clip = encoder_pair
    hub = edge.session_create("s1")
    refusals = [
        (SourceAttach(url=str(main), lower_url="encoder/stream2"), 400, "absolute file path"),
        (SourceAttach(url=str(main), lower_url="ftp://encoder/stream2"), 400, "starts with one of rtsp"),
        (SourceAttach(url=str(main), lower_url=str(main)), 400, "the source itself"),
        (SourceAttach(url=str(main), lower_url=str(tmp_path / "missing.mp4")), 422, "the lower feed: cannot open"),
        (SourceAttach(url=str(lower_clip), lower_url=str(main)), 422, "is not smaller than the source"),
    ]
    for attach, status, reason in refusals:
        with pytest.raises(HubError, match=reason) as refused:
            await hub.attach_source(attach)
        assert refused.value.status == status
        assert hub.source is None and hub.lower is None

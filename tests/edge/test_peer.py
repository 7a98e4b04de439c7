"""Choosing the viewer's H.264 payload type from what a browser really offers."""

from __future__ import annotations

import pytest

from orstream.edge.peer import (
    EdgePeerConnection,
    SdpError,
    accept_simulcast,
    choose_viewer_video,
    offered_simulcast,
    restore_answer_profile,
)

# The H.264 lines Debian's Chromium 156 offers for a receive-only video transceiver.
CHROMIUM_VIDEO = "\r\n".join(
    [
        "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
        "a=group:BUNDLE 0",
        "m=video 9 UDP/TLS/RTP/SAVPF 102 104 108 116 41 42", "c=IN IP4 0.0.0.0", "a=mid:0", "a=recvonly",
        "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx", "a=setup:actpass", "a=rtcp-mux",
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
        "a=rtpmap:102 H264/90000", "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
        "a=rtpmap:104 H264/90000", "a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f",
        "a=rtpmap:108 H264/90000", "a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        "a=rtpmap:116 H264/90000", "a=fmtp:116 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f",
        "a=rtpmap:41 H264/90000", "a=fmtp:41 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=f4001f",
        "a=rtpmap:42 rtx/90000", "a=fmtp:42 apt=41",
        "",
    ]
)


def test_a_4k_high_profile_source_goes_to_chromium_on_its_high_444_payload_type():
    _, choice = choose_viewer_video(CHROMIUM_VIDEO, "640033")
    assert choice is not None
    assert choice.payload_type == 41
    # The payload type's profile, the source's true level (5.1).
    assert choice.answer_profile_level_id == "f40033"


def test_a_main_profile_source_uses_the_exact_main_payload_type():
    _, choice = choose_viewer_video(CHROMIUM_VIDEO, "4d0028")
    assert choice is not None and choice.payload_type == 116 and choice.answer_profile_level_id == "4d0028"


def test_a_constrained_baseline_source_uses_the_baseline_payload_type():
    _, choice = choose_viewer_video(CHROMIUM_VIDEO, "42e01f")
    assert choice is not None and choice.payload_type == 108


def test_a_viewer_offering_only_baseline_cannot_take_a_high_source():
    baseline_only = CHROMIUM_VIDEO.replace("profile-level-id=4d001f", "profile-level-id=42e01f").replace(
        "profile-level-id=f4001f", "profile-level-id=42e01f"
    )
    with pytest.raises(SdpError, match="cannot decode H.264 profile-level-id 640033"):
        choose_viewer_video(baseline_only, "640033")


async def test_the_answer_keeps_chromiums_payload_types_below_96():
    munged, choice = choose_viewer_video(CHROMIUM_VIDEO, "640033")
    pc = EdgePeerConnection()
    try:
        answer = restore_answer_profile(await pc.answer(munged, directions=["sendonly"]), choice)
    finally:
        await pc.close()
    video = [line for line in answer.splitlines() if line.startswith(("m=video", "a=rtpmap", "a=fmtp"))]
    assert video[0].endswith("SAVPF 41 42")
    assert "a=rtpmap:41 H264/90000" in video and "a=fmtp:42 apt=41" in video
    assert "a=fmtp:41 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=f40033" in video


def _simulcast_offer(*lines: str) -> str:
    return CHROMIUM_VIDEO.replace("a=recvonly", "a=sendonly\r\n" + "\r\n".join(lines))


RID_EXTMAP = "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"


def test_a_simulcast_offer_is_taken_full_encoding_first_and_answered_for_both():
    offer = _simulcast_offer(RID_EXTMAP, "a=rid:f send", "a=rid:h send", "a=simulcast:send f;h")
    assert offered_simulcast(offer) == ["f", "h"]
    answer = accept_simulcast(CHROMIUM_VIDEO, ["f", "h"])
    assert "a=rid:f recv\r\na=rid:h recv\r\na=simulcast:recv f;h\r\n" in answer


def test_an_offer_without_simulcast_or_without_rids_in_its_packets_is_one_stream():
    assert offered_simulcast(CHROMIUM_VIDEO) == []
    # no rtp-stream-id extension: the encodings' packets could not be told apart
    assert offered_simulcast(_simulcast_offer("a=rid:f send", "a=rid:h send", "a=simulcast:send f;h")) == []
    # a paused encoding, or one the offer does not describe, is not taken
    assert offered_simulcast(_simulcast_offer(RID_EXTMAP, "a=rid:f send", "a=rid:h send", "a=simulcast:send f;~h")) == []
    assert offered_simulcast(_simulcast_offer(RID_EXTMAP, "a=rid:f send", "a=simulcast:send f;h")) == []
    assert accept_simulcast(CHROMIUM_VIDEO, []) == CHROMIUM_VIDEO

"""Transport-cc feedback and the bandwidth estimate made from it (no network: packets in, figures out)."""

from __future__ import annotations

import struct

import pytest

from orstream.edge.send import _probe_rate
from orstream.edge.twcc import (
    ArrivalLog,
    BandwidthEstimator,
    SendHistory,
    build_feedback,
    parse_feedback,
    split_feedback,
)


def test_feedback_round_trips_arrivals_losses_and_sequence_wrap() -> None:
    arrivals: list[int | None] = [1_000_000, None, 1_000_500, 1_070_000, None, 900_000, 1_200_000]
    packet = build_feedback(sender_ssrc=1, media_ssrc=2, base=65534, reference_us=1_000_000,
                            arrivals=arrivals, feedback_count=3)
    twcc, rest = split_feedback(packet)
    assert rest == b""
    feedback = parse_feedback(twcc[0][8:])
    assert feedback.base == 65534 and feedback.feedback_count == 3
    assert feedback.arrivals == [1.0, None, 1.0005, 1.07, None, 0.9, 1.2]


def test_feedback_in_every_chunk_kind_chromium_sends_is_decoded() -> None:
    # What Chromium writes: a run-length chunk (20 received, small deltas), a one-bit vector
    # (14 symbols: lost, received, ...), a two-bit vector with a large negative delta, a run of
    # 3 lost; deltas follow the chunks in packet order.
    one_bit = 0x8000 | int("01101101101101", 2)
    two_bit = 0xC000 | (1 << 12) | (2 << 10) | (0 << 8) | (1 << 6) | (1 << 4) | (1 << 2) | 1
    chunks = struct.pack("!HHHH", (1 << 13) | 20, one_bit, two_bit, 3)
    small = [4] * 20 + [8] * 9 + [1]
    deltas = bytes(small[:29]) + bytes([1]) + struct.pack("!h", -400) + bytes([2, 2, 2, 2])
    count = 20 + 14 + 7 + 3
    fci = struct.pack("!HHI", 100, count, (5 << 8) | 9) + chunks + deltas
    feedback = parse_feedback(fci)
    assert feedback.base == 100 and feedback.count == count and feedback.feedback_count == 9
    expected: list[float | None] = []
    now = 5 * 64_000
    symbols = [1] * 20 + [int(c) for c in "01101101101101"] + [1, 2, 0, 1, 1, 1, 1] + [0] * 3
    sizes = iter([4] * 20 + [8] * 9 + [1, -400, 2, 2, 2, 2])
    for symbol in symbols:
        if symbol:
            now += next(sizes) * 250
            expected.append(now / 1e6)
        else:
            expected.append(None)
    assert feedback.arrivals == expected
    assert feedback.lost == symbols.count(0)


def test_feedback_is_split_from_the_rest_of_a_compound_packet() -> None:
    receiver_report = bytes([0x80, 201, 0, 1]) + (7).to_bytes(4, "big")
    packet = build_feedback(sender_ssrc=1, media_ssrc=2, base=10, reference_us=0, arrivals=[0, 250], feedback_count=0)
    twcc, rest = split_feedback(receiver_report + packet + receiver_report)
    assert len(twcc) == 1 and rest == receiver_report + receiver_report
    assert split_feedback(receiver_report) == ([], receiver_report)


@pytest.mark.parametrize("fci", [b"", b"\x00\x01\x00\x05\x00\x00\x00\x00", b"\x00\x01\x00\x02\x00\x00\x00\x00\x20\x02"])
def test_truncated_feedback_is_refused(fci: bytes) -> None:
    with pytest.raises(ValueError):
        parse_feedback(fci)


def test_send_history_finds_packets_by_their_16_bit_number_across_a_wrap() -> None:
    history = SendHistory()
    history.next_seq = 65530
    history.note(10, 1200, 1.0)
    history.note(1, 300, 1.5, probe=True)
    assert history.lookup(history.unwrap(65535)) == (1200, 1.0, False)
    assert history.lookup(history.unwrap(3)) == (1200, 1.0, False)  # 65539, past the wrap
    assert history.lookup(history.unwrap(4)) == (300, 1.5, True)
    assert history.lookup(history.unwrap(5)) is None


def feed(estimator: BandwidthEstimator, *, send_bps: float, link_bps: float, seconds: float, loss: float = 0.0,
         start: float = 0.0) -> float:
    """30 frames a second of ``send_bps`` through a link of ``link_bps`` with a queue; feedback every 100 ms."""
    frame_bytes = send_bps / 8 / 30
    packets_per_frame = max(1, round(frame_bytes / 1200))
    queue_free_at = start
    pending: list[tuple[float, float | None, int]] = []
    now = start
    frame = 0
    lost_every = round(1 / loss) if loss else 0
    count = 0
    while now < start + seconds:
        now = start + frame / 30
        for _ in range(packets_per_frame):
            count += 1
            queue_free_at = max(queue_free_at, now) + 1200 * 8 / link_bps
            arrival = None if lost_every and count % lost_every == 0 else queue_free_at + 0.02
            pending.append((now, arrival, 1200))
        frame += 1
        if frame % 3 == 0:
            estimator.on_packets(pending, now)
            pending = []
    return now


def test_a_link_slower_than_the_stream_brings_the_estimate_under_the_link() -> None:
    estimator = BandwidthEstimator(initial_bps=30_000_000)
    feed(estimator, send_bps=25_000_000, link_bps=10_000_000, seconds=3)
    assert estimator.signal == "overuse" or estimator.stats.overuses > 0
    assert estimator.estimate_bps < 10_000_000


def test_a_fast_link_keeps_the_estimate_above_the_stream() -> None:
    estimator = BandwidthEstimator(initial_bps=30_000_000)
    feed(estimator, send_bps=25_000_000, link_bps=100_000_000, seconds=5)
    assert estimator.stats.overuses == 0
    assert estimator.estimate_bps > 27_000_000
    # but never far above what the link was seen to carry
    assert estimator.estimate_bps <= 1.55 * estimator.acked_bps + 100_000


def test_heavy_loss_cuts_the_estimate_and_a_probe_lifts_it() -> None:
    estimator = BandwidthEstimator(initial_bps=30_000_000)
    now = feed(estimator, send_bps=25_000_000, link_bps=100_000_000, seconds=2, loss=0.3)
    assert estimator.estimate_bps < 20_000_000
    now = feed(estimator, send_bps=2_500_000, link_bps=100_000_000, seconds=2, start=now + 0.1)
    low = estimator.estimate_bps
    # sending less than the estimate (the lower layer) neither raises it past what was seen nor lowers it
    assert 2_500_000 < low < 20_000_000
    estimator.probe_result(40_000_000, now)
    assert estimator.estimate_bps == 40_000_000 > low


def test_a_probe_is_measured_after_the_burst_a_token_bucket_lets_through() -> None:
    # 64 kB arrive at once (the bucket), the rest at 10 Mbit/s
    arrivals = [(0.0, 1200)] * 53 + [(i * 1200 * 8 / 10e6, 1200) for i in range(1, 58)]
    assert 8e6 < _probe_rate(arrivals) < 12e6
    assert _probe_rate(arrivals[:10]) == 0.0


def _parsed(packets: list[bytes]) -> list:
    out = []
    for packet in packets:
        twcc, rest = split_feedback(packet)
        assert rest == b"" and len(twcc) == 1
        out.append(parse_feedback(twcc[0][8:]))
    return out


def test_arrival_log_reports_every_number_in_order_with_losses_across_a_wrap() -> None:
    log = ArrivalLog()
    for seq, arrival in ((65534, 1_000_000), (65535, 1_001_000), (1, 1_003_000), (0, 1_004_000), (3, 1_010_000)):
        log.note(seq, arrival)
    (feedback,) = _parsed(log.feedback(sender_ssrc=1, media_ssrc=2))
    assert feedback.base == 65534
    assert feedback.arrivals == [1.0, 1.001, 1.004, 1.003, None, 1.01]
    # the next feedback starts after the last number reported; a late packet stays lost
    log.note(2, 1_011_000)
    log.note(4, 1_012_000)
    (feedback,) = _parsed(log.feedback(sender_ssrc=1, media_ssrc=2))
    assert feedback.base == 4 and feedback.arrivals == [1.012] and feedback.feedback_count == 1
    assert log.feedback(sender_ssrc=1, media_ssrc=2) == []


def test_arrival_log_splits_a_burst_into_packets_under_the_mtu() -> None:
    log = ArrivalLog()
    for seq in range(1000):
        log.note(seq, 5_000_000 + seq * 100)
    packets = log.feedback(sender_ssrc=1, media_ssrc=2)
    assert all(len(p) < 1200 for p in packets)
    parsed = _parsed(packets)
    assert [f.base for f in parsed] == [0, 400, 800]
    arrivals = [a for f in parsed for a in f.arrivals]
    assert len(arrivals) == 1000 and None not in arrivals
    assert arrivals[999] == pytest.approx(5.0999, abs=0.00025)

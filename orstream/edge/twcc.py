"""Transport-wide congestion control: what a viewer's link can carry, from its own feedback.

``RtpStreamSender`` (send.py) numbers every video packet it sends to a viewer with a
transport-wide sequence number (draft-holmer-rmcat-transport-wide-cc-extensions-01, written in
place in the send path) and notes each GSO batch, not each packet, in a ``SendHistory``. The
viewer's browser answers every ~50-100 ms with transport-cc feedback (RTCP RTPFB FMT 15: which
packets arrived and when); ``parse_feedback`` decodes one, and ``BandwidthEstimator`` turns a
feedback's worth of packets into an estimate in the spirit of Google Congestion Control:

- delay-based: packets leave in groups (a frame's batches, sent together); the change of the
  one-way delay between groups is accumulated, smoothed, and its trend over the last groups
  (a least-squares slope) compared with an adaptive threshold says overuse (a queue is
  building), normal, or underuse; overuse cuts the rate to 0.85 of what the viewer received;
- loss-based: over 10 % lost cuts the rate by half the loss, under 2 % lets it grow;
- otherwise the rate grows by 8 % a second, never above 1.5 times what was acknowledged, so
  an estimate is always backed by what the link really delivered;
- probes (``probe_result``): a short cluster of redundant packets sent faster than the media,
  whose arrival rate shows room the media alone cannot show.

Everything here runs per feedback packet (about ten a second per viewer), never per media
packet, and never touches the network itself.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from dataclasses import dataclass, field

import numpy as np

TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
RTPFB = 205
FMT_TWCC = 15

# Packets sent within this of each other form one group for the delay gradient (libwebrtc's
# burst window); a frame's GSO batches leave together, so a frame is about one group.
GROUP_WINDOW = 0.005
TREND_WINDOW = 20
TREND_SMOOTHING = 0.9
TREND_GAIN = 4.0
THRESHOLD_INIT = 12.5  # ms
THRESHOLD_MIN, THRESHOLD_MAX = 6.0, 600.0
K_UP, K_DOWN = 0.0087, 0.039
OVERUSE_TIME = 0.010
BETA = 0.85
INCREASE_PER_S = 1.08
ACKED_WINDOW = 1.0
LOSS_HIGH, LOSS_LOW = 0.10, 0.02


@dataclass(frozen=True, slots=True)
class Feedback:
    """One transport-cc feedback: of the packets ``base .. base + count - 1``, those where
    ``received`` is set arrived, in order, at ``arrival_us`` (microseconds on the receiver's
    clock, one entry per received packet); ``lost`` did not."""

    base: int
    count: int
    received: np.ndarray  # bool, one per packet
    arrival_us: np.ndarray  # int64, one per received packet
    lost: int
    feedback_count: int

    @property
    def arrivals(self) -> list[float | None]:
        """Seconds, or None for a packet that did not arrive (tests and logs, not the hot path)."""
        times = iter(self.arrival_us.tolist())
        return [next(times) / 1e6 if ok else None for ok in self.received.tolist()]


def _chunk_tables() -> tuple[list[bytes], list[bytes], list[bytes]]:
    """The symbols of every one-bit and two-bit status vector chunk by its low 14 bits, one byte
    each, and a run of each symbol: decoding a chunk is one list index."""
    values = np.arange(1 << 14, dtype=np.int32)[:, None]
    one_bit = ((values >> (13 - np.arange(14))) & 1).astype(np.uint8)
    two_bit = ((values >> (12 - 2 * np.arange(7))) & 3).astype(np.uint8)
    return [row.tobytes() for row in one_bit], [row.tobytes() for row in two_bit], [bytes([i]) for i in range(4)]


_ONE_BIT, _TWO_BIT, _RUN = _chunk_tables()


def parse_feedback(fci: bytes) -> Feedback:
    """Decode the FCI of a transport-cc feedback (after the two SSRCs). Raises ValueError.

    No Python work per packet: a table lookup per status chunk (7 to 8,191 packets each) gives
    the packets' symbols as bytes, and numpy turns the deltas into arrival times.
    """
    end = len(fci)
    if end < 8:
        raise ValueError("transport-cc feedback is too short")
    base, count, ref_and_count = struct.unpack_from("!HHI", fci, 0)
    reference = ref_and_count >> 8
    if reference & 0x800000:
        reference -= 1 << 24
    parts: list[bytes] = []
    pos = 8
    have = 0
    while have < count:
        if pos + 2 > end:
            raise ValueError("transport-cc feedback ends inside its status chunks")
        chunk = (fci[pos] << 8) | fci[pos + 1]
        pos += 2
        if chunk & 0x8000 == 0:  # run length: one symbol repeated
            length = chunk & 0x1FFF
            parts.append(_RUN[chunk >> 13] * length)
            have += length
        elif chunk & 0x4000 == 0:  # 14 one-bit symbols
            parts.append(_ONE_BIT[chunk & 0x3FFF])
            have += 14
        else:  # 7 two-bit symbols
            parts.append(_TWO_BIT[chunk & 0x3FFF])
            have += 7
    symbols = b"".join(parts)[:count]
    if 3 in symbols:
        raise ValueError("transport-cc feedback has a reserved status symbol")
    small = symbols.count(1)
    large = symbols.count(2)
    if pos + small + 2 * large > end:
        raise ValueError("transport-cc feedback ends inside its deltas")
    status = np.frombuffer(symbols, dtype=np.uint8)
    if not large:  # the usual case: every delta one unsigned byte, in order
        deltas = np.frombuffer(fci, dtype=np.uint8, count=small, offset=pos).astype(np.int64)
    else:
        # A received packet's delta takes as many bytes as its symbol says (1: unsigned, 2: signed).
        widths = status[status != 0].astype(np.int64)
        starts = pos + np.cumsum(widths) - widths
        raw = np.frombuffer(fci, dtype=np.uint8).astype(np.int64)
        deltas = raw[starts]
        wide = widths == 2
        value = (deltas[wide] << 8) | raw[starts[wide] + 1]
        deltas[wide] = np.where(value >= 0x8000, value - 0x10000, value)
    arrival_us = reference * 64_000 + 250 * np.cumsum(deltas)
    return Feedback(base=base, count=count, received=status != 0, arrival_us=arrival_us,
                    lost=count - small - large, feedback_count=ref_and_count & 0xFF)


def build_feedback(*, sender_ssrc: int, media_ssrc: int, base: int, reference_us: int,
                   arrivals: list[int | None], feedback_count: int) -> bytes:
    """A transport-cc feedback RTCP packet (what a browser sends); ``arrivals`` in microseconds.

    Used where the edge receives (a WebRTC publisher's packets) and by tests.
    """
    reference = (reference_us // 64_000) & 0xFFFFFF
    last = (reference_us // 64_000) * 64_000
    symbols: list[int] = []
    deltas = bytearray()
    for arrival in arrivals:
        if arrival is None:
            symbols.append(0)
            continue
        delta = round((arrival - last) / 250)
        if 0 <= delta <= 255:
            symbols.append(1)
            deltas.append(delta)
        else:
            delta = max(-32768, min(32767, delta))
            symbols.append(2)
            deltas += struct.pack("!h", delta)
        last += delta * 250
    chunks = bytearray()
    for i in range(0, len(symbols), 7):
        part = symbols[i : i + 7]
        part += [0] * (7 - len(part))
        value = 0xC000
        for j, symbol in enumerate(part):
            value |= symbol << (12 - 2 * j)
        chunks += struct.pack("!H", value)
    body = struct.pack("!IIHHI", sender_ssrc, media_ssrc, base & 0xFFFF, len(arrivals),
                       (reference << 8) | (feedback_count & 0xFF))
    body += bytes(chunks) + bytes(deltas)
    body += bytes(-len(body) % 4)
    return struct.pack("!BBH", 0x80 | FMT_TWCC, RTPFB, len(body) // 4) + body


def split_feedback(data: bytes) -> tuple[list[bytes], bytes]:
    """Split a compound RTCP datagram into its transport-cc packets (each from the sender SSRC
    on) and everything else, left as it was for aiortc to parse."""
    twcc: list[bytes] = []
    rest: list[bytes] = []
    pos = 0
    end = len(data)
    while pos + 4 <= end:
        length = (struct.unpack_from("!H", data, pos + 2)[0] + 1) * 4
        packet = data[pos : pos + length]
        if data[pos + 1] == RTPFB and data[pos] & 0x1F == FMT_TWCC and len(packet) == length:
            twcc.append(packet[4:])
        else:
            rest.append(packet)
        pos += length
    return twcc, b"".join(rest) if twcc else data


class ArrivalLog:
    """When each transport-wide numbered packet from a WebRTC publisher arrived, for the
    transport-cc feedback the edge sends it back (what Chromium's congestion control acts on:
    without it a publisher ramps by about 8 % a second and needs a minute to reach 4K quality).

    ``note`` costs a dict store per packet; ``feedback`` runs every ~50 ms and reports, in
    order, every number from the first not yet reported up to the highest seen. A packet that
    arrives after its number was reported lost stays lost, as in libwebrtc's receiver.
    """

    __slots__ = ("_arrivals", "_next", "_highest", "_count")

    MAX_PER_FEEDBACK = 400  # ~1,000 bytes of status chunks and deltas: one packet under the MTU
    MAX_BACKLOG = 4000  # after a stall, older numbers are not worth reporting

    def __init__(self) -> None:
        self._arrivals: dict[int, int] = {}  # unwrapped number -> arrival in microseconds
        self._next: int | None = None
        self._highest: int | None = None
        self._count = 0

    def note(self, seq16: int, arrival_us: int) -> None:
        highest = self._highest
        if highest is None:
            seq = seq16
        else:
            seq = highest + ((seq16 - highest + 0x8000) & 0xFFFF) - 0x8000
        if highest is None or seq > highest:
            self._highest = seq
        if seq not in self._arrivals:
            self._arrivals[seq] = arrival_us

    def feedback(self, *, sender_ssrc: int, media_ssrc: int) -> list[bytes]:
        """The transport-cc feedback packets for everything noted since the last call."""
        arrivals, self._arrivals = self._arrivals, {}
        if not arrivals or self._highest is None:
            return []
        end = self._highest
        start = min(arrivals) if self._next is None else self._next
        start = max(start, end - self.MAX_BACKLOG)
        packets: list[bytes] = []
        while start <= end:
            stop = min(end, start + self.MAX_PER_FEEDBACK - 1)
            span = [arrivals.get(seq) for seq in range(start, stop + 1)]
            received = [t for t in span if t is not None]
            if received:
                packets.append(
                    build_feedback(sender_ssrc=sender_ssrc, media_ssrc=media_ssrc, base=start & 0xFFFF,
                                   reference_us=received[0], arrivals=span, feedback_count=self._count)
                )
                self._count = (self._count + 1) & 0xFF
            start = stop + 1
        self._next = end + 1
        return packets


class SendHistory:
    """When each transport-wide sequence number left and its size, in preallocated arrays indexed
    by number & ``MASK``: noting a batch is two slice stores, and a feedback's packets are looked
    up all at once (``window``)."""

    __slots__ = ("sent", "sizes", "next_seq")

    SIZE = 8192  # packets: ~3 s of a 4K30 layer, far longer than any feedback takes to come back
    MASK = SIZE - 1

    def __init__(self) -> None:
        self.sent = np.zeros(self.SIZE, dtype=np.float64)  # send time (time.monotonic)
        # bytes of each packet, negative for a probe's, 0 for a number never sent
        self.sizes = np.zeros(self.SIZE, dtype=np.int32)
        self.next_seq = 1

    def note(self, count: int, size: int, when: float, probe: bool = False) -> int:
        """Record ``count`` packets of ``size`` bytes sent at ``when``; returns the first's number."""
        first = self.next_seq
        self.next_seq = first + count
        lo = first & self.MASK
        hi = lo + count
        value = -size if probe else size
        if hi <= self.SIZE:
            self.sent[lo:hi] = when
            self.sizes[lo:hi] = value
        else:  # the batch wraps around the end of the arrays
            self.sent[lo:] = when
            self.sizes[lo:] = value
            self.sent[: hi - self.SIZE] = when
            self.sizes[: hi - self.SIZE] = value
        return first

    def unwrap(self, seq16: int) -> int:
        """The full number of a 16-bit one, taken as the nearest to what was sent last."""
        last = self.next_seq - 1
        return last + ((seq16 - last + 0x8000) & 0xFFFF) - 0x8000

    def window(self, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(send times, sizes) of the unwrapped numbers ``first .. first + count - 1``; size 0
        where a number is not known (never sent, or so long ago that a newer one took its slot),
        negative where it was a probe's."""
        lo = first & self.MASK
        if lo + count <= self.SIZE and first >= max(1, self.next_seq - self.SIZE) and first + count <= self.next_seq:
            return self.sent[lo : lo + count], self.sizes[lo : lo + count]  # views: the usual case
        seqs = np.arange(first, first + count, dtype=np.int64)
        index = seqs & self.MASK
        sizes = self.sizes[index]  # a copy: fancy indexing
        sizes[(seqs >= self.next_seq) | (seqs < max(1, self.next_seq - self.SIZE))] = 0
        return self.sent[index], sizes

    def lookup(self, seq: int) -> tuple[int, float, bool] | None:
        """(bytes, send time, probe) of one unwrapped number still known (tests, logs)."""
        sent, sizes = self.window(seq, 1)
        size = int(sizes[0])
        if size == 0:
            return None
        return abs(size), float(sent[0]), size < 0


@dataclass
class _Group:
    send: float
    arrival: float
    size: int


@dataclass
class EstimatorStats:
    feedbacks: int = 0
    packets_acked: int = 0
    packets_lost: int = 0
    overuses: int = 0
    probes: int = 0
    state: str = "normal"


@dataclass
class BandwidthEstimator:
    """GCC-style estimate of one viewer's path, fed one transport-cc feedback at a time."""

    initial_bps: float = 30_000_000
    min_bps: float = 150_000
    max_bps: float = 200_000_000
    stats: EstimatorStats = field(default_factory=EstimatorStats)

    def __post_init__(self) -> None:
        self.rate = self.initial_bps
        self.loss_rate = self.initial_bps
        self._group: _Group | None = None
        self._prev: _Group | None = None
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._window_x: deque[float] = deque(maxlen=TREND_WINDOW)  # arrival (ms since the first)
        self._window_y: deque[float] = deque(maxlen=TREND_WINDOW)  # smoothed accumulated delay
        self._first_arrival: float | None = None
        self._threshold = THRESHOLD_INIT
        self._last_threshold_update: float | None = None
        self._overuse_since: float | None = None
        self._prev_trend = 0.0
        self._signal = "normal"
        self._last_decrease = -math.inf
        self._last_update: float | None = None
        # per feedback, over the last ACKED_WINDOW: (first arrival, last arrival, bytes, packets)
        self._acked: deque[tuple[float, float, int, int]] = deque()
        self._acked_bytes = 0
        self._acked_packets = 0
        self._loss_window: deque[tuple[float, int, int]] = deque()  # (now, received, lost)
        self._loss_got = 0
        self._loss_missed = 0
        self.loss_fraction = 0.0
        self.delay_ms = 0.0  # arrival delay of the latest group relative to the least seen

    # --- input -----------------------------------------------------------------------------

    def on_packets(self, packets: list[tuple[float, float | None, int]], now: float) -> None:
        """One feedback's packets as (send time, arrival time or None, bytes), in send order."""
        got = [p for p in packets if p[1] is not None]
        self.on_feedback(np.array([p[0] for p in got], dtype=np.float64),
                         np.array([p[1] for p in got], dtype=np.float64),
                         np.array([p[2] for p in got], dtype=np.int64), len(packets) - len(got), now)

    def on_feedback(self, send: np.ndarray, arrival: np.ndarray, size: np.ndarray, lost: int, now: float) -> None:
        """One feedback: the packets that arrived as arrays in send order (send time, arrival
        time, bytes) and how many did not. A fixed number of numpy operations plus a little per
        group of packets (about one per frame), never work per packet in Python."""
        received = len(arrival)
        if received:
            nbytes = int(size.sum())
            self._acked.append((float(arrival[0]), float(arrival[-1]), nbytes, received))
            self._acked_bytes += nbytes
            self._acked_packets += received
            self._add_groups(send, arrival, size)
        self.stats.feedbacks += 1
        self.stats.packets_acked += received
        self.stats.packets_lost += lost
        window = self._loss_window
        window.append((now, received, lost))
        self._loss_got += received
        self._loss_missed += lost
        while window and now - window[0][0] > 1.0:
            _, got, missed = window.popleft()
            self._loss_got -= got
            self._loss_missed -= missed
        total = self._loss_got + self._loss_missed
        self.loss_fraction = self._loss_missed / total if total else 0.0
        acked = self._acked
        if acked:
            newest = acked[-1][1]
            # whole feedbacks leave the window, so its span and its bytes always match
            while len(acked) > 1 and newest - acked[0][1] > ACKED_WINDOW:
                _, _, nbytes, count = acked.popleft()
                self._acked_bytes -= nbytes
                self._acked_packets -= count
        self._update(now)

    def probe_result(self, bps: float, now: float) -> None:
        """A probe cluster arrived at ``bps``: room above the media rate, measured."""
        self.stats.probes += 1
        if self._signal != "overuse" and bps > self.rate:
            self.rate = min(self.max_bps, bps)
            self.loss_rate = max(self.loss_rate, self.rate)

    # --- delay gradient ---------------------------------------------------------------------

    def _add_groups(self, send: np.ndarray, arrival: np.ndarray, size: np.ndarray) -> None:
        """Packets sent within GROUP_WINDOW of the one before form a group (the first may join the
        group left open by the previous feedback); every group but the newest is closed."""
        breaks = np.flatnonzero(np.diff(send) > GROUP_WINDOW)
        if len(breaks):
            starts = np.concatenate(([0], breaks + 1))
            groups = list(zip(np.maximum.reduceat(send, starts).tolist(),
                              np.maximum.reduceat(arrival, starts).tolist(),
                              np.add.reduceat(size, starts).tolist(), strict=True))
        else:  # all of it one group
            groups = [(float(send[-1]), float(arrival.max()), int(size.sum()))]
        group = self._group
        first_send, first_arrival, first_size = groups[0]
        if group is not None and float(send[0]) - group.send <= GROUP_WINDOW:
            group.send = max(group.send, first_send)
            group.arrival = max(group.arrival, first_arrival)
            group.size += first_size
        else:
            if group is not None:
                self._close_group(group)
            group = _Group(first_send, first_arrival, first_size)
        for group_send, group_arrival, group_size in groups[1:]:
            self._close_group(group)
            group = _Group(group_send, group_arrival, group_size)
        self._group = group

    def _close_group(self, group: _Group) -> None:
        prev, self._prev = self._prev, group
        if prev is None:
            self._first_arrival = group.arrival
            return
        send_delta = group.send - prev.send
        arrival_delta = group.arrival - prev.arrival
        if arrival_delta < 0 or send_delta < 0:
            return  # reordered: no gradient from it
        variation_ms = (arrival_delta - send_delta) * 1000
        self._accumulated += variation_ms
        self.delay_ms = max(0.0, self.delay_ms + variation_ms)
        self._smoothed = TREND_SMOOTHING * self._smoothed + (1 - TREND_SMOOTHING) * self._accumulated
        assert self._first_arrival is not None
        xs, ys = self._window_x, self._window_y
        xs.append((group.arrival - self._first_arrival) * 1000)
        ys.append(self._smoothed)
        trend = _slope(xs, ys) if len(xs) == TREND_WINDOW else 0.0
        self._detect(trend, len(xs), arrival_delta, group.arrival)

    def _detect(self, trend: float, deltas: int, arrival_delta: float, arrival: float) -> None:
        modified = min(deltas, 60) * trend * TREND_GAIN
        if modified > self._threshold:
            if self._overuse_since is None:
                self._overuse_since = arrival - arrival_delta / 2
            if arrival - self._overuse_since >= OVERUSE_TIME and trend >= self._prev_trend:
                if self._signal != "overuse":
                    self.stats.overuses += 1
                self._signal = "overuse"
        elif modified < -self._threshold:
            self._overuse_since = None
            self._signal = "underuse"
        else:
            self._overuse_since = None
            self._signal = "normal"
        self._prev_trend = trend
        # The threshold follows the trend slowly upwards and faster downwards, so a path with
        # naturally jittery delay does not read as constant overuse (GCC's adaptive threshold).
        if self._last_threshold_update is None:
            self._last_threshold_update = arrival
        step_ms = min((arrival - self._last_threshold_update) * 1000, 100.0)
        self._last_threshold_update = arrival
        if abs(modified) <= self._threshold + 15:
            k = K_DOWN if abs(modified) < self._threshold else K_UP
            self._threshold += k * (abs(modified) - self._threshold) * step_ms
            self._threshold = min(THRESHOLD_MAX, max(THRESHOLD_MIN, self._threshold))

    # --- rate control -------------------------------------------------------------------

    @property
    def acked_bps(self) -> float:
        if self._acked_packets < 2:
            return 0.0
        span = max(self._acked[-1][1] - self._acked[0][0], 0.1)
        return self._acked_bytes * 8 / span

    @property
    def signal(self) -> str:
        return self._signal

    def _update(self, now: float) -> None:
        elapsed = 0.0 if self._last_update is None else min(now - self._last_update, 1.0)
        self._last_update = now
        acked = self.acked_bps
        cap = 1.5 * acked + 100_000 if acked else self.max_bps
        if self._signal == "overuse":
            if now - self._last_decrease > 0.2 and acked:
                self.rate = min(self.rate, BETA * acked)
                self._last_decrease = now
        elif self._signal == "normal":
            if self.rate < cap:
                self.rate = min(self.rate * INCREASE_PER_S**elapsed, cap)
        # loss-based bound
        loss = self.loss_fraction
        if loss > LOSS_HIGH:
            if now - self._last_decrease > 0.2:
                # Heavy loss on a congested link: what got through is the link's measure; GCC's
                # (1 - loss/2) of it keeps the estimate under it until the loss stops.
                base = acked or self.loss_rate
                self.loss_rate = min(self.loss_rate, max(base * (1 - 0.5 * loss), 0.5 * base))
                self._last_decrease = now
        elif loss < LOSS_LOW and self.loss_rate < cap:
            self.loss_rate = min(self.loss_rate * INCREASE_PER_S**elapsed, cap)
        self.rate = max(self.min_bps, min(self.rate, self.max_bps))
        self.loss_rate = max(self.min_bps, min(self.loss_rate, self.max_bps))
        self.stats.state = self._signal

    @property
    def estimate_bps(self) -> float:
        return min(self.rate, self.loss_rate)


def _slope(xs: deque[float], ys: deque[float]) -> float:
    """Least-squares slope of ys over xs."""
    n = len(xs)
    mean_x = sum(xs) / n
    mean_y = sum(ys) / n
    num = den = 0.0
    for x, y in zip(xs, ys, strict=True):
        dx = x - mean_x
        num += dx * (y - mean_y)
        den += dx * dx
    return num / den if den else 0.0

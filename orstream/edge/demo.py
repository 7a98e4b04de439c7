"""Synthetic demo and test clips: a 4K H.264 + Opus MP4 with known events in it.

The demo site (`make run`) calls `generate` once to create var/demo-4k.mp4 and ingest loops it;
the edge tests call it at small sizes to get sources with a known frame count, GOP, a white flash
and a loud beep at chosen instants (for A/V sync checks).

What it never does: read a camera or a patient's media, or depend on numpy (planes are built from
bytes, which is also faster than drawing pixel by pixel). It is an offline tool, not used on the
forwarding path.

The stream is shaped like what a surgical camera encoder should send to the edge: H.264 High
profile, no B-frames (pts == dts, so frames can be forwarded as they are), a keyframe every
`gop_seconds` and none in between (scene cut off, so a flash does not add an IDR), rate-controlled
with a one-second VBV so bursts stay bounded, and Opus 48 kHz audio in 20 ms packets.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import random
import sys
import time
from array import array
from collections.abc import Sequence
from fractions import Fraction

import av

AUDIO_RATE = 48_000
# 20 ms, what WebRTC sends; libopus' default frame size as well.
AUDIO_FRAME_SAMPLES = 960
TONE_HZ = 440.0
# About -30 dBFS: audible, clearly below a beep, so a threshold finds the beep onset.
TONE_AMPLITUDE = 0.03
BEEP_HZ = 1_000.0
BEEP_AMPLITUDE = 0.7
BEEP_SECONDS = 0.2
# Limited-range video levels: white is 235, black 16, neutral chroma 128.
WHITE = 235
BLACK = 16
# Pattern luma stays in 16..180, so a flash frame (235 everywhere) stands out by its mean alone.
PATTERN_MAX_LUMA = 180
NOISE_CENTER = 110
NOISE_AMPLITUDE = 12
# x264 preset: "superfast" keeps CABAC and 8x8 transforms, so the stream is High profile;
# "ultrafast" would silently fall back to Constrained Baseline.
# (ultrafast with cabac=1:8x8dct=1 is also High and ~20 % faster; superfast is the standard
# preset and still writes 10 s of 4K30 in about 20 s on two cores.)
X264_PRESET = "superfast"

# Seven-segment layout on a 3 x 5 cell grid: segment name -> (col0, row0, col1, row1) inclusive.
_SEGMENTS: dict[str, tuple[int, int, int, int]] = {
    "a": (0, 0, 2, 0),
    "b": (2, 0, 2, 2),
    "c": (2, 2, 2, 4),
    "d": (0, 4, 2, 4),
    "e": (0, 2, 0, 4),
    "f": (0, 0, 0, 2),
    "g": (0, 2, 2, 2),
}
_DIGIT_SEGMENTS = ["abcdef", "bc", "abdeg", "abcdg", "bcfg", "acdfg", "acdefg", "abc", "abcdefg", "abcdfg"]
_COUNTER_DIGITS = 6


def generate(
    path: pathlib.Path,
    *,
    width: int = 3840,
    height: int = 2160,
    fps: int = 30,
    seconds: float = 10.0,
    bitrate: int = 25_000_000,
    gop_seconds: float = 1.0,
    flash_at: Sequence[float] = (),
    beep_at: Sequence[float] = (),
) -> pathlib.Path:
    """Write an MP4 test clip and return its path.

    Video: H.264 High, yuv420p, `fps` constant, no B-frames, IDR every `gop_seconds`, a moving
    bar pattern with a box and a frame counter; frame i (pts i/fps) is full white when some
    `flash_at` time rounds to it. Audio: Opus 48 kHz mono, a quiet 440 Hz tone, with a loud
    1 kHz beep of 0.2 s starting at the exact sample of each `beep_at` time.
    """
    if width % 2 or height % 2:
        raise ValueError("width and height must be even for yuv420p")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    total_frames = round(seconds * fps)
    total_samples = round(seconds * AUDIO_RATE)
    flash_frames = {math.floor(t * fps + 0.5) for t in flash_at}  # nearest frame, halves up
    beep_starts = sorted(round(t * AUDIO_RATE) for t in beep_at)
    gop = max(1, round(gop_seconds * fps))

    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width = width
        video.height = height
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = Fraction(1, fps)
        video.codec_context.gop_size = gop
        video.codec_context.bit_rate = bitrate
        video.codec_context.options = {
            "preset": X264_PRESET,
            "tune": "zerolatency",
            "profile": "high",
            # One-second VBV: the edge sizes its buffers for bursts of about this much.
            "maxrate": str(bitrate),
            "bufsize": str(bitrate),
            # bframes=0: pts == dts, frames forwardable in arrival order. scenecut=0 and
            # min-keyint=keyint: IDRs exactly every GOP, also across flash frames.
            "x264-params": f"bframes=0:scenecut=0:keyint={gop}:min-keyint={gop}",
        }
        audio = container.add_stream("libopus", rate=AUDIO_RATE)
        audio.codec_context.layout = "mono"
        audio.codec_context.format = "s16"

        painter = _Painter(width, height)
        audio_frames = _audio_frames(total_samples, beep_starts)
        next_audio = next(audio_frames, None)
        # Interleave by time so the muxer never has to buffer seconds of one stream.
        for index in range(total_frames):
            frame = painter.paint(index, flash=index in flash_frames)
            frame.pts = index
            container.mux(video.encode(frame))
            while next_audio is not None and next_audio.pts * fps <= index * AUDIO_RATE:
                container.mux(audio.encode(next_audio))
                next_audio = next(audio_frames, None)
        while next_audio is not None:
            container.mux(audio.encode(next_audio))
            next_audio = next(audio_frames, None)
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return path


class _Painter:
    """Builds yuv420p frames from precomputed byte rows: a few memcpy-sized joins per plane."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        probe = av.VideoFrame(width, height, "yuv420p")
        self.line_sizes = [plane.line_size for plane in probe.planes]
        # Eight bars per screen width; each row is the pattern repeated twice so that any shift
        # within one period is a plain slice.
        self.period = max(8, width // 2)
        self.speed = max(1, width // 240)  # crosses a period in about four seconds at 30 fps
        self.luma_row = _bars_row(self.period, 2 * self.period + self.line_sizes[0], _luma_level)
        self.u_row = _bars_row(self.period // 2, self.period + self.line_sizes[1], _u_level)
        self.v_row = _bars_row(self.period // 2, self.period + self.line_sizes[2], _v_level)
        self.flash = [
            bytes([WHITE]) * (self.line_sizes[0] * height),
            bytes([128]) * (self.line_sizes[1] * (height // 2)),
            bytes([128]) * (self.line_sizes[2] * (height // 2)),
        ]
        # Digits and the box are drawn into luma only; their size scales with the picture.
        self.cell = max(2, height // 60)
        self.glyphs = [_glyph(d, self.cell) for d in range(10)]
        self.box = max(4, height // 8)
        self.box_row = bytes([PATTERN_MAX_LUMA]) * self.box
        # A band of fresh low-amplitude noise every frame, like a camera sensor's: motion search
        # cannot predict it, so the encoder spends its bitrate there and the clip has a real 4K
        # bitrate (a clean synthetic pattern alone compresses to well under 1 Mbit/s). The pool
        # is read at a random offset per frame: one memcpy, no per-pixel work.
        self.noise_top = (height // 3) * self.line_sizes[0]
        self.noise_length = (height // 3) * self.line_sizes[0]
        self.noise_pool = _noise_pool(3 * self.noise_length)
        self.random = random.Random(width * height)

    def paint(self, index: int, *, flash: bool) -> av.VideoFrame:
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        if flash:
            for plane, data in zip(frame.planes, self.flash, strict=True):
                plane.update(data)
            return frame
        shift = (index * self.speed) % self.period
        y_stride, u_stride, v_stride = self.line_sizes
        luma = bytearray(self.luma_row[shift : shift + y_stride] * self.height)
        offset = self.random.randrange(len(self.noise_pool) - self.noise_length)
        luma[self.noise_top : self.noise_top + self.noise_length] = self.noise_pool[
            offset : offset + self.noise_length
        ]
        self._draw_box(luma, index, y_stride)
        self._draw_counter(luma, index, y_stride)
        frame.planes[0].update(luma)  # type: ignore[arg-type]  # any buffer works; the stub says bytes
        half = shift // 2
        frame.planes[1].update(self.u_row[half : half + u_stride] * (self.height // 2))
        frame.planes[2].update(self.v_row[half : half + v_stride] * (self.height // 2))
        return frame

    def _draw_box(self, luma: bytearray, index: int, stride: int) -> None:
        # A box bouncing diagonally gives motion in both directions, not just a pan.
        span_x = self.width - self.box
        span_y = self.height - self.box
        x = _bounce(index * self.speed, span_x)
        y = _bounce(index * self.speed, span_y)
        for row in range(y, y + self.box):
            start = row * stride + x
            luma[start : start + self.box] = self.box_row

    def _draw_counter(self, luma: bytearray, index: int, stride: int) -> None:
        text = str(index % 10**_COUNTER_DIGITS).rjust(_COUNTER_DIGITS, "0")
        glyph_width = 4 * self.cell
        left = self.cell * 2
        top = self.cell * 2
        # Dark backing plate so digits read on any bar.
        plate = bytes([BLACK]) * (glyph_width * _COUNTER_DIGITS + self.cell)
        for row in range(top - self.cell, top + 6 * self.cell):
            start = row * stride + left - self.cell
            luma[start : start + len(plate)] = plate
        for position, char in enumerate(text):
            rows = self.glyphs[int(char)]
            x = left + position * glyph_width
            for offset, row_bytes in enumerate(rows):
                start = (top + offset) * stride + x
                luma[start : start + len(row_bytes)] = row_bytes


def _noise_pool(length: int) -> bytes:
    """Random bytes mapped to mid-grey +- NOISE_AMPLITUDE (bytes.translate runs in C)."""
    levels = range(NOISE_CENTER - NOISE_AMPLITUDE, NOISE_CENTER + NOISE_AMPLITUDE + 1)
    table = bytes(levels[i % len(levels)] for i in range(256))
    return random.Random(length).randbytes(length).translate(table)


def _bounce(travel: int, span: int) -> int:
    if span <= 0:
        return 0
    phase = travel % (2 * span)
    return phase if phase < span else 2 * span - phase


def _luma_level(bar: int) -> int:
    return BLACK + (bar * (PATTERN_MAX_LUMA - BLACK)) // 7


def _u_level(bar: int) -> int:
    return (64, 96, 128, 160, 192, 160, 128, 96)[bar]


def _v_level(bar: int) -> int:
    return (192, 160, 128, 96, 64, 96, 128, 160)[bar]


def _bars_row(period: int, length: int, level: object) -> bytes:
    """A row of 8 bars per `period` pixels, repeated to `length` bytes."""
    assert callable(level)
    bar_width = max(1, period // 8)
    one_period = bytearray()
    for bar in range(8):
        one_period += bytes([level(bar)]) * bar_width
    one_period = one_period[:period].ljust(period, bytes([level(7)]))
    repeats = length // period + 1
    return bytes(one_period * repeats)[:length]


def _glyph(digit: int, cell: int) -> list[bytes]:
    """Rows (5 cells high, 3 wide plus a blank column) of a seven-segment digit."""
    lit = [[False] * 4 for _ in range(5)]
    for segment in _DIGIT_SEGMENTS[digit]:
        c0, r0, c1, r1 = _SEGMENTS[segment]
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                lit[r][c] = True
    rows: list[bytes] = []
    for cells in lit:
        row = b"".join(bytes([WHITE if on else BLACK]) * cell for on in cells)
        rows.extend([row] * cell)
    return rows


def _audio_frames(total_samples: int, beep_starts: Sequence[int]):  # type: ignore[no-untyped-def]
    """Yield 20 ms mono s16 AudioFrames: the tone, with beeps mixed in at exact sample offsets."""
    beep_length = round(BEEP_SECONDS * AUDIO_RATE)
    tone_step = 2 * math.pi * TONE_HZ / AUDIO_RATE
    beep_step = 2 * math.pi * BEEP_HZ / AUDIO_RATE
    for start in range(0, total_samples, AUDIO_FRAME_SAMPLES):
        samples = array("h", bytes(2 * AUDIO_FRAME_SAMPLES))
        for i in range(AUDIO_FRAME_SAMPLES):
            n = start + i
            value = TONE_AMPLITUDE * math.sin(tone_step * n)
            for beep in beep_starts:
                if beep <= n < beep + beep_length:
                    value = BEEP_AMPLITUDE * math.sin(beep_step * (n - beep))
            samples[i] = int(value * 32767)
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_FRAME_SAMPLES)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = AUDIO_RATE
        frame.pts = start
        frame.time_base = Fraction(1, AUDIO_RATE)
        yield frame


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orstream.edge.demo", description="Write a synthetic H.264 + Opus MP4 demo clip."
    )
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--width", type=int, default=3840)
    parser.add_argument("--height", type=int, default=2160)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--bitrate", type=int, default=25_000_000)
    parser.add_argument("--gop-seconds", type=float, default=1.0)
    parser.add_argument("--flash-at", type=float, nargs="*", default=[], metavar="SECONDS")
    parser.add_argument("--beep-at", type=float, nargs="*", default=[], metavar="SECONDS")
    args = parser.parse_args(argv)
    started = time.monotonic()
    generate(
        args.out,
        width=args.width,
        height=args.height,
        fps=args.fps,
        seconds=args.seconds,
        bitrate=args.bitrate,
        gop_seconds=args.gop_seconds,
        flash_at=args.flash_at,
        beep_at=args.beep_at,
    )
    print(f"wrote {args.out} in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

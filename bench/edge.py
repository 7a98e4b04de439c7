"""``make bench``: how many 4K30 viewers one edge process feeds, and what each packet costs.

Run ``.venv/bin/python -m bench.edge`` (``make bench``). It prints a table, then as the
last line of stdout one JSON object with every figure (null plus a reason in ``errors`` when a
step failed). ``--tiny`` runs the same machinery on a 320x240 clip with two viewers in seconds,
for the smoke test; its figures mean nothing.

What runs where (2 cores, loopback):

- the process under test (``bench_edge``, one per step, started fresh so no step inherits
  another's memory or sockets): orstream's edge, or stock aiortc for the baselines;
- viewer processes (``bench_viewer``, up to ``VIEWERS_PER_PROCESS`` viewers each, never in the edge's
  process): real aiortc peers that complete ICE and DTLS, then count RTP headers below SRTP;
- this process: starts and stops the others, reads their counters, measures the SRTP floor.

Every figure and its exact definition is printed with the table (``DEFINITIONS``). Timeouts
guard every step; a failing step is reported, never allowed to hang or crash the run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import platform
import secrets
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

# A step passes when every viewer meets all three (the issue's definition of "forwards 4K30").
MIN_FPS = 29.5
MAX_LOSS = 0.001
MAX_P99_LAG_MS = 100.0
TARGETS = {
    "edge_us_per_packet": ("<=", 8.0),
    "viewers_4k30": (">=", 16),
    "p99_lag_ms": ("<=", 50.0),
    "ingest_record_cpu_pct": ("<=", 8.0),
    "rss_mb_per_viewer": ("<=", 2.0),
    "join_to_picture_ms": ("<=", 300.0),
}
# A step that fails while other work on the machine took this much (% of one core) is measured again.
NOISY_LOAD_PCT = 30.0
VIEWERS_PER_PROCESS = 8
# Edge viewers answer with transport-cc feedback, as browsers do (estimation and pacing on);
# False measures the edge without them, for comparison.
VIEWER_FEEDBACK = True
MAX_VIEWER_PROCESSES = 4
CLK_TCK = os.sysconf("SC_CLK_TCK")

DEFINITIONS = """\
Definitions (all on this machine, loopback, one edge process = one Python thread of media work):
  viewers_4k30        largest N tried for which one edge process fed N viewers (other processes) with
                      every viewer >= 29.5 decodable fps, loss <= 0.1 %, p99 lag <= 100 ms over the window
  decodable frame     all of its RTP packets arrived (count = packets the edge cut it into) and it is an
                      IDR or the frame before it was decodable: never a picture built on a missing frame
  loss                per viewer, all its RTP streams: 1 - received / (highest - lowest seq + 1) in the
                      window, raw (viewers send no NACK; nothing is repaired)
  edge lag            the edge's own view, sampled twice a second: max over viewers of ingest -> last packet
                      of the latest frame handed to the socket (FeedStats.lag_last)
  IDR lag             median lag of keyframes only (a 4K IDR is ~1,100 packets per viewer)
  lag                 per decodable frame: viewer wall time when its last packet arrived - edge wall time
                      when ingest read the frame (EncodedFrame.ingest_time), joined by RTP timestamp
  us/packet           edge process CPU (user+sys, all threads: demux, hub, senders) / RTP packets it sent,
                      over the window
  stock               stock aiortc RTCPeerConnection.addTrack per viewer, track returns the same av.Packet
                      per frame (MediaPlayer(decode=False) style), same demux, same viewers
  mediarelay          aiortc MediaPlayer (decode) + MediaRelay + its H.264 encoder, one viewer: fps of
                      whole frames received
  floor               this process: pylibsrtp protect + socket.sendto of 1,200-byte packets, per packet
  ingest(+record)     edge process with the source and no viewers (then with Recorder): % of one core
  rss/viewer          slope of edge RSS (end of window) against N over the edge steps, MiB per viewer
  join_to_picture     per viewer, setRemoteDescription(answer) -> last packet of its first IDR that
                      arrived whole (median over the viewers of the lag step; they join in parallel)"""


@dataclass
class BenchConfig:
    """Sizes of one run; ``full()`` is ``make bench``, ``tiny()`` the smoke test."""

    width: int
    height: int
    fps: int
    bitrate: int
    clip_seconds: float
    window: float
    warmup: float
    steps: list[int]
    lag_viewers: int
    stock_viewers: int
    relay_window: float
    ingest_window: float
    floor_packets: int
    bisect: int = 2
    noisy_retries: int = 2
    quiet_retry_wait: float = 30.0
    tiny: bool = False

    @classmethod
    def full(cls) -> BenchConfig:
        return cls(width=3840, height=2160, fps=30, bitrate=25_000_000, clip_seconds=10.0, window=8.0,
                   warmup=2.5, steps=[1, 2, 4, 8, 12, 16, 24, 32, 48, 64], lag_viewers=16, stock_viewers=8,
                   relay_window=8.0, ingest_window=8.0, floor_packets=200_000)

    @classmethod
    def tiny_config(cls) -> BenchConfig:
        return cls(width=320, height=240, fps=30, bitrate=500_000, clip_seconds=2.0, window=2.0, warmup=1.0,
                   steps=[1, 2], lag_viewers=2, stock_viewers=2, relay_window=2.0, ingest_window=1.0,
                   floor_packets=5_000, bisect=0, noisy_retries=0, tiny=True)

    @property
    def clip_name(self) -> str:
        return f"source-{self.width}x{self.height}-{self.fps}-{self.bitrate // 1000}k-{self.clip_seconds:g}s.mp4"

    def source_description(self) -> str:
        return (f"{self.width}x{self.height} {self.fps} fps H.264 High, {self.bitrate / 1e6:g} Mbit/s, GOP 1 s, "
                f"no B-frames, + Opus 48 kHz (orstream.edge.demo); {self.clip_seconds:g} s MP4 looped by PyAVSource")


# --- processes ---------------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """user+sys CPU of a process (all its threads) from /proc, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


class EdgeProcess:
    """A ``bench_edge`` subprocess and the HTTP client that reads it."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def offer_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/offer"

    @classmethod
    async def start(cls, mode: str, clip: Path, log: Path, record_dir: Path | None = None) -> EdgeProcess:
        args = [sys.executable, "-m", "bench.edge_target", "--mode", mode, "--clip", str(clip)]
        if record_dir is not None:
            args += ["--record-dir", str(record_dir)]
        with open(log, "ab") as err:
            process = await asyncio.create_subprocess_exec(*args, stdout=subprocess.PIPE, stderr=err)
        try:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
            port = int(json.loads(line)["port"])
        except Exception as exc:
            _kill(process)
            raise RuntimeError(f"{mode} process did not start ({exc!r}); see {log}") from None
        return cls(process, port, log)

    async def get(self, path: str) -> Any:
        async with self.session.get(f"http://127.0.0.1:{self.port}{path}") as response:
            return await response.json()

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        async with self.session.post(f"http://127.0.0.1:{self.port}{path}", json=body) as response:
            data = await response.json()
            if response.status != 200:
                raise RuntimeError(f"{path}: {data}")
            return data

    async def stop(self) -> None:
        try:
            await asyncio.wait_for(self.post("/quit", {}), timeout=5)
            await asyncio.wait_for(self.process.wait(), timeout=15)
        except Exception:
            _kill(self.process)
            await self.process.wait()
        finally:
            await self.session.close()


class ViewerProcesses:
    """``bench_viewer`` subprocesses, each driven by JSON lines."""

    def __init__(self, processes: list[asyncio.subprocess.Process]) -> None:
        self.processes = processes

    @classmethod
    async def start(cls, count: int, log: Path) -> ViewerProcesses:
        processes = []
        with open(log, "ab") as err:
            for _ in range(count):
                processes.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.viewer",
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, limit=64 * 1024 * 1024,
                ))
        return cls(processes)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    async def _ask(self, process: asyncio.subprocess.Process, command: dict[str, Any], timeout: float) -> Any:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write((json.dumps(command) + "\n").encode())
        await process.stdin.drain()
        line = await asyncio.wait_for(process.stdout.readline(), timeout=timeout)
        if not line:
            raise RuntimeError("viewer process exited")
        return json.loads(line)

    async def ask_all(self, commands: list[dict[str, Any]], timeout: float) -> list[Any]:
        return list(await asyncio.gather(*(self._ask(p, c, timeout) for p, c in zip(self.processes, commands, strict=True))))

    async def stop(self) -> None:
        async def one(process: asyncio.subprocess.Process) -> None:
            try:
                await self._ask(process, {"cmd": "quit"}, timeout=10)
                await asyncio.wait_for(process.wait(), timeout=10)
            except Exception:
                _kill(process)
                await process.wait()

        await asyncio.gather(*(one(p) for p in self.processes))


def _kill(process: asyncio.subprocess.Process) -> None:
    try:
        process.kill()
    except ProcessLookupError:
        pass


# --- analysis ----------------------------------------------------------------------------------


@dataclass
class ViewerFigures:
    fps: float = 0.0
    loss: float = 0.0
    lags: list[float] = field(default_factory=list)
    key_lags: list[float] = field(default_factory=list)
    join_ms: float | None = None
    connected: bool = False


def viewer_figures(report: dict[str, Any], frame_map: dict[int, tuple[float, bool, int | None]],
                   offset: int | None, t0: float, t1: float) -> ViewerFigures:
    """Decodable frames, loss and lag of one viewer over [t0, t1) (see DEFINITIONS)."""
    out = ViewerFigures(connected=report["connection"] == "connected")
    expected = sum(s["window_expected"] for s in report["streams"].values())
    received = sum(s["window_received"] for s in report["streams"].values())
    out.loss = max(0, expected - received) / expected if expected else 1.0
    # frames: [rtp ts, packets, min ext seq, max ext seq, marker arrival]
    frames = report["frames"]
    window = t1 - t0
    if offset is None or not frame_map:
        # No map (the decode/re-encode baseline): whole frames by sequence contiguity only.
        previous_max = None
        count = 0
        for _ts, packets, low, high, arrived in sorted(frames, key=lambda f: f[2]):
            whole = arrived > 0 and packets == high - low + 1 and (previous_max is None or low == previous_max + 1)
            previous_max = high
            if whole and t0 <= arrived < t1:
                count += 1
        out.fps = count / window
        return out
    received_by_ts = {(f[0] - offset) & 0xFFFFFFFF: f for f in frames}
    started = False
    decodable = False
    previous_max = None
    good = 0
    for key, (ingest_time, keyframe, packets_cut) in frame_map.items():
        frame = received_by_ts.get(key)
        if not started:
            if frame is None:
                continue
            started = True
        if frame is None:
            decodable = False  # a frame the viewer never got: nothing is decodable until an IDR
            previous_max = None
            continue
        _, packets, low, high, arrived = frame
        if packets_cut is not None:
            whole = arrived > 0 and packets == packets_cut
        else:
            whole = arrived > 0 and packets == high - low + 1 and (previous_max is None or low == previous_max + 1)
        previous_max = high
        decodable = whole and (keyframe or decodable)
        if keyframe and whole and out.join_ms is None:
            out.join_ms = (arrived - report["answer_time"]) * 1000
        if decodable and t0 <= arrived < t1:
            good += 1
            out.lags.append((arrived - ingest_time) * 1000)
            if keyframe:
                out.key_lags.append(out.lags[-1])
    out.fps = good / window
    return out


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[index]


def slope(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


# --- steps -------------------------------------------------------------------------------------


@dataclass
class StepResult:
    mode: str
    viewers: int
    joined: int = 0
    passed: bool = False
    min_fps: float | None = None
    min_fps_needed: float = MIN_FPS
    max_loss_pct: float | None = None
    p50_lag_ms: float | None = None
    p99_lag_ms: float | None = None
    max_lag_ms: float | None = None
    p50_keyframe_lag_ms: float | None = None
    us_per_packet: float | None = None
    edge_cpu_pct: float | None = None
    viewers_cpu_pct: float | None = None
    machine_busy_pct: float | None = None
    other_load_pct: float | None = None
    packets_per_s: float | None = None
    rss_mb: float | None = None
    join_ms: list[float] = field(default_factory=list)
    overflows: int | None = None
    viewers_paused: int | None = None
    viewers_estimating: int | None = None
    viewers_paced: int | None = None
    send_lag_ms: float | None = None
    retried: int = 0
    error: str | None = None

    def why_failed(self) -> str:
        if self.error:
            return self.error
        reasons = []
        if self.joined < self.viewers:
            reasons.append(f"{self.viewers - self.joined} viewers did not join")
        if self.min_fps is not None and self.min_fps < self.min_fps_needed:
            reasons.append(f"min fps {self.min_fps:.1f}")
        if self.max_loss_pct is not None and self.max_loss_pct > MAX_LOSS * 100:
            reasons.append(f"loss {self.max_loss_pct:.2f} %")
        if self.p99_lag_ms is not None and self.p99_lag_ms > MAX_P99_LAG_MS:
            reasons.append(f"p99 lag {self.p99_lag_ms:.0f} ms")
        return ", ".join(reasons)


async def run_step(mode: str, viewers: int, clip: Path, config: BenchConfig, logs: Path,
                   *, window: float | None = None) -> StepResult:
    """One process under test, ``viewers`` counting viewers, one measurement window."""
    result = StepResult(mode=mode, viewers=viewers, min_fps_needed=MIN_FPS * config.fps / 30)
    window = window or config.window
    edge: EdgeProcess | None = None
    procs: ViewerProcesses | None = None
    try:
        edge = await EdgeProcess.start(mode, clip, logs / f"{mode}.log")
        nprocs = min(MAX_VIEWER_PROCESSES, max(1, math.ceil(viewers / VIEWERS_PER_PROCESS)))
        procs = await ViewerProcesses.start(nprocs, logs / "viewers.log")
        ids: list[list[str]] = [[] for _ in range(nprocs)]
        for i in range(viewers):
            ids[i % nprocs].append(f"v{i:03d}")
        joins = await procs.ask_all(
            # Edge viewers send transport-cc feedback as browsers do: estimation and pacing on.
            [{"cmd": "join", "ids": group, "url": edge.offer_url, "high_profile": mode == "edge",
              "feedback": mode == "edge" and VIEWER_FEEDBACK} for group in ids],
            timeout=30 + 10 * max(len(g) for g in ids),
        )
        result.joined = sum(len(j.get("joined", [])) for j in joins)
        errors = [e for j in joins for e in j.get("errors", [])] + [j["error"] for j in joins if "error" in j]
        if errors:
            result.error = f"{len(errors)} joins failed, first: {errors[0][:200]}"
        await asyncio.sleep(config.warmup)
        t0 = time.time() + 0.3
        t1 = t0 + window
        await procs.ask_all([{"cmd": "window", "t0": t0, "t1": t1}] * nprocs, timeout=10)
        await asyncio.sleep(max(0.0, t0 - time.time()))
        s0 = await edge.get("/stats")
        v0 = [proc_cpu_seconds(pid) for pid in procs.pids]
        m0 = machine_busy()
        # Sampled through the window: the edge's own lag (ingest to last packet handed to the
        # socket) tells a late edge from late viewer processes.
        send_lags = [s0.get("send_lag_max_ms")]
        while time.time() < t1 - 0.6:
            await asyncio.sleep(0.5)
            send_lags.append((await edge.get("/stats")).get("send_lag_max_ms"))
        await asyncio.sleep(max(0.0, t1 - time.time()))
        s1 = await edge.get("/stats")
        send_lags.append(s1.get("send_lag_max_ms"))
        sampled = [lag for lag in send_lags if lag is not None]
        result.send_lag_ms = max(sampled) if sampled else None
        v1 = [proc_cpu_seconds(pid) for pid in procs.pids]
        m1 = machine_busy()
        await asyncio.sleep(0.2)  # frames whose last packet is still on its way count only if in the window
        reports = await procs.ask_all([{"cmd": "report"}] * nprocs, timeout=60)
        raw = await edge.get("/frames")
        frame_map = {int(k): (v[0], bool(v[1]), v[2]) for k, v in raw["frames"].items()}
        # The edge maps by the RTP timestamp every viewer sees (offset 0); stock aiortc by pts, plus
        # a random origin per viewer's sender.
        offsets = raw["offsets"]
        elapsed = s1["time"] - s0["time"]
        cpu = s1["cpu"] - s0["cpu"]
        packets = s1["packets_sent"] - s0["packets_sent"]
        result.edge_cpu_pct = 100 * cpu / elapsed
        result.us_per_packet = 1e6 * cpu / packets if packets else None
        result.packets_per_s = packets / elapsed
        result.viewers_cpu_pct = 100 * (sum(v1) - sum(v0)) / elapsed
        busy = (m1[0] - m0[0]) / max(1, m1[1] - m0[1])
        result.machine_busy_pct = 100 * busy
        # What else ran (other jobs on a shared machine), in % of one core: a step with much of it
        # measured the neighbours as well as the edge.
        result.other_load_pct = max(0.0, 100 * busy * (os.cpu_count() or 1) - result.edge_cpu_pct - result.viewers_cpu_pct)
        result.rss_mb = s1["rss"] / 2**20
        result.overflows = s1.get("overflows")
        # the edge pauses a viewer it has not heard from for seconds (and restarts it on a keyframe)
        result.viewers_paused = s1.get("viewers_paused")
        # viewers whose transport-cc feedback the edge estimated from, and that it paced
        result.viewers_estimating = s1.get("viewers_estimating")
        result.viewers_paced = s1.get("viewers_paced")
        figures = [
            viewer_figures(v, frame_map, offsets.get(v["id"], 0 if mode == "edge" else None), t0, t1)
            for r in reports for v in r.get("viewers", [])
        ]
        connected = [f for f in figures if f.connected]
        if figures:
            result.min_fps = min(f.fps for f in figures)
            result.max_loss_pct = 100 * max(f.loss for f in figures)
            lags = [lag for f in figures for lag in f.lags]
            result.p50_lag_ms = percentile(lags, 50)
            result.p99_lag_ms = percentile(lags, 99)
            result.max_lag_ms = max(lags) if lags else None
            # Keyframes (~1,100 packets each at 4K, to every viewer) are where lag piles up.
            result.p50_keyframe_lag_ms = percentile([lag for f in figures for lag in f.key_lags], 50)
            result.join_ms = [f.join_ms for f in figures if f.join_ms is not None]
        result.passed = (
            result.error is None
            and len(connected) == viewers
            and result.min_fps is not None and result.min_fps >= result.min_fps_needed
            and result.max_loss_pct is not None and result.max_loss_pct <= MAX_LOSS * 100
            and (result.p99_lag_ms is None or result.p99_lag_ms <= MAX_P99_LAG_MS)
            and (mode != "edge" or result.p99_lag_ms is not None)
        )
    except Exception as exc:
        result.error = result.error or f"{type(exc).__name__}: {exc}"[:300]
    finally:
        if procs is not None:
            await procs.stop()
        if edge is not None:
            await edge.stop()
    return result


async def measure_ingest(clip: Path, config: BenchConfig, logs: Path, work: Path) -> tuple[float, float]:
    """(% of one core) ingesting only, then ingesting and recording, one edge process, no viewers."""
    record_dir = work / f"record-{os.getpid()}"
    edge = await EdgeProcess.start("ingest", clip, logs / "ingest.log", record_dir=record_dir)
    try:
        await asyncio.sleep(config.warmup)

        async def cpu_over(seconds: float) -> float:
            a = await edge.get("/stats")
            await asyncio.sleep(seconds)
            b = await edge.get("/stats")
            return 100 * (b["cpu"] - a["cpu"]) / (b["time"] - a["time"])

        ingest = await cpu_over(config.ingest_window)
        await edge.post("/record", {"directory": str(record_dir)})
        await asyncio.sleep(1.0)  # first segment opened on the next keyframe
        both = await cpu_over(config.ingest_window)
        return ingest, both
    finally:
        await edge.stop()
        shutil.rmtree(record_dir, ignore_errors=True)


SINK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 16 << 20)
except OSError:
    pass
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
s.settimeout(3.0)
buf = bytearray(2048)
try:
    while True:
        s.recv_into(buf)
except OSError:
    pass
"""


def measure_floor(packets: int, profile: str) -> float:
    """µs per packet for pylibsrtp protect + sendto of 1,200-byte RTP packets to a draining peer."""
    import pylibsrtp

    if profile == "gcm":
        policy = pylibsrtp.Policy(key=secrets.token_bytes(28), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                  srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM)
    else:
        policy = pylibsrtp.Policy(key=secrets.token_bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                  srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    session = pylibsrtp.Session(policy)
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline())
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(("127.0.0.1", port))
        payload = secrets.token_bytes(1188)
        pack = struct.pack
        ssrc = 0x1234ABCD
        # The packet is built before the clock starts: the floor is protect + sendto only.
        headers = [pack("!BBHII", 0x80, 96, seq & 0xFFFF, seq * 3000, ssrc) for seq in range(packets)]
        addr = ("127.0.0.1", port)
        sendto = sock.sendto
        protect = session.protect
        # Best of three runs: a microbenchmark's noise (a neighbour on the same physical core)
        # only ever adds time.
        best = float("inf")
        chunk = max(1, packets // 3)
        for run in range(3):
            batch = headers[run * chunk : (run + 1) * chunk]  # sequence numbers keep increasing
            start = time.thread_time()
            for header in batch:
                sendto(protect(header + payload), addr)
            best = min(best, (time.thread_time() - start) / len(batch))
        sock.close()
        return 1e6 * best
    finally:
        sink.kill()
        sink.wait()


# --- the run -----------------------------------------------------------------------------------


def ensure_clip(config: BenchConfig, work: Path) -> Path:
    """The source clip, generated once and reused (10 s of 4K takes ~25 s of CPU to encode)."""
    path = work / config.clip_name
    if path.exists() and path.stat().st_size > 0:
        return path
    from orstream.edge.demo import generate

    partial = path.with_suffix(".partial.mp4")
    generate(partial, width=config.width, height=config.height, fps=config.fps,
             seconds=config.clip_seconds, bitrate=config.bitrate)
    partial.replace(path)
    return path


def tree_info() -> dict[str, Any]:
    """Which edge code was measured: the commit, and edge modules changed since (work in progress)."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--", "orstream/edge"], cwd=root,
                                capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "edge_changes": []}
    changed = sorted(line[3:] for line in status if "/bench" not in line)
    return {"commit": commit or None, "edge_changes": changed}


def machine_info() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


async def wait_for_quiet(max_wait: float, threshold_pct: float = 25.0) -> float:
    """Wait (at most max_wait s) until the machine is mostly idle; returns the last busy % seen.

    On a shared machine other jobs take cores from the edge and the viewers, and the figures then
    describe the neighbours as much as the edge. The figure is reported either way.
    """
    deadline = time.monotonic() + max_wait
    while True:
        a = machine_busy()
        await asyncio.sleep(2.0)
        b = machine_busy()
        busy = 100 * (b[0] - a[0]) / max(1, b[1] - a[1])
        if busy <= threshold_pct or time.monotonic() >= deadline:
            return busy
        say(f"  machine {busy:.0f} % busy with other work; waiting for it to calm down ...")


def say(text: str) -> None:
    # Progress goes to stderr: stdout ends with the JSON line and nothing after it.
    print(text, file=sys.stderr, flush=True)


async def search_viewers(clip: Path, config: BenchConfig, logs: Path) -> tuple[list[StepResult], int]:
    """Steps up N until a step fails, then bisects the gap; N=lag_viewers is always measured."""
    results: dict[int, StepResult] = {}

    async def step(n: int) -> StepResult:
        say(f"  edge, {n} viewers ...")
        result = await run_step("edge", n, clip, config, logs)
        for _ in range(config.noisy_retries):
            # A failure while other jobs took a core says little about the edge: wait for the
            # machine to calm down and measure again (the retry is reported in the step's note).
            if result.passed or (result.other_load_pct or 0.0) < NOISY_LOAD_PCT:
                break
            say(f"    fail under {result.other_load_pct:.0f} % other load ({result.why_failed()}); retrying ...")
            await wait_for_quiet(config.quiet_retry_wait)
            retry = await run_step("edge", n, clip, config, logs)
            retry.retried = result.retried + 1
            result = retry
        results[n] = result
        say(f"    {'pass' if result.passed else 'FAIL: ' + result.why_failed()}; "
            f"{_fmt(result.us_per_packet, '.2f')} us/packet, p99 lag {_fmt(result.p99_lag_ms, '.0f')} ms, "
            f"min fps {_fmt(result.min_fps, '.1f')}")
        return result

    best, failed = 0, None
    for n in config.steps:
        if (await step(n)).passed:
            best = n
        else:
            failed = n
            break
    for _ in range(config.bisect):
        if failed is None or failed - best <= 1:
            break
        middle = (best + failed) // 2
        if (await step(middle)).passed:
            best = middle
        else:
            failed = middle
    if config.lag_viewers not in results:
        await step(config.lag_viewers)
    return [results[n] for n in sorted(results)], best


async def run(config: BenchConfig, work: Path, quiet_wait: float = 0.0, only_search: bool = False) -> dict[str, Any]:
    import aiortc

    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}
    say(f"source clip in {work} ...")
    clip = await asyncio.get_running_loop().run_in_executor(None, ensure_clip, config, work)
    out["host_busy_at_start_pct"] = await wait_for_quiet(quiet_wait)

    say("floor: SRTP protect + sendto ...")
    floors = () if only_search else (("floor_us_per_packet", "cm"), ("floor_gcm_us_per_packet", "gcm"))
    for key, profile in floors:
        try:
            out[key] = measure_floor(config.floor_packets, profile)
        except Exception as exc:
            out[key], errors[key] = None, repr(exc)

    say("ingest and record, no viewers ...")
    try:
        if only_search:
            raise RuntimeError("not measured (--only-search)")
        out["ingest_cpu_pct"], out["ingest_record_cpu_pct"] = await asyncio.wait_for(
            measure_ingest(clip, config, logs, work), timeout=120)
    except Exception as exc:
        out["ingest_cpu_pct"] = out["ingest_record_cpu_pct"] = None
        errors["ingest_record_cpu_pct"] = repr(exc)

    say("edge: viewer search ...")
    steps, best = await search_viewers(clip, config, logs)
    lag_step = next(s for s in steps if s.viewers == config.lag_viewers)
    out["viewers_4k30"] = best
    out["edge_us_per_packet"] = lag_step.us_per_packet
    out["p99_lag_ms"] = lag_step.p99_lag_ms
    out["loss_pct"] = lag_step.max_loss_pct
    out["lag_viewers"] = config.lag_viewers
    if lag_step.error:
        errors["lag_step"] = lag_step.error
    out["join_to_picture_ms"] = statistics.median(lag_step.join_ms) if lag_step.join_ms else None
    if out["join_to_picture_ms"] is None:
        errors["join_to_picture_ms"] = "no viewer received a whole IDR"
    rss_points = [(float(s.viewers), s.rss_mb) for s in steps if s.rss_mb is not None and s.joined == s.viewers]
    out["rss_mb_per_viewer"] = slope(rss_points)
    if out["rss_mb_per_viewer"] is None:
        errors["rss_mb_per_viewer"] = "fewer than two edge steps with every viewer joined"

    # 60 fps, which microsurgery needs: the same search with a 4K60 source (twice the packets).
    config60 = dataclasses.replace(config, fps=60, steps=[n for n in config.steps if n <= 32],
                                   lag_viewers=min(config.lag_viewers, 8))
    say("edge: viewer search, 60 fps source ...")
    clip60 = await asyncio.get_running_loop().run_in_executor(None, ensure_clip, config60, work)
    steps60, out["viewers_4k60"] = await search_viewers(clip60, config60, logs)
    out["steps_60fps"] = [_step_json(s) for s in steps60]

    if only_search:
        skipped = StepResult(mode="stock", viewers=0, error="not measured (--only-search)")
        stock = relay = skipped
        out["stock_us_per_packet"] = out["mediarelay_fps_1viewer"] = None
        out["stock_viewers"] = config.stock_viewers
    else:
        say(f"stock aiortc, {config.stock_viewers} viewers ...")
        stock = await run_step("stock", config.stock_viewers, clip, config, logs)
        out["stock_us_per_packet"] = stock.us_per_packet
        out["stock_viewers"] = config.stock_viewers
        if stock.error or stock.us_per_packet is None:
            errors["stock_us_per_packet"] = stock.error or "no packets sent"

        say("stock aiortc MediaRelay (decode + re-encode), 1 viewer ...")
        relay = await run_step("relay", 1, clip, config, logs, window=config.relay_window)
        out["mediarelay_fps_1viewer"] = relay.min_fps
        if relay.error or relay.min_fps is None:
            errors["mediarelay_fps_1viewer"] = relay.error or "no frames"

    out["machine"] = machine_info()
    out["aiortc"] = aiortc.__version__
    out["tree"] = tree_info()
    out["source"] = config.source_description()
    out["steps"] = [_step_json(s) for s in steps]
    out["stock"] = _step_json(stock)
    out["relay"] = _step_json(relay)
    out["targets"] = {
        key: {"target": f"{op} {limit}", "value": out.get(key),
              "met": out.get(key) is not None and (out[key] <= limit if op == "<=" else out[key] >= limit)}
        for key, (op, limit) in TARGETS.items()
    }
    out["errors"] = errors
    out["tiny"] = config.tiny
    return out


def _step_json(step: StepResult) -> dict[str, Any]:
    data = {k: v for k, v in step.__dict__.items() if k != "join_ms"}
    data["join_ms_median"] = statistics.median(step.join_ms) if step.join_ms else None
    data["why"] = None if step.passed else step.why_failed()
    for key, value in data.items():
        if isinstance(value, float):
            data[key] = round(value, 3)
    return data


def _note(step: dict[str, Any]) -> str:
    notes = []
    if step.get("overflows"):
        notes.append(f"{step['overflows']} queue overflows")
    if step.get("viewers_paused"):
        notes.append(f"{step['viewers_paused']} viewer pauses")
    if step.get("retried"):
        notes.append(f"retry {step['retried']} (other load)")
    if not step["passed"] and step.get("why"):
        notes.append(step["why"])
    return "; ".join(notes)[:80]


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(result: dict[str, Any]) -> str:
    lines = [f"orstream edge benchmark: {result['source']}",
             f"machine: {result['machine']['cpu']}, {result['machine']['cores']} cores; aiortc {result['aiortc']}; "
             f"edge code: {result['tree']['commit']}"
             + (f" + uncommitted {', '.join(result['tree']['edge_changes'])}" if result["tree"]["edge_changes"] else ""),
             ""]
    lines.append(f"{'mode':<6} {'N':>3} {'pass':>4} {'min fps':>7} {'loss %':>7} {'p50 lag':>7} {'p99 lag':>7} {'IDR lag':>7} {'edgelag':>7} "
                 f"{'us/pkt':>6} {'edge %':>6} {'view %':>6} {'other%':>6} {'pkt/s':>7} {'RSS MB':>6} {'join ms':>7}  note")
    for step in [*result["steps"], result["stock"], result["relay"]]:
        lines.append(
            f"{step['mode']:<6} {step['viewers']:>3} {'yes' if step['passed'] else 'no':>4} "
            f"{_fmt(step['min_fps'], '.1f'):>7} {_fmt(step['max_loss_pct'], '.3f'):>7} "
            f"{_fmt(step['p50_lag_ms'], '.0f'):>7} {_fmt(step['p99_lag_ms'], '.0f'):>7} "
            f"{_fmt(step['p50_keyframe_lag_ms'], '.0f'):>7} {_fmt(step['send_lag_ms'], '.0f'):>7} "
            f"{_fmt(step['us_per_packet'], '.2f'):>6} {_fmt(step['edge_cpu_pct'], '.0f'):>6} "
            f"{_fmt(step['viewers_cpu_pct'], '.0f'):>6} {_fmt(step['other_load_pct'], '.0f'):>6} "
            f"{_fmt(step['packets_per_s'], '.0f'):>7} {_fmt(step['rss_mb'], '.0f'):>6} "
            f"{_fmt(step['join_ms_median'], '.0f'):>7}  {_note(step)}")
    lines += ["", "(edge %, view % (all viewer processes), other % (everything else on the machine): % of one core;",
              f" host busy before the run: {_fmt(result.get('host_busy_at_start_pct'), '.0f')} % of all cores)", ""]
    for key, label in (
        ("viewers_4k30", "viewers at 4K30 (largest passing N)"),
        ("viewers_4k60", "viewers at 4K60 (largest passing N, min fps 59)"),
        ("edge_us_per_packet", f"edge us per packet at {result['lag_viewers']} viewers"),
        ("stock_us_per_packet", f"stock aiortc us per packet at {result['stock_viewers']} viewers"),
        ("floor_us_per_packet", "floor: SRTP AES-CM protect + sendto, us per packet"),
        ("floor_gcm_us_per_packet", "floor with AEAD AES-128-GCM, us per packet"),
        ("p99_lag_ms", f"p99 lag at {result['lag_viewers']} viewers, ms"),
        ("loss_pct", f"worst viewer loss at {result['lag_viewers']} viewers, %"),
        ("join_to_picture_ms", "join to picture, median ms"),
        ("ingest_cpu_pct", "ingest only, % of one core"),
        ("ingest_record_cpu_pct", "ingest + record, % of one core"),
        ("rss_mb_per_viewer", "edge RSS per added viewer, MiB"),
        ("mediarelay_fps_1viewer", "stock MediaRelay decode+re-encode, 1 viewer, fps"),
    ):
        value = result.get(key)
        target = result["targets"].get(key)
        verdict = "" if target is None else f"   target {target['target']}: {'met' if target['met'] else 'NOT met'}"
        lines.append(f"  {label:<52} {_fmt(value, '.2f') if isinstance(value, float) else _fmt(value, '')}{verdict}")
    if result["errors"]:
        lines.append("")
        lines += [f"  error {key}: {reason}" for key, reason in result["errors"].items()]
    lines += ["", DEFINITIONS]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the orstream edge (make bench).")
    parser.add_argument("--tiny", action="store_true", help="320x240, 2 viewers, seconds: machinery check only")
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench"), help="clip cache and logs")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="seconds to wait for other work on the machine to stop (default 120, tiny 0)")
    parser.add_argument("--nice", type=int, default=0,
                        help="niceness increment for the bench and every process it starts (inherited); a "
                             "negative value (root only) keeps other work on a shared machine from taking "
                             "the edge's core; reported in the JSON")
    parser.add_argument("--only-search", action="store_true",
                        help="only the viewer searches (4K30 with edge_us_per_packet, then 4K60): no floor, "
                             "ingest, stock or MediaRelay steps")
    parser.add_argument("--no-viewer-feedback", action="store_true",
                        help="viewers send no transport-cc feedback: the edge neither estimates nor paces")
    args = parser.parse_args(argv)
    global VIEWER_FEEDBACK
    VIEWER_FEEDBACK = not args.no_viewer_feedback
    if args.nice:
        try:
            os.nice(args.nice)
        except OSError as exc:
            say(f"cannot change priority by {args.nice}: {exc}; running at normal priority")
    config = BenchConfig.tiny_config() if args.tiny else BenchConfig.full()
    quiet_wait = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.tiny else 120.0)
    started = time.monotonic()
    result = asyncio.run(run(config, args.work_dir, quiet_wait, args.only_search))
    result["bench_seconds"] = round(time.monotonic() - started, 1)
    result["nice"] = os.getpriority(os.PRIO_PROCESS, 0)
    print(table(result))
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

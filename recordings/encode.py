"""FFmpeg for the long-term archive: cut at keyframes, encode, score, join, probe.

Called by recordings.services.archive (the archive services) and by the archive bench; knows files, never
rows, settings or storage keys. Runs the static FFmpeg that the ``imageio-ffmpeg`` wheel ships
(it has SVT-AV1, x265, libvmaf and dav1d; PyAV's FFmpeg has no libvmaf) as a subprocess, which
dies with the worker that started it (a killed worker leaves no encoder running on its chunk).
Probes with PyAV, which only demuxes: counting packets is how the edge counts frames too.
Never writes a patient identifier anywhere: every path it is given is pseudonymous.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

# Encoders the archive knows, by codec; the values are FFmpeg encoder names.
ENCODERS = {"av1": "libsvtav1", "hevc": "libx265"}
# libvmaf's built-in models: the 4K one for pictures of 4K size, the 1080p one below that.
VMAF_MODEL_4K = "vmaf_4k_v0.6.1"
VMAF_MODEL_HD = "vmaf_v0.6.1"
_PR_SET_PDEATHSIG = 1


class EncodeError(Exception):
    """FFmpeg failed or wrote something other than what was asked; the message says which step."""


def ffmpeg_path() -> str:
    """The static FFmpeg of the imageio-ffmpeg wheel (IMAGEIO_FFMPEG_EXE may point elsewhere)."""
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel kills FFmpeg when its worker dies, so a
    # worker killed mid-chunk does not leave an encoder writing the chunk behind its back.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass(frozen=True)
class Run:
    cpu_seconds: float
    wall_seconds: float


def ffmpeg_run(args: list[str], *, what: str) -> Run:
    """Run FFmpeg with ``args``; its CPU time (user + system, all threads) and wall time.

    Raises EncodeError with the end of FFmpeg's messages when it fails.
    """
    command = [ffmpeg_path(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y", *args]
    started = time.monotonic()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, preexec_fn=_die_with_parent)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        if process.returncode != 0:
            errors.seek(0)
            tail = errors.read()[-1500:].decode("utf-8", "replace").strip()
            raise EncodeError(f"FFmpeg failed to {what} (exit {process.returncode}): {tail}")
    return Run(cpu_seconds=usage.ru_utime + usage.ru_stime, wall_seconds=wall)


def _video_span(path: Path) -> tuple[float, float]:
    """(first video timestamp, end of the last video frame) of one file, in seconds."""
    first = end = None
    with av.open(str(path)) as container:
        for packet in container.demux(container.streams.video[0]):
            if packet.size == 0 or packet.pts is None or packet.time_base is None:
                continue
            start = float(packet.pts * packet.time_base)
            first = start if first is None else min(first, start)
            stop = start + float((packet.duration or 0) * packet.time_base)
            end = stop if end is None else max(end, stop)
    if first is None or end is None:
        raise EncodeError(f"{path.name} has no video frame.")
    return first, end


def _concat_list(files: list[Path], folder: Path, name: str) -> Path:
    """A concat-demuxer list that plays ``files`` one after the other the way the library plays a
    recording's parts: each file's picture starts where the previous file's picture ends
    (``inpoint`` at its first frame, ``duration`` its picture's length), whatever its sound does
    at the edges. FFmpeg would otherwise start a file where the previous one's longest stream ended."""
    listing = folder / name
    lines = []
    for file in files:
        start, end = _video_span(Path(file))
        quoted = str(Path(file).resolve()).replace("'", "'\\''")
        lines.append(f"file '{quoted}'\ninpoint {start:.6f}\nduration {end - start:.6f}\n")
    listing.write_text("".join(lines))
    return listing


# ---------------------------------------------------------------- probing


@dataclass(frozen=True)
class Probe:
    """What a demux (no decode) says about a file or a concatenation of files."""

    video_frames: int
    audio_packets: int
    # Seconds on the file's own timeline: first video and audio timestamps, end of the last frame.
    video_start: float
    video_end: float
    audio_start: float | None
    audio_end: float | None
    width: int
    height: int
    fps: float
    video_codec: str
    audio_codec: str

    @property
    def duration(self) -> float:
        return self.video_end - self.video_start


def media_probe(files: list[Path]) -> Probe:
    """Count the packets of ``files`` played one after the other (FFmpeg's concat demuxer)."""
    with tempfile.TemporaryDirectory() as folder:
        listing = _concat_list(files, Path(folder), "probe.txt")
        with av.open(str(listing), format="concat", options={"safe": "0"}) as container:
            video = container.streams.video[0]
            audio = container.streams.audio[0] if container.streams.audio else None
            frames = packets = 0
            first_video = last_video = first_audio = last_audio = None
            for packet in container.demux(*([video] + ([audio] if audio is not None else []))):
                if packet.size == 0 or packet.pts is None or packet.time_base is None:
                    continue
                start = float(packet.pts * packet.time_base)
                end = start + float((packet.duration or 0) * packet.time_base)
                if packet.stream.type == "video":
                    frames += 1
                    first_video = start if first_video is None else min(first_video, start)
                    last_video = end if last_video is None else max(last_video, end)
                else:
                    packets += 1
                    first_audio = start if first_audio is None else min(first_audio, start)
                    last_audio = end if last_audio is None else max(last_audio, end)
            rate = video.average_rate or video.base_rate or video.guessed_rate
            return Probe(
                video_frames=frames,
                audio_packets=packets,
                video_start=first_video or 0.0,
                video_end=last_video or 0.0,
                audio_start=first_audio,
                audio_end=last_audio,
                width=video.codec_context.width,
                height=video.codec_context.height,
                fps=float(rate) if rate else 0.0,
                video_codec=video.codec_context.codec.canonical_name,
                audio_codec=audio.codec_context.codec.canonical_name if audio is not None else "",
            )


# ---------------------------------------------------------------- cut, encode, join


def chunks_cut(sources: list[Path], folder: Path, *, seconds: float) -> list[Path]:
    """Cut the video of ``sources`` (played in order) into chunks of about ``seconds`` each, at
    the keyframes already there, by stream copy: nothing is re-encoded, so a chunk's frames are
    the original's frames. Each chunk starts on a keyframe; a chunk may be longer than
    ``seconds`` when the source's keyframes are further apart. Returns the chunks in order."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("chunk-*.mp4"):
        old.unlink()  # a cut a killed worker left half-way: cut again from the start
    listing = _concat_list(sources, folder, "sources.txt")
    ffmpeg_run(
        ["-f", "concat", "-safe", "0", "-i", str(listing), "-map", "0:v:0", "-c", "copy",
         "-f", "segment", "-segment_time", f"{seconds:.3f}", "-reset_timestamps", "1",
         "-segment_format", "mp4", str(folder / "chunk-%05d.mp4")],
        what="cut the recording at its keyframes",
    )
    listing.unlink()
    chunks = sorted(folder.glob("chunk-*.mp4"))
    if not chunks:
        raise EncodeError("Cutting the recording gave no chunk: it has no video.")
    return chunks


@dataclass(frozen=True)
class EncodeSettings:
    codec: str  # "av1" or "hevc"
    preset: str
    crf: int
    threads: int = 1

    @property
    def encoder(self) -> str:
        return ENCODERS[self.codec]


def video_encode(source: Path, target: Path, settings: EncodeSettings, *, frames: int | None = None) -> Run:
    """Encode the video of ``source`` (its first ``frames`` frames, or all) into ``target`` (MP4,
    no audio) at the same resolution, the same frames and timestamps. Written to ``target``'s
    ``.part`` first and moved into place, so ``target`` exists only whole; a rerun overwrites the
    same ``.part``."""
    partial = target.with_name(target.name + ".part")
    threads = str(max(1, settings.threads))
    if settings.codec == "av1":
        codec_args = ["-c:v", "libsvtav1", "-preset", settings.preset, "-crf", str(settings.crf),
                      "-svtav1-params", f"lp={threads}"]
    elif settings.codec == "hevc":
        codec_args = ["-c:v", "libx265", "-preset", settings.preset, "-crf", str(settings.crf),
                      "-x265-params", f"pools={threads}:frame-threads=1:log-level=error", "-tag:v", "hvc1"]
    else:
        raise EncodeError(f"Unknown archive codec {settings.codec!r}: use one of {', '.join(ENCODERS)}.")
    count = ["-frames:v", str(frames)] if frames else []
    run = ffmpeg_run(
        ["-threads", threads, "-i", str(source), "-map", "0:v:0", *count, *codec_args, "-fps_mode", "passthrough",
         "-an", "-f", "mp4", str(partial)],
        what=f"encode {source.name} with {settings.encoder}",
    )
    os.replace(partial, target)
    return run


def chunks_join(chunks: list[Path], audio_sources: list[Path], target: Path, *, video_offset: float) -> Run:
    """Join encoded ``chunks`` by stream copy, with the audio of ``audio_sources`` (the original
    segments, in order) copied as it is; the video is placed ``video_offset`` seconds into the
    audio's timeline, where the original's video started, so picture and sound line up as they
    did. Written to ``target``'s ``.part`` and moved into place."""
    partial = target.with_name(target.name + ".part")
    with tempfile.TemporaryDirectory() as folder:
        video_list = _concat_list(chunks, Path(folder), "video.txt")
        audio_list = _concat_list(audio_sources, Path(folder), "audio.txt")
        run = ffmpeg_run(
            ["-itsoffset", f"{video_offset:.6f}", "-f", "concat", "-safe", "0", "-i", str(video_list),
             "-f", "concat", "-safe", "0", "-i", str(audio_list),
             "-map", "0:v:0", "-map", "1:a:0?", "-c", "copy", "-movflags", "+faststart", "-f", "mp4", str(partial)],
            what="join the encoded chunks",
        )
    os.replace(partial, target)
    return run


# ---------------------------------------------------------------- quality


@dataclass(frozen=True)
class Quality:
    frames: int
    vmaf_mean: float
    vmaf_min: float
    psnr: float  # luma PSNR, dB, mean over frames
    ssim: float  # luma SSIM, mean over frames
    model: str
    run: Run


def vmaf_model_for(width: int, height: int) -> str:
    """The 4K model for 4K pictures (it models a viewer at 1.5 picture heights of a 4K screen)."""
    return VMAF_MODEL_4K if width * height >= 3840 * 2160 * 3 // 4 else VMAF_MODEL_HD


def quality_measure(distorted: Path, reference: Path, *, model: str, threads: int = 1) -> Quality:
    """VMAF (``model``), PSNR and SSIM of ``distorted`` against ``reference``, frame by frame."""
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "vmaf.json"
        graph = (
            # Frame i against frame i, whatever either file's timestamps (the encode keeps every frame).
            "[0:v]settb=1,setpts=N[d];[1:v]settb=1,setpts=N[r];"
            f"[d][r]libvmaf=model=version={model}:n_threads={max(1, threads)}"
            f":feature=name=psnr|name=float_ssim:log_fmt=json:log_path={log}:shortest=1"
        )
        run = ffmpeg_run(
            ["-threads", str(max(1, threads)), "-i", str(distorted), "-threads", str(max(1, threads)), "-i", str(reference),
             "-lavfi", graph, "-f", "null", "-"],
            what="measure VMAF, PSNR and SSIM",
        )
        data = json.loads(log.read_text())
    frames = data.get("frames") or []
    if not frames:
        raise EncodeError("VMAF compared no frame: the encoded chunk is empty.")
    pooled = data["pooled_metrics"]
    return Quality(
        frames=len(frames),
        vmaf_mean=float(pooled["vmaf"]["mean"]),
        vmaf_min=float(pooled["vmaf"]["min"]),
        psnr=float(pooled["psnr_y"]["mean"]),
        ssim=float(pooled["float_ssim"]["mean"]),
        model=model,
        run=run,
    )


@dataclass(frozen=True)
class ChunkResult:
    quality: Quality
    crf: int
    tries: int
    first_vmaf_mean: float | None  # the first try's, when the chunk was encoded again
    cpu_seconds: float  # every encode and every measure
    encode_seconds: float  # wall time of the encode kept


def chunk_archive(source: Path, target: Path, settings: EncodeSettings, *, retry_crf: int, vmaf_target: float, model: str) -> ChunkResult:
    """Encode one chunk and score it against its original; when its VMAF mean is below
    ``vmaf_target``, encode it once more at ``retry_crf`` (higher quality) and keep that."""
    run = video_encode(source, target, settings)
    quality = quality_measure(target, source, model=model, threads=settings.threads)
    cpu = run.cpu_seconds + quality.run.cpu_seconds
    if quality.vmaf_mean >= vmaf_target or retry_crf >= settings.crf:
        return ChunkResult(quality, settings.crf, 1, None, cpu, run.wall_seconds)
    first = quality.vmaf_mean
    again = EncodeSettings(settings.codec, settings.preset, retry_crf, settings.threads)
    run = video_encode(source, target, again)
    quality = quality_measure(target, source, model=model, threads=settings.threads)
    cpu += run.cpu_seconds + quality.run.cpu_seconds
    return ChunkResult(quality, retry_crf, 2, first, cpu, run.wall_seconds)


# ---------------------------------------------------------------- quality per recording


def video_bytes(path: Path, *, frames: int | None = None) -> tuple[int, int]:
    """(bytes, frames) of the first ``frames`` video packets of ``path`` (every one when None), by
    demux: the picture's own size, without the container or the sound."""
    total = count = 0
    with av.open(str(path)) as container:
        for packet in container.demux(container.streams.video[0]):
            if packet.size == 0:
                continue
            total += packet.size
            count += 1
            if frames and count >= frames:
                break
    return total, count


def sample_indices(chunks: int, samples: int) -> list[int]:
    """Which chunks the quality search samples: the first, the last and evenly between."""
    if samples >= chunks:
        return list(range(chunks))
    if samples <= 1:
        return [chunks // 2]
    return sorted({round(i * (chunks - 1) / (samples - 1)) for i in range(samples)})


@dataclass(frozen=True)
class SearchPoint:
    """The samples encoded at one CRF and scored against their originals."""

    crf: int
    vmaf_mean: float  # frame-weighted over the samples
    vmaf_min_sample: float  # the weakest sample's mean
    size_ratio: float  # encoded / original picture bytes of the samples


@dataclass(frozen=True)
class CrfChoice:
    """The CRF a recording is encoded at: the highest (smallest copy) the samples predict to reach
    the targets, with what was measured to say so."""

    crf: int
    predicted_vmaf_mean: float
    predicted_vmaf_min_sample: float
    predicted_size_ratio: float
    target_mean: float  # the gate's mean threshold plus the margin
    target_sample: float  # the gate's per-part threshold plus the margin
    crf_range: tuple[int, int]
    samples: list[dict[str, Any]]  # chunk index, frames and original picture bytes of each sample
    points: list[SearchPoint]
    cpu_seconds: float
    wall_seconds: float

    @property
    def reaches(self) -> bool:
        """Whether any CRF in range is predicted to reach the targets (else the best is chosen)."""
        return self.predicted_vmaf_mean >= self.target_mean and self.predicted_vmaf_min_sample >= self.target_sample

    def record(self) -> dict[str, Any]:
        """What is stored with the archive copy and written to the audit trail."""
        return {
            "crf": self.crf, "predicted_vmaf_mean": round(self.predicted_vmaf_mean, 2),
            "predicted_vmaf_min_sample": round(self.predicted_vmaf_min_sample, 2),
            "predicted_size_ratio": round(self.predicted_size_ratio, 4), "target_mean": self.target_mean,
            "target_sample": self.target_sample, "crf_range": list(self.crf_range), "reaches": self.reaches,
            "samples": self.samples,
            "points": [{"crf": p.crf, "vmaf_mean": round(p.vmaf_mean, 2), "vmaf_min_sample": round(p.vmaf_min_sample, 2),
                        "size_ratio": round(p.size_ratio, 4)} for p in self.points],
            "cpu_seconds": round(self.cpu_seconds, 1), "wall_seconds": round(self.wall_seconds, 1),
        }


def _line(points: list[tuple[int, float]], crf: float) -> float:
    """Piecewise-linear through ``points`` (sorted by CRF), extended by the end segments."""
    if len(points) == 1:
        return points[0][1]
    segments = list(zip(points, points[1:], strict=False))
    (c0, v0), (c1, v1) = next((s for s in segments if crf <= s[1][0]), segments[-1])
    return v0 + (v1 - v0) * (crf - c0) / (c1 - c0)


def _predict(points: list[SearchPoint], crf: int) -> tuple[float, float, float]:
    """Predicted (VMAF mean, weakest sample's VMAF, size ratio) at ``crf``. Quality never rises
    with the CRF (a measured rise is noise: held flat); size is interpolated in log space."""
    ordered = sorted(points, key=lambda p: p.crf)

    def falling(values: list[tuple[int, float]]) -> list[tuple[int, float]]:
        held: list[tuple[int, float]] = []
        for crf_at, value in values:
            held.append((crf_at, min(value, held[-1][1]) if held else value))
        return held

    mean = _line(falling([(p.crf, p.vmaf_mean) for p in ordered]), crf)
    weakest = _line(falling([(p.crf, p.vmaf_min_sample) for p in ordered]), crf)
    size = math.exp(_line([(p.crf, math.log(max(p.size_ratio, 1e-6))) for p in ordered], crf))
    return min(mean, 100.0), min(weakest, 100.0), size


def _choose(points: list[SearchPoint], low: int, high: int, target_mean: float, target_sample: float) -> int:
    for crf in range(high, low - 1, -1):
        mean, weakest, _ = _predict(points, crf)
        if mean >= target_mean and weakest >= target_sample:
            return crf
    return low


def crf_search(
    chunks: list[Path], folder: Path, settings: EncodeSettings, *, fps: float, model: str, vmaf_mean_min: float,
    vmaf_chunk_min: float, margin: float, crf_range: tuple[int, int], samples: int, sample_seconds: float, step: int = 10,
) -> CrfChoice:
    """Choose the CRF for a whole recording from a few samples of it: the first ``sample_seconds``
    (a GOP: each chunk starts on a keyframe) of up to ``samples`` chunks spread over the recording,
    encoded at ``settings.crf``, then ``step`` higher when that reached the targets (or lower when
    not), then at the CRF those two predict; VMAF for each. The highest CRF in ``crf_range``
    predicted to give a mean VMAF of ``vmaf_mean_min + margin`` and every sample ``vmaf_chunk_min +
    margin`` is chosen (the lowest of the range when none is). At most three encodes of the
    samples, whatever the recording's length. Work files go to ``folder`` and are removed."""
    low, high = crf_range
    target_mean, target_sample = vmaf_mean_min + margin, vmaf_chunk_min + margin
    frames = max(1, round(sample_seconds * fps))
    chosen = [chunks[i] for i in sample_indices(len(chunks), samples)]
    originals = [video_bytes(chunk, frames=frames) for chunk in chosen]
    folder.mkdir(parents=True, exist_ok=True)
    points: list[SearchPoint] = []
    cpu = wall = 0.0

    def measure(crf: int) -> SearchPoint:
        nonlocal cpu, wall
        scores: list[tuple[float, int]] = []
        encoded = 0
        for index, chunk in enumerate(chosen):
            target = folder / f"sample-{index}-crf{crf}.mp4"
            run = video_encode(chunk, target, EncodeSettings(settings.codec, settings.preset, crf, settings.threads), frames=frames)
            quality = quality_measure(target, chunk, model=model, threads=settings.threads)
            encoded += video_bytes(target)[0]
            scores.append((quality.vmaf_mean, quality.frames))
            cpu += run.cpu_seconds + quality.run.cpu_seconds
            wall += run.wall_seconds + quality.run.wall_seconds
            target.unlink(missing_ok=True)
        weight = sum(n for _, n in scores) or 1
        point = SearchPoint(crf, sum(v * n for v, n in scores) / weight, min(v for v, _ in scores),
                            encoded / max(1, sum(b for b, _ in originals)))
        points.append(point)
        return point

    first = measure(min(high, max(low, settings.crf)))
    passes = first.vmaf_mean >= target_mean and first.vmaf_min_sample >= target_sample
    second = min(high, first.crf + step) if passes else max(low, first.crf - step)
    if second != first.crf:
        measure(second)
    guess = _choose(points, low, high, target_mean, target_sample)
    if guess not in {p.crf for p in points}:
        measure(guess)
    crf = _choose(points, low, high, target_mean, target_sample)
    mean, weakest, size = _predict(points, crf)
    return CrfChoice(
        crf=crf, predicted_vmaf_mean=mean, predicted_vmaf_min_sample=weakest, predicted_size_ratio=size,
        target_mean=target_mean, target_sample=target_sample, crf_range=(low, high),
        samples=[{"chunk": i, "frames": n, "bytes": b} for i, (b, n) in zip(sample_indices(len(chunks), samples), originals, strict=True)],
        points=sorted(points, key=lambda p: p.crf), cpu_seconds=cpu, wall_seconds=wall,
    )


# ---------------------------------------------------------------- test and bench clips


def textured_clip_write(
    path: Path, *, width: int, height: int, seconds: float, fps: int = 30, gop_seconds: float = 1.0,
    bitrate: int | None = None, seed: int = 7,
) -> Path:
    """A clip shaped like what the edge records (H.264 High, no B-frames, an IDR every
    ``gop_seconds``, Opus 48 kHz, fragmented MP4) whose picture is hard to compress the way an
    operative field is: tissue-like Perlin texture, drifting (a camera's slow pan) and evolving,
    with fine sensor noise that changes every frame. For tests and the bench; never patient media."""
    path.parent.mkdir(parents=True, exist_ok=True)
    gop = max(1, round(gop_seconds * fps))
    rate = bitrate or max(2_000_000, width * height * fps * 2 // 9)  # about 55 Mbit/s at 4K30
    texture = (
        f"perlin=s={max(16, width // 4)}x{max(16, height // 4)}:r={fps}:octaves=6:persistence=0.6"
        f":xscale=0.6:yscale=0.6:tscale=0.3:random_mode=seed:seed={seed}"
    )
    picture = (
        f"format=gray,normalize,scale={width}:{height}:flags=bicubic,format=yuv420p,"
        "lutyuv=y='24+val*0.8':u=112:v=168,scroll=h=0.002:v=0.001,noise=alls=2:allf=t"
    )
    ffmpeg_run(
        ["-f", "lavfi", "-i", texture, "-f", "lavfi", "-i", "sine=f=440:r=48000", "-t", f"{seconds:.3f}",
         "-filter_complex", f"[0:v]{picture}[v]", "-map", "[v]", "-map", "1:a",
         "-c:v", "libx264", "-preset", "superfast", "-profile:v", "high",
         "-x264-params", f"bframes=0:scenecut=0:keyint={gop}:min-keyint={gop}",
         "-b:v", str(rate), "-maxrate", str(rate), "-bufsize", str(rate),
         "-c:a", "libopus", "-b:a", "64k", "-ac", "1",
         "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", str(path)],
        what="write a textured test clip",
    )
    return path

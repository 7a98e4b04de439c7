"""``python -m bench.archive``: what the long-term archive costs and saves, on 4K30 clips.

Two clips of ``--seconds`` each at 3840x2160 30 fps: the demo's clip (bars, a box and a counter,
H.264 25 Mbit/s, what ``make run`` plays) and a textured one (tissue-like Perlin texture that
drifts and evolves, with sensor noise, H.264 about 55 Mbit/s: recordings/encode.py). Each is cut
at its keyframes (1 s apart) into chunks, and the chunks are archived with the settings' defaults
by the same job a Celery worker runs per chunk (recordings.encode.chunk_archive: encode, VMAF with
the 4K model, PSNR, SSIM, once more at higher quality when below the threshold), by one worker
process and then by two, then joined with the sound and checked (frames, duration). Figures:

- ``archive_size_ratio``: archived / original bytes, per clip;
- ``archive_vmaf_mean`` (frame-weighted) and ``archive_vmaf_min_chunk``, per clip;
- ``archive_cpu_s_per_min_4k``: CPU seconds (encode + scoring, every try) per minute of 4K30;
- ``archive_speedup_2_workers``: wall time with one worker / with two (textured clip);
- ``archive_realtime_factor``: minutes of video per wall minute with two workers (textured clip).

The machine's load average is printed with them: other work on these cores slows the workers.
Prints a table, then one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orstream.settings")


def _settings() -> Any:
    import django
    from django.conf import settings

    django.setup()
    return settings


def _chunk_job(args: tuple[str, str, str, str, int, int, float, str]) -> dict[str, Any]:
    from recordings import encode

    source, target, codec, preset, crf, retry_crf, target_vmaf, model = args
    result = encode.chunk_archive(
        Path(source), Path(target), encode.EncodeSettings(codec, preset, crf, 1),
        retry_crf=retry_crf, vmaf_target=target_vmaf, model=model,
    )
    q = result.quality
    return {"frames": q.frames, "vmaf_mean": q.vmaf_mean, "psnr": q.psnr, "ssim": q.ssim, "crf": result.crf,
            "tries": result.tries, "cpu_s": result.cpu_seconds, "size": Path(target).stat().st_size}


def archive_clip(clip: Path, folder: Path, *, workers: int, conf: Any) -> dict[str, Any]:
    from recordings import encode

    chunks = encode.chunks_cut([clip], folder / "source", seconds=1.0)
    preset, crf = conf.ARCHIVE_AV1_PRESET, conf.ARCHIVE_AV1_CRF
    probe = encode.media_probe([clip])
    model = encode.vmaf_model_for(probe.width, probe.height)
    outputs = [folder / "out" / c.name for c in chunks]
    outputs[0].parent.mkdir(parents=True, exist_ok=True)
    jobs = [(str(c), str(o), "av1", preset, crf, max(0, crf - conf.ARCHIVE_RETRY_CRF_STEP), conf.ARCHIVE_VMAF_MEAN_MIN, model)
            for c, o in zip(chunks, outputs, strict=True)]
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_chunk_job, jobs))
    wall = time.monotonic() - started
    joined = folder / "archive.mp4"
    encode.chunks_join(outputs, [clip], joined, video_offset=probe.video_start)
    copy = encode.media_probe([joined])
    frames = sum(r["frames"] for r in results)
    return {
        "workers": workers, "chunks": len(chunks), "wall_s": wall, "seconds": probe.duration,
        "frames_ok": copy.video_frames == probe.video_frames and abs(copy.duration - probe.duration) < 0.5 / probe.fps,
        "size_ratio": joined.stat().st_size / clip.stat().st_size,
        "vmaf_mean": sum(r["vmaf_mean"] * r["frames"] for r in results) / frames,
        "vmaf_min_chunk": min(r["vmaf_mean"] for r in results),
        "psnr": sum(r["psnr"] * r["frames"] for r in results) / frames,
        "ssim": sum(r["ssim"] * r["frames"] for r in results) / frames,
        "retried": sum(1 for r in results if r["tries"] > 1),
        # The gate's rule (recordings.services.archive.archive_join) with the thresholds in force.
        "accepted": (sum(r["vmaf_mean"] * r["frames"] for r in results) / frames >= conf.ARCHIVE_VMAF_MEAN_MIN
                     and min(r["vmaf_mean"] for r in results) >= conf.ARCHIVE_VMAF_CHUNK_MIN
                     and joined.stat().st_size < clip.stat().st_size),
        "cpu_s": sum(r["cpu_s"] for r in results), "preset": preset, "crf": crf, "model": model,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args(argv)
    conf = _settings()
    from orstream.edge import demo
    from recordings import encode

    with tempfile.TemporaryDirectory(prefix="orstream-archive-bench-") as tmp:
        root = Path(tmp)
        print(f"making 4K30 clips of {args.seconds:g} s ...", flush=True)
        clips = {
            "demo": demo.generate(root / "demo.mp4", seconds=args.seconds),
            "textured": encode.textured_clip_write(root / "textured.mp4", width=3840, height=2160, seconds=args.seconds),
        }
        runs = {
            "demo": archive_clip(clips["demo"], root / "demo-2", workers=2, conf=conf),
            "textured_1": archive_clip(clips["textured"], root / "textured-1", workers=1, conf=conf),
            "textured": archive_clip(clips["textured"], root / "textured-2", workers=2, conf=conf),
        }
        load = os.getloadavg()[0]
    print(f"{'run':<12} {'workers':>7} {'chunks':>6} {'wall s':>7} {'CPU s':>7} {'size':>6} {'VMAF':>6} {'min':>6} "
          f"{'PSNR':>6} {'SSIM':>7} {'again':>5} frames gate")
    for name, r in runs.items():
        print(f"{name:<12} {r['workers']:>7} {r['chunks']:>6} {r['wall_s']:>7.1f} {r['cpu_s']:>7.1f} {r['size_ratio']:>6.3f} "
              f"{r['vmaf_mean']:>6.2f} {r['vmaf_min_chunk']:>6.2f} {r['psnr']:>6.2f} {r['ssim']:>7.4f} {r['retried']:>5} "
              f"{'ok' if r['frames_ok'] else 'MISMATCH':>6} {'accepted' if r['accepted'] else 'flagged'}")
    textured = runs["textured"]
    minutes = textured["seconds"] / 60
    figures = {
        "archive_settings": f"SVT-AV1 preset {textured['preset']} CRF {textured['crf']}, VMAF model {textured['model']}",
        "archive_size_ratio": {"demo_4k": round(runs["demo"]["size_ratio"], 4), "textured_4k": round(textured["size_ratio"], 4)},
        "archive_vmaf_mean": {"demo_4k": round(runs["demo"]["vmaf_mean"], 2), "textured_4k": round(textured["vmaf_mean"], 2)},
        "archive_vmaf_min_chunk": {"demo_4k": round(runs["demo"]["vmaf_min_chunk"], 2),
                                   "textured_4k": round(textured["vmaf_min_chunk"], 2)},
        "archive_psnr_db": round(textured["psnr"], 2),
        "archive_ssim": round(textured["ssim"], 4),
        "archive_cpu_s_per_min_4k": round((runs["textured_1"]["cpu_s"] + textured["cpu_s"]) / 2 / minutes, 1),
        "archive_speedup_2_workers": round(runs["textured_1"]["wall_s"] / textured["wall_s"], 2),
        "archive_realtime_factor": round(minutes / (textured["wall_s"] / 60), 4),
        "archive_frames_ok": all(r["frames_ok"] for r in runs.values()),
        "archive_gate": {"demo_4k": "accepted" if runs["demo"]["accepted"] else "flagged",
                         "textured_4k": "accepted" if textured["accepted"] else "flagged"},
        "archive_load_avg_1m": round(load, 2),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())

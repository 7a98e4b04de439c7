"""``python -m bench.archive``: what the long-term archive costs and saves, on 4K30 clips.

Two clips of ``--seconds`` each at 3840x2160 30 fps: the demo's clip (bars, a box and a counter,
H.264 25 Mbit/s, what ``make run`` plays) and a textured one (tissue-like Perlin texture that
drifts and evolves, with sensor noise, H.264 about 55 Mbit/s: recordings/encode.py). Each is cut
at its keyframes (1 s apart) into chunks; the archive's CRF search (recordings.encode.crf_search,
the settings' defaults) chooses the CRF from samples of the clip; the chunks are archived at that
CRF by the job a Celery worker runs per chunk (recordings.encode.chunk_archive: encode, VMAF with
the 4K model, PSNR, SSIM, once more at higher quality under the per-chunk threshold), by one
worker process and then by two (textured clip), then joined with the sound and checked (frames,
duration). Where the search predicts no copy smaller than the original, nothing is encoded: the
original is the archive (size ratio 1). The same run measures the floor: SVT-AV1 preset 10 at a
fixed CRF, no search, no second try. Figures:

- ``archive_size_ratio``: archived / original bytes, per clip;
- ``archive_vmaf_mean`` (frame-weighted) and ``archive_vmaf_min_chunk``, per clip;
- ``archive_crf_chosen``, ``archive_search_cpu_s``, ``archive_search_wall_s``: the search, per clip
  (its cost depends on the samples, not on the recording's length);
- ``archive_cpu_s_per_min_4k``: CPU seconds (encode + scoring, every try) per minute of 4K30, the
  chunks (the search is counted apart);
- ``archive_speedup_2_workers``: wall time of the chunks with one worker / with two (textured);
  the workers are started and their code loaded before the clock starts, as Celery's are;
- ``archive_speedup_ceiling_2_workers``: the same for one textured chunk's job twice (identical,
  perfectly balanced jobs, nothing to join): the most two workers gain with this encoder on these
  cores, the ceiling ``archive_speedup_2_workers`` is read against;
- ``archive_realtime_factor``: minutes of video per wall minute of the chunks with two workers;
- ``archive_floor``: size, VMAF, encode speed and gate of the floor, per clip.

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

# The floor the issue measured on this machine class: SVT-AV1 preset 10 at one fixed CRF.
FLOOR_PRESET, FLOOR_CRF = "10", 20


def _settings() -> Any:
    import django
    from django.conf import settings

    django.setup()
    return settings


def _chunk_job(args: tuple[str, str, str, str, int, int, float, str]) -> dict[str, Any]:
    from recordings import encode

    source, target, codec, preset, crf, retry_crf, retry_below, model = args
    result = encode.chunk_archive(
        Path(source), Path(target), encode.EncodeSettings(codec, preset, crf, 1),
        retry_crf=retry_crf, vmaf_target=retry_below, model=model,
    )
    q = result.quality
    return {"frames": q.frames, "vmaf_mean": q.vmaf_mean, "psnr": q.psnr, "ssim": q.ssim, "crf": result.crf,
            "tries": result.tries, "cpu_s": result.cpu_seconds, "encode_s": result.encode_seconds,
            "size": Path(target).stat().st_size}


def quality_search(clip: Path, folder: Path, *, conf: Any) -> dict[str, Any]:
    """The archive's CRF search on ``clip`` cut into 1 s chunks, with the settings' defaults (what
    recordings.services.archive.archive_prepare runs before any chunk is encoded)."""
    from recordings import encode

    chunks = encode.chunks_cut([clip], folder / "source", seconds=1.0)
    probe = encode.media_probe([clip])
    model = encode.vmaf_model_for(probe.width, probe.height)
    started = time.monotonic()
    choice = encode.crf_search(
        chunks, folder / "search", encode.EncodeSettings("av1", conf.ARCHIVE_AV1_PRESET, conf.ARCHIVE_AV1_CRF, 1),
        fps=probe.fps, model=model, vmaf_mean_min=conf.ARCHIVE_VMAF_MEAN_MIN, vmaf_chunk_min=conf.ARCHIVE_VMAF_CHUNK_MIN,
        margin=conf.ARCHIVE_SEARCH_MARGIN, crf_range=(conf.ARCHIVE_AV1_CRF_MIN, conf.ARCHIVE_AV1_CRF_MAX),
        samples=conf.ARCHIVE_SEARCH_SAMPLES, sample_seconds=conf.ARCHIVE_SEARCH_SAMPLE_SECONDS,
    )
    return {"choice": choice, "wall_s": time.monotonic() - started, "chunks": chunks, "probe": probe, "model": model}


def _warm(_: int) -> None:
    """Load the archive's code in a worker before timing, as a running Celery worker has it loaded."""
    from recordings import encode  # noqa: F401


def _warm_pool(pool: ProcessPoolExecutor, workers: int) -> None:
    list(pool.map(_warm, range(2 * workers)))


def parallel_ceiling(chunk: Path, folder: Path, *, preset: str, crf: int, model: str, workers: int = 2) -> dict[str, float]:
    """The same chunk's job ``workers`` times, one after the other, then all at once: identical,
    perfectly balanced jobs with nothing to join, the most ``workers`` workers can gain with this
    encoder on these cores."""
    folder.mkdir(parents=True, exist_ok=True)

    def jobs(tag: str) -> list[tuple[str, str, str, str, int, int, float, str]]:
        return [(str(chunk), str(folder / f"{tag}-{i}.mp4"), "av1", preset, crf, crf, 0.0, model) for i in range(workers)]

    walls = {}
    for label, size in (("one", 1), ("many", workers)):
        with ProcessPoolExecutor(max_workers=size) as pool:
            _warm_pool(pool, size)
            started = time.monotonic()
            list(pool.map(_chunk_job, jobs(label)))
            walls[label] = time.monotonic() - started
    return {"one_worker_s": walls["one"], "workers_s": walls["many"], "speedup": walls["one"] / walls["many"]}


def archive_clip(clip: Path, folder: Path, *, workers: int, preset: str, crf: int, retry_crf: int, retry_below: float,
                 conf: Any, chunks: list[Path]) -> dict[str, Any]:
    """Encode ``chunks`` of ``clip`` at ``crf`` (each once more at ``retry_crf`` under ``retry_below``)
    with ``workers`` processes, the job a Celery worker runs per chunk, then join and check."""
    from recordings import encode

    probe = encode.media_probe([clip])
    model = encode.vmaf_model_for(probe.width, probe.height)
    outputs = [folder / "out" / c.name for c in chunks]
    outputs[0].parent.mkdir(parents=True, exist_ok=True)
    jobs = [(str(c), str(o), "av1", preset, crf, retry_crf, retry_below, model) for c, o in zip(chunks, outputs, strict=True)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        _warm_pool(pool, workers)
        started = time.monotonic()
        results = list(pool.map(_chunk_job, jobs))
        wall = time.monotonic() - started
    joined = folder / "archive.mp4"
    encode.chunks_join(outputs, [clip], joined, video_offset=probe.video_start)
    copy = encode.media_probe([joined])
    frames = sum(r["frames"] for r in results)
    vmaf = sum(r["vmaf_mean"] * r["frames"] for r in results) / frames
    size_ratio = joined.stat().st_size / clip.stat().st_size
    passes = vmaf >= conf.ARCHIVE_VMAF_MEAN_MIN and min(r["vmaf_mean"] for r in results) >= conf.ARCHIVE_VMAF_CHUNK_MIN
    return {
        "workers": workers, "chunks": len(chunks), "wall_s": wall, "seconds": probe.duration,
        "frames_ok": copy.video_frames == probe.video_frames and abs(copy.duration - probe.duration) < 0.5 / probe.fps,
        "size_ratio": size_ratio, "vmaf_mean": vmaf, "vmaf_min_chunk": min(r["vmaf_mean"] for r in results),
        "psnr": sum(r["psnr"] * r["frames"] for r in results) / frames,
        "ssim": sum(r["ssim"] * r["frames"] for r in results) / frames,
        "retried": sum(1 for r in results if r["tries"] > 1),
        # The gate's rule (recordings.services.archive.archive_join) with the thresholds in force.
        "gate": "accepted" if passes and size_ratio < 1 else ("original kept" if passes else "flagged"),
        "cpu_s": sum(r["cpu_s"] for r in results), "encode_fps": frames / sum(r["encode_s"] for r in results),
        "preset": preset, "crf": crf, "model": model,
    }


def _kept(search: dict[str, Any]) -> dict[str, Any]:
    """The search predicts no copy smaller than the original: nothing is encoded, the original is
    the archive (size ratio 1, the original's own quality)."""
    choice = search["choice"]
    return {"workers": 0, "chunks": len(search["chunks"]), "wall_s": 0.0, "seconds": search["probe"].duration,
            "frames_ok": True, "size_ratio": 1.0, "vmaf_mean": 100.0, "vmaf_min_chunk": 100.0, "psnr": float("inf"),
            "ssim": 1.0, "retried": 0, "gate": "original kept", "cpu_s": 0.0, "encode_fps": 0.0,
            "preset": "", "crf": choice.crf, "model": search["model"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args(argv)
    conf = _settings()
    from orstream.edge import demo
    from recordings import encode

    preset, step = conf.ARCHIVE_AV1_PRESET, conf.ARCHIVE_RETRY_CRF_STEP
    with tempfile.TemporaryDirectory(prefix="orstream-archive-bench-") as tmp:
        root = Path(tmp)
        print(f"making 4K30 clips of {args.seconds:g} s ...", flush=True)
        clips = {
            "demo": demo.generate(root / "demo.mp4", seconds=args.seconds),
            "textured": encode.textured_clip_write(root / "textured.mp4", width=3840, height=2160, seconds=args.seconds),
        }
        searches = {name: quality_search(clip, root / f"{name}-search", conf=conf) for name, clip in clips.items()}
        runs: dict[str, dict[str, Any]] = {}
        for name, workers_list in (("demo", (2,)), ("textured", (1, 2))):
            search = searches[name]
            crf = search["choice"].crf
            for workers in workers_list:
                label = name if workers == 2 else f"{name}_1"
                if search["choice"].predicted_size_ratio >= 1.0:
                    runs[label] = _kept(search)
                    continue
                runs[label] = archive_clip(
                    clips[name], root / f"{label}-{workers}", workers=workers, preset=preset, crf=crf,
                    retry_crf=max(0, crf - step), retry_below=conf.ARCHIVE_VMAF_CHUNK_MIN, conf=conf,
                    chunks=search["chunks"],
                )
        textured_crf = searches["textured"]["choice"].crf
        ceiling = parallel_ceiling(searches["textured"]["chunks"][0], root / "ceiling", preset=preset, crf=textured_crf,
                                   model=encode.vmaf_model_for(3840, 2160))
        for name in clips:  # the floor: preset 10 at a fixed CRF, no search and no second try
            runs[f"floor_{name}"] = archive_clip(
                clips[name], root / f"floor-{name}", workers=2, preset=FLOOR_PRESET, crf=FLOOR_CRF, retry_crf=FLOOR_CRF,
                retry_below=0.0, conf=conf, chunks=searches[name]["chunks"],
            )
        load = os.getloadavg()[0]
    print(f"{'run':<15} {'workers':>7} {'CRF':>4} {'wall s':>7} {'CPU s':>7} {'enc fps':>7} {'size':>6} {'VMAF':>6} {'min':>6} "
          f"{'PSNR':>6} {'SSIM':>7} {'again':>5} frames gate")
    for name, r in runs.items():
        print(f"{name:<15} {r['workers']:>7} {r['crf']:>4} {r['wall_s']:>7.1f} {r['cpu_s']:>7.1f} {r['encode_fps']:>7.2f} "
              f"{r['size_ratio']:>6.3f} {r['vmaf_mean']:>6.2f} {r['vmaf_min_chunk']:>6.2f} {r['psnr']:>6.2f} {r['ssim']:>7.4f} "
              f"{r['retried']:>5} {'ok' if r['frames_ok'] else 'MISMATCH':>6} {r['gate']}")
    for name, search in searches.items():
        c = search["choice"]
        tried = ", ".join(f"CRF {p.crf}: VMAF {p.vmaf_mean:.2f} (weakest {p.vmaf_min_sample:.2f}), size {p.size_ratio:.3f}" for p in c.points)
        print(f"search {name}: {len(c.samples)} samples of {c.samples[0]['frames']} frames; {tried}; chose CRF {c.crf}, "
              f"predicted VMAF {c.predicted_vmaf_mean:.2f}, size {c.predicted_size_ratio:.3f}; "
              f"{c.cpu_seconds:.1f} CPU s, {search['wall_s']:.1f} s wall")
    print(f"ceiling: one textured chunk's job twice, one worker {ceiling['one_worker_s']:.1f} s, two workers "
          f"{ceiling['workers_s']:.1f} s: {ceiling['speedup']:.2f}x")
    textured, one = runs["textured"], runs["textured_1"]
    minutes = textured["seconds"] / 60

    def per_clip(key: str, digits: int) -> dict[str, float]:
        return {"demo_4k": round(runs["demo"][key], digits), "textured_4k": round(textured[key], digits)}

    def floor(name: str) -> dict[str, Any]:
        r = runs[f"floor_{name}"]
        return {"size_ratio": round(r["size_ratio"], 4), "vmaf_mean": round(r["vmaf_mean"], 2),
                "vmaf_min_chunk": round(r["vmaf_min_chunk"], 2), "encode_fps": round(r["encode_fps"], 2), "gate": r["gate"]}

    figures = {
        "archive_settings": f"SVT-AV1 preset {preset}, CRF chosen per recording in "
                            f"{conf.ARCHIVE_AV1_CRF_MIN}..{conf.ARCHIVE_AV1_CRF_MAX} from {conf.ARCHIVE_SEARCH_SAMPLES} samples "
                            f"of {conf.ARCHIVE_SEARCH_SAMPLE_SECONDS:g} s, VMAF model {textured['model']}",
        "archive_crf_chosen": {"demo_4k": searches["demo"]["choice"].crf, "textured_4k": searches["textured"]["choice"].crf},
        "archive_size_ratio": per_clip("size_ratio", 4),
        "archive_vmaf_mean": per_clip("vmaf_mean", 2),
        "archive_vmaf_min_chunk": per_clip("vmaf_min_chunk", 2),
        "archive_psnr_db": round(textured["psnr"], 2),
        "archive_ssim": round(textured["ssim"], 4),
        "archive_cpu_s_per_min_4k": round((one["cpu_s"] + textured["cpu_s"]) / 2 / minutes, 1),
        "archive_search_cpu_s": {name: round(s["choice"].cpu_seconds, 1) for name, s in
                                 (("demo_4k", searches["demo"]), ("textured_4k", searches["textured"]))},
        "archive_search_wall_s": {name: round(s["wall_s"], 1) for name, s in
                                  (("demo_4k", searches["demo"]), ("textured_4k", searches["textured"]))},
        "archive_speedup_2_workers": round(one["wall_s"] / textured["wall_s"], 2) if textured["wall_s"] else None,
        "archive_speedup_ceiling_2_workers": round(ceiling["speedup"], 2),
        "archive_realtime_factor": round(minutes / (textured["wall_s"] / 60), 4) if textured["wall_s"] else None,
        "archive_frames_ok": all(r["frames_ok"] for r in runs.values()),
        "archive_gate": {"demo_4k": runs["demo"]["gate"], "textured_4k": textured["gate"]},
        "archive_floor": {"settings": f"SVT-AV1 preset {FLOOR_PRESET} CRF {FLOOR_CRF} fixed, no second try",
                          "demo_4k": floor("demo"), "textured_4k": floor("textured")},
        "archive_load_avg_1m": round(load, 2),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())

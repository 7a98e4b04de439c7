"""``python -m bench.hospital``: what a DICOM video export costs, against a real Orthanc.

The export's own steps (hospital.video and hospital.dimse / hospital.dicomweb, as the Celery job
runs them, without the database): stream-copy a recording into DICOM video parts, write the
instances, store them and read each back to compare its video.

- ``dicom_export_s_per_min_1080p``: wall seconds per minute of recording, a 1080p30 H.264 clip
  (``--seconds-1080p``), stored by C-STORE and read back by C-GET (no re-encode: .102);
- ``dicom_export_s_per_min_4k``: the same for 4K30, which needs HEVC (.107): the clip is cut at
  its keyframes and each chunk encoded with x265 by recordings.encode (the archive's encode), by
  1 worker process and by 2, then joined, exported and read back; one figure per worker count;
- ``stow_mb_s``: MB of the 1080p instances over the wall time of the whole DICOMweb path (parts
  and instances written, STOW-RS to Orthanc's DICOMweb plugin, each read back by WADO-RS and
  compared): a floor for the STOW-RS alone.

Prints a table (with the load average: other work on these cores slows every figure), then one
JSON object on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orstream.settings")


def _setup() -> None:
    import django

    django.setup()


def _encode_chunk(args: tuple[str, str]) -> str:
    from recordings import encode

    source, target = args
    encode.video_encode(Path(source), Path(target), encode.EncodeSettings("hevc", "fast", 22, 1))
    return target


def _export(sources: list[str], folder: Path, node: Any, pacs: Any, *, stow: bool) -> tuple[int, float]:
    """Export ``sources`` as the job does; returns (bytes stored, seconds of video)."""
    from pydicom.encaps import generate_fragments
    from pydicom.uid import generate_uid

    from hospital import dicomweb, dimse, video

    facts = video.video_facts(sources[0])
    syntax = video.transfer_syntax_for(facts)
    parts = video.parts_write(sources, folder / "parts", max_bytes=4_000_000_000)
    study = video.Study(
        patient={"id": "BENCH-0001", "name": "Bench^Patient"}, study_instance_uid=generate_uid(), study_id="BENCH",
        accession_number="BENCH", study_description="bench", study_at=datetime.now(), modality="GM", station_name="BENCH",
        institution="", series_instance_uid=generate_uid(), series_description="bench", series_number=1,
    )
    files, uids = [], []
    for number, part in enumerate(parts, start=1):
        uid = generate_uid()
        files.append(video.instance_write(part, folder / f"i{number}.dcm", study=study, facts=facts, sop_class=video.VIDEO_MICROSCOPIC,
                                          transfer_syntax=syntax, sop_instance_uid=uid, instance_number=number,
                                          acquired_at=datetime.now()))
        uids.append(uid)
    if stow:
        dicomweb.stow(pacs.dicomweb, files, study_uid=study.study_instance_uid)
    else:
        dimse.store(node, files, sop_class=video.VIDEO_MICROSCOPIC, transfer_syntax=str(syntax))
    for uid, part in zip(uids, parts, strict=True):
        if stow:
            stored = dicomweb.retrieve(pacs.dicomweb, study_uid=study.study_instance_uid,
                                       series_uid=study.series_instance_uid, instance_uid=uid)
        else:
            stored = dimse.get(node, study_uid=study.study_instance_uid, series_uid=study.series_instance_uid,
                               instance_uid=uid, sop_class=video.VIDEO_MICROSCOPIC, transfer_syntax=str(syntax))
        fragment = list(generate_fragments(stored.PixelData))[1]
        if fragment[: part.size] != part.path.read_bytes():
            raise RuntimeError("read-back video differs from what was sent")
    return sum(f.stat().st_size for f in files), sum(p.duration for p in parts)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds-1080p", type=float, default=30.0)
    parser.add_argument("--seconds-4k", type=float, default=4.0)
    args = parser.parse_args()
    _setup()
    from hospital import dimse
    from orstream.edge import demo
    from recordings import encode
    from tests.hospital.servers import orthanc_start

    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pacs = orthanc_start(folder / "orthanc")
        try:
            node = dimse.Node(name="bench Orthanc", ae_title=pacs.ae_title, host="127.0.0.1", port=pacs.dicom_port,
                              calling_ae_title="ORSTREAM")
            clip = demo.generate(folder / "1080p.mp4", width=1920, height=1080, fps=30, seconds=args.seconds_1080p,
                                 bitrate=8_000_000)
            started = time.monotonic()
            size, duration = _export([str(clip)], folder / "c1080", node, pacs, stow=False)
            wall = time.monotonic() - started
            figures["dicom_export_s_per_min_1080p"] = round(wall / duration * 60, 2)
            print(f"1080p30 {duration:.1f} s, {size / 1e6:.1f} MB: C-STORE + C-GET in {wall:.2f} s")
            started = time.monotonic()
            size, duration = _export([str(clip)], folder / "s1080", node, pacs, stow=True)
            stow_wall = time.monotonic() - started
            figures["stow_mb_s"] = round(size / 1e6 / stow_wall, 1)
            print(f"1080p30 {size / 1e6:.1f} MB: STOW-RS + WADO-RS in {stow_wall:.2f} s (incl. writing the instances)")

            clip4k = demo.generate(folder / "4k.mp4", width=3840, height=2160, fps=30, seconds=args.seconds_4k)
            per_workers = {}
            for workers in (1, 2):
                started = time.monotonic()
                chunks = encode.chunks_cut([clip4k], folder / f"chunks{workers}", seconds=1.0)
                jobs = [(str(c), str(c.with_name(c.stem + "-hevc.mp4"))) for c in chunks]
                with ProcessPoolExecutor(max_workers=workers) as pool:
                    encoded = [Path(p) for p in pool.map(_encode_chunk, jobs)]
                joined = folder / f"hevc{workers}.mp4"
                encode.chunks_join(encoded, [clip4k], joined, video_offset=0.0)
                size, duration = _export([str(joined)], folder / f"c4k{workers}", node, pacs, stow=False)
                wall = time.monotonic() - started
                per_workers[str(workers)] = round(wall / duration * 60, 1)
                print(f"4K30 {duration:.1f} s -> HEVC with {workers} worker(s), C-STORE + C-GET: {wall:.1f} s")
            figures["dicom_export_s_per_min_4k"] = per_workers
        finally:
            pacs.stop()
    figures["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(f"{'figure':<32}value")
    for key, value in figures.items():
        print(f"{key:<32}{value}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make bench`` machinery at toy scale: it runs end to end and reports every figure.

No timing is asserted here: on a 320x240 clip with two viewers the figures mean nothing, and
performance is measured only by ``make bench`` on the real 4K source.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]

NUMERIC_FIGURES = (
    "viewers_4k30",
    "viewers_4k60",
    "edge_us_per_packet",
    "p99_lag_ms",
    "loss_pct",
    "stock_us_per_packet",
    "mediarelay_fps_1viewer",
    "floor_us_per_packet",
    "ingest_record_cpu_pct",
    "rss_mb_per_viewer",
    "join_to_picture_ms",
)


def test_tiny_bench_prints_a_table_then_every_figure_as_the_last_json_line(tmp_path: pathlib.Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.edge", "--tiny", "--work-dir", str(tmp_path), "--quiet-wait", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert "viewers_4k30" in run.stdout.split(lines[-1])[0], "a human-readable table comes before the JSON"

    missing = {key: result.get(key) for key in NUMERIC_FIGURES if not _is_number(result.get(key))}
    assert not missing, f"figures without a number: {missing}; errors: {result.get('errors')}"
    assert result["machine"]["cores"] >= 1 and result["machine"]["cpu"]
    assert result["aiortc"] and "320x240" in result["source"]
    # the edge steps really ran viewers through the edge, and the stock baseline through aiortc
    assert [step["viewers"] for step in result["steps"]] == [1, 2]
    assert all(step["joined"] == step["viewers"] for step in result["steps"]), result["steps"]
    # with estimation and pacing on: every edge viewer sent transport-cc feedback and was paced
    assert all(step["viewers_estimating"] == step["viewers_paced"] == step["viewers"] for step in result["steps"]), result["steps"]
    assert [step["viewers"] for step in result["steps_60fps"]] == [1, 2]
    assert result["stock"]["joined"] == 2 and result["relay"]["joined"] == 1
    assert set(result["targets"]) >= {"edge_us_per_packet", "viewers_4k30", "join_to_picture_ms"}
    # the recording made for the ingest figure is cleaned up; the clip stays cached for the next run
    assert [p.name for p in tmp_path.iterdir() if p.is_dir() and p.name != "logs"] == []
    assert any(p.suffix == ".mp4" for p in tmp_path.iterdir())


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

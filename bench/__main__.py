"""``make bench``: the edge's figures (``bench.edge``), the browser's ingest-to-display
delay (``bench.browser``), how fast a Chromium publisher ramps up (``bench.ramp``), what a
mentor behind a weak link sees (``bench.weak``), what the long-term archive costs and saves
(``bench.archive``) and what a DICOM video export to a PACS costs (``bench.hospital``),
each printed as it runs, then one JSON object merging them on the last line. Each part runs in a process of its own so one's load never sits in the other's figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def run(module: str, *args: str) -> dict[str, Any]:
    """Run one benchmark, echo its output, return the JSON object on its last line (or an error)."""
    process = subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    last = ""
    for line in process.stdout:
        print(line, end="", flush=True)
        if line.strip():
            last = line.strip()
    code = process.wait()
    try:
        figures = json.loads(last)
    except ValueError:
        return {"error": f"{module} exited with {code} and printed no JSON line"}
    return figures if isinstance(figures, dict) else {"error": f"{module} printed {last[:80]!r}"}


def weak_links() -> dict[str, Any]:
    """A Chromium mentor behind shaped links (bench.weak, needs root): what it sees."""
    out: dict[str, Any] = {}
    for rate in ("10mbit", "5mbit", "40mbit"):
        result = run("bench.weak", "--rate", rate, "--seconds", "60")
        out[f"weak_link_{rate}"] = {k: result.get(k) for k in (
            "first_picture_s", "fps", "freeze_s", "freezes", "packets_lost", "width", "height",
            "lower_layer_cpu_pct", "load_avg_1m", "error") if k in result}
        if rate == "10mbit" and "lower_layer_cpu_pct" in result:
            out["lower_layer_cpu_pct"] = result["lower_layer_cpu_pct"]
    up = run("bench.weak", "--rate", "10mbit", "--change-to", "40mbit", "--change-at", "25", "--seconds", "50")
    out["layer_up_s"] = up.get("to_full_width_s")
    down = run("bench.weak", "--rate", "40mbit", "--change-to", "10mbit", "--change-at", "20", "--seconds", "35")
    out["layer_down_s"] = down.get("freeze_to_lower_s")
    out["layer_down_to_lower_s"] = down.get("to_lower_width_s")
    return out


def main() -> int:
    edge = run("bench.edge", *sys.argv[1:])
    browser = run("bench.browser", "--source", "clip")
    merged = dict(edge)
    cases = browser.get("ingest_to_display", {})
    for case, key in (("1080p30", "1080p"), ("4K30", "4k")):
        result = cases.get(case) or {}
        merged[f"g2g_p50_ms_{key}"] = result.get("p50_ms")
        merged[f"g2g_p95_ms_{key}"] = result.get("p95_ms")
        merged[f"g2g_fps_{key}"] = result.get("fps_displayed")
    if "error" in browser:
        merged["g2g_error"] = browser["error"]
    ramp = run("bench.ramp")
    merged["publisher_ramp_s"] = ramp.get("publisher_ramp_s")
    merged["publisher_ramp"] = {k: ramp.get(k) for k in (
        "max_bitrate_bps", "peak_send_bps", "available_outgoing_2mbit_s", "resolution", "feedback_sent",
        "load_avg_1m", "error") if k in ramp}
    merged.update(weak_links())
    merged.update(run("bench.archive"))
    merged.update(run("bench.hospital"))
    merged["g2g_definition"] = (
        "edge ingest to display in headless Chromium on loopback (H.264 High clip looped by the edge); "
        "camera and encoder delay come on top"
    )
    print(json.dumps(merged))
    return 0 if "error" not in edge else 1


if __name__ == "__main__":
    sys.exit(main())

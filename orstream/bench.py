"""``make bench``: the edge's figures (``orstream.edge.bench``) and the browser's ingest-to-display
delay (``frontend.bench``), each printed as it runs, then one JSON object merging both on the last
line. Each part runs in a process of its own so one's load never sits in the other's figures.
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


def main() -> int:
    edge = run("orstream.edge.bench", *sys.argv[1:])
    browser = run("frontend.bench", "--source", "clip")
    merged = dict(edge)
    cases = browser.get("ingest_to_display", {})
    for case, key in (("1080p30", "1080p"), ("4K30", "4k")):
        result = cases.get(case) or {}
        merged[f"g2g_p50_ms_{key}"] = result.get("p50_ms")
        merged[f"g2g_p95_ms_{key}"] = result.get("p95_ms")
        merged[f"g2g_fps_{key}"] = result.get("fps_displayed")
    if "error" in browser:
        merged["g2g_error"] = browser["error"]
    merged["g2g_definition"] = (
        "edge ingest to display in headless Chromium on loopback (H.264 High clip looped by the edge); "
        "camera and encoder delay come on top"
    )
    print(json.dumps(merged))
    return 0 if "error" not in edge else 1


if __name__ == "__main__":
    sys.exit(main())

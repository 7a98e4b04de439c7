"""10,000 mutated inputs at a running edge, a second session watching (bench/fuzz.py does the work)."""

from __future__ import annotations

from pathlib import Path

from bench import fuzz


async def test_ten_thousand_mutated_inputs_crash_nothing_and_the_watcher_loses_no_frame(tmp_path: Path) -> None:
    result = await fuzz.run(inputs=10_000, seed=1, work=tmp_path, say=lambda text: None)
    print(fuzz.table(result))  # the figures, for whoever reads the test's output
    assert result["inputs_tried"] >= 10_000
    assert result["edge_alive"] and result["edge_exit_code"] == 0
    assert result["server_errors"] == 0, result["outcomes"]
    assert result["tracebacks"] == 0, (tmp_path / "edge.log").read_text()[-4000:]
    # Every kind of input got through to the edge, and most junk datagrams were refused early.
    assert all(result["outcomes"][kind].get("sent", 0) > 0 for kind in ("stun", "junk", "rtp", "rtcp"))
    assert all(result["outcomes"][kind].get("4xx", 0) > 0 for kind in ("sdp_viewer", "sdp_publisher", "sdp_whip", "signalling"))
    assert result["edge_drops"]["datagram"] > 0 and result["edge_drops"]["stun"] > 0
    # Junk on the UDP ports writes a line a minute per kind, not a line per datagram.
    assert result["phases"]["datagrams"]["log_lines"] <= 4
    # The watching session went on: connected, nothing missing, at the source's rate.
    assert result["watcher_connection"] == "connected" and result["watcher_overflows"] == 0
    assert result["watcher_missing_frames"] == 0
    assert result["phases"]["datagrams"]["watcher_fps"] >= 27

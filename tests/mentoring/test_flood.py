"""A chat flood and a WebSocket fuzz at a real site (daphne in a process of its own), a mentor
working meanwhile: bench/site.py does the work, ``make security`` prints its figures. Asserted
here: the flood is cut off by the budgets, the site's memory stays bounded (a generous bound:
the figure itself belongs to the report), no traceback, nothing a browser could not parse."""

from __future__ import annotations

from pathlib import Path

from bench import site


def test_a_chat_flood_is_cut_off_and_mutated_frames_crash_nothing(tmp_path: Path) -> None:
    result = site.run(flood_seconds=5, frames=1500, seed=3, work=tmp_path, say=print)
    print(site.table(result))
    flood = result["flood"]
    assert flood.get("closed 4429", 0) >= 1, flood  # cut off, not let run
    assert result["chat_rows"] < 400  # the budgets' bursts over the connections a minute allows
    assert result["rss_settled_mb"] - result["rss_before_mb"] < 150, "the site's memory grew with the flood"
    assert result["mentor_stayed_connected"]  # how fast its messages went is a figure, in the report
    assert result["mentor_invalid_json"] == 0 and "invalid JSON from the site" not in result["fuzz"]
    assert result["frames_fuzzed"] == 1500
    assert result["tracebacks"] == 0, (tmp_path / "site.log").read_text()[-5000:]
    assert result["site_alive"]

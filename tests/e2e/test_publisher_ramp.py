"""A Chromium publisher (as the OR console) gets transport-cc feedback from the edge, and its own
congestion control acts on it: its bandwidth estimate rises far faster than the ~8 % a second it
manages without feedback. Chromium's stats say so; nothing here is timed.
"""

from __future__ import annotations

import pytest

from bench import ramp as bench_ramp

from .conftest import CHROMIUM

pytestmark = pytest.mark.e2e


def test_a_chromium_publisher_ramps_up_on_the_edges_feedback() -> None:
    result = bench_ramp.measure(
        chromium=str(CHROMIUM), clips=bench_ramp.ROOT / "var" / "bench-browser", max_bitrate=8_000_000, seconds=10
    )
    assert result["feedback_sent"] > 20, "the edge sent the publisher transport-cc feedback"
    # Without feedback Chromium starts at 300 kbit/s and grows ~8 % a second: under 700 kbit/s
    # after 10 s. On the edge's feedback it probes and passes 2 Mbit/s within the run.
    assert result["available_outgoing_2mbit_s"] is not None, result["timeline"]
    assert result["resolution"] == "1920x1080", "the publisher kept its resolution"

"""Fixtures for recordings tests live in tests/recordings/fixtures.py (the mentoring and browser tests use them too)."""

from tests.recordings.fixtures import (  # noqa: F401
    available_recording,
    clip,
    clip_facts,
    fake_edge,
    spool,
    stopped_recording,
)

"""The edge's spool read as a second source of truth: the segment manifests the edge wrote beside a
recording's segments, and the segment files that have none yet.

Called by lifecycle (rebuild from the spool, segment counts), the sweep and tests. Never writes.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from ..models import Recording

log = logging.getLogger(__name__)


def _spool_folder(recording: Recording) -> Path:
    return Path(settings.RECORDINGS_SPOOL_DIR) / recording.prefix


@dataclass(frozen=True)
class SpoolState:
    """What the spool says about a recording: segment manifests the edge wrote, and segment files
    that have none yet (still being written, or left open by a crash not recovered yet)."""

    manifests: list[dict[str, Any]]
    unmanifested: list[str]


def recording_spool_read(*, recording: Recording) -> SpoolState:
    """Read the manifests (seg-NNNNN.json) beside the recording's segments on the spool."""
    folder = _spool_folder(recording)
    manifests: list[dict[str, Any]] = []
    unmanifested: list[str] = []
    if not folder.is_dir():
        return SpoolState(manifests, unmanifested)
    for entry in sorted(folder.iterdir()):
        if re.fullmatch(r"seg-\d{5,}\.json", entry.name):
            try:
                data = json.loads(entry.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                log.warning("unreadable manifest %s of recording %s", entry.name, recording.public_id)
                continue
            if isinstance(data, dict):
                manifests.append(data)
        elif re.fullmatch(r"seg-\d{5,}\.mp4", entry.name) and not entry.with_suffix(".json").exists():
            unmanifested.append(entry.name)
    return SpoolState(manifests, unmanifested)

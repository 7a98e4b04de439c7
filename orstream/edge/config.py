"""Edge settings read from the environment, each next to its default.

Read once by ``python -m orstream.edge`` (and by tests that build an edge in-process); the result is
a frozen object handed to whoever needs it. Nothing else in the edge reads ``os.environ``;
the helpers are the site's too (``orstream.env``), so a value means the same on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from orstream.env import EnvError, env_bool, env_int, env_secret, env_str

# The edge reads its variables through the same helpers as the site (orstream/env.py).
ConfigError = EnvError


def default_spool_dir() -> Path:
    """``<ORSTREAM_VAR_DIR>/spool``, the control plane's default RECORDINGS_SPOOL_DIR too
    (orstream/settings.py), so a site and an edge started with nothing set agree."""
    var_dir = env_str("ORSTREAM_VAR_DIR") or str(Path(__file__).resolve().parents[2] / "var")
    return Path(var_dir) / "spool"


@dataclass(frozen=True)
class EdgeConfig:
    secret: str
    webhook_url: str = ""
    # The recordings spool shared with the control plane: one variable for both,
    # ORSTREAM_RECORDINGS_SPOOL_DIR, with the same default (see default_spool_dir).
    media_dir: Path = field(default_factory=lambda: default_spool_dir())
    # Offer 127.0.0.1 as an ICE host candidate: the embedded profile runs browser and edge on one
    # machine, and aioice leaves loopback out by default.
    ice_loopback: bool = True
    # Largest request body the API reads; SDP offers are a few KiB.
    max_body_bytes: int = 256 * 1024
    # Bound on pending webhooks; the oldest are dropped (and counted) beyond it.
    webhook_queue_size: int = 1000
    edge_id: str = "edge"

    @classmethod
    def from_env(cls) -> EdgeConfig:
        secret = env_secret("ORSTREAM_EDGE_SECRET")
        if not secret:
            raise ConfigError("ORSTREAM_EDGE_SECRET is required (or ORSTREAM_EDGE_SECRET_FILE)")
        return cls(
            secret=secret,
            webhook_url=env_str("ORSTREAM_EDGE_WEBHOOK_URL"),
            media_dir=Path(env_str("ORSTREAM_RECORDINGS_SPOOL_DIR") or default_spool_dir()),
            ice_loopback=env_bool("ORSTREAM_EDGE_ICE_LOOPBACK", True),
            max_body_bytes=env_int("ORSTREAM_EDGE_MAX_BODY_BYTES", 256 * 1024),
            webhook_queue_size=env_int("ORSTREAM_EDGE_WEBHOOK_QUEUE", 1000),
            edge_id=env_str("ORSTREAM_EDGE_ID", "edge"),
        )

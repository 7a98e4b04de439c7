"""What apps above mentoring do when a session goes live or ends (hospital reports the procedure
step to the RIS). Registered in their ``AppConfig.ready()``, so mentoring imports none of them.

``session_hooks.announce`` is called by mentoring.services after the change commits; a hook is
called with the session and the change ("live" or "ended") and must not raise for a remote
system's failure: it records that failure itself (and retries in a job of its own). A hook that
raises anyway is logged and the others still run; the session's change stands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

log = logging.getLogger(__name__)

SessionHook = Callable[..., None]
CHANGES = ("live", "ended")


class SessionHooks:
    def __init__(self) -> None:
        self._hooks: dict[str, SessionHook] = {}

    def register(self, name: str, hook: SessionHook) -> None:
        self._hooks[name] = hook

    def unregister(self, name: str) -> None:
        self._hooks.pop(name, None)

    def announce(self, *, session: Any, change: str) -> None:
        """Run every hook once the current transaction commits (at once outside one)."""
        if change not in CHANGES:
            raise ValueError(f"unknown session change {change!r}")
        transaction.on_commit(lambda: self._run(session, change))

    def _run(self, session: Any, change: str) -> None:
        for name, hook in list(self._hooks.items()):
            try:
                hook(session=session, change=change)
            except Exception:
                log.exception("session hook %s failed for session %s (%s)", name, session.public_id, change)


session_hooks = SessionHooks()

"""The room's feed and the edge's sessions: whether the feed is ready, preparing the edge for a
session, putting live sessions back after an edge restart (with the hooks other apps register),
closing the edge's side.

Called by scheduling (start, end), the edge webhook handlers in mentoring.events, the devserver
and the recordings app (reattach hooks, registered in RecordingsConfig.ready).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from consent.audit import audit_record
from orstream import edgeclient
from orstream.edge import protocol

from ..models import (
    OperatingRoom,
    Session,
)
from .common import _send_after_commit, session_group

log = logging.getLogger(__name__)


# A room's feed that is a local file still being written (the demo clip made by `make run`) is
# written beside its final name with this suffix, then renamed.
FEED_PREPARING_SUFFIX = ".part"


FEED_PREPARING_MESSAGE = (
    "The room's picture is still being prepared (the demo clip takes about a minute the first "
    "time): the video starts by itself as soon as it is ready."
)


def _room_source(room: OperatingRoom) -> protocol.SourceAttach:
    """What the edge is asked to ingest for the room: its feed, and its encoder's lower stream."""
    url = room.ingest_url
    return protocol.SourceAttach(url=url, loop="://" not in url, lower_url=room.lower_ingest_url)


def room_feed_state(*, room: OperatingRoom) -> str:
    """How the room's own feed stands: "none" (the OR console publishes), "ready", "preparing"
    (a local file still being written), or "missing" (a local file that is not there; the edge
    says so when asked to open it). A network feed counts as ready: the edge judges it."""
    url = room.ingest_url
    if not url:
        return "none"
    if "://" in url:
        return "ready"
    path = Path(url)
    if path.exists():
        return "ready"
    if path.with_name(path.name + FEED_PREPARING_SUFFIX).exists():
        return "preparing"
    return "missing"


def room_feed_start(*, room: OperatingRoom) -> list[Session]:
    """The room's feed can be opened now (its file is written): start it in every live session of
    the room that has no picture yet. Called by the demo server once the demo clip is made; the
    edge's "publisher.up" then brings every waiting page its picture. Returns those sessions."""
    started: list[Session] = []
    url = room.ingest_url
    if not url:
        return started
    for session in Session.objects.filter(room=room, status=Session.Status.LIVE):
        sid, edge_url = str(session.public_id), room.edge_url or None
        try:
            edgeclient.session_open(sid, edge_url=edge_url)
            stats = edgeclient.stats(sid, edge_url=edge_url)
            if stats.get("source") is None and stats.get("publisher") is None:
                edgeclient.source_attach(sid, _room_source(room), edge_url=edge_url)
                started.append(session)
        except edgeclient.EdgeError as failure:
            log.warning("room feed not started in session %s: %s", session.public_id, failure)
    return started


def _edge_prepare(session: Session) -> bool:
    """Make sure the session's hub exists on its edge, fed by the room's own video when it has one.

    Idempotent: a hub the edge had to create anew (first go-live, or an edge that restarted) gets
    the room's feed attached. Returns True when the edge created the hub.
    """
    sid, edge_url = str(session.public_id), session.room.edge_url or None
    reply = edgeclient.session_open(sid, edge_url=edge_url)
    created = bool(reply and reply.get("created", True))
    url = session.room.ingest_url
    # A feed still being prepared is started by room_feed_start once it is ready.
    if created and url and room_feed_state(room=session.room) != "preparing":
        edgeclient.source_attach(sid, _room_source(session.room), edge_url=edge_url)
    return created


ReattachHook = Callable[[Session], dict[str, Any]]


class ReattachHooks:
    """What apps above mentoring do when a live session is re-created on a restarted edge
    (recordings resumes its recording). Registered in their ``AppConfig.ready()``, so mentoring
    imports none of them; each hook returns what it did, for the audit trail."""

    def __init__(self) -> None:
        self._hooks: dict[str, ReattachHook] = {}

    def register(self, name: str, hook: ReattachHook) -> None:
        self._hooks[name] = hook

    def items(self) -> list[tuple[str, ReattachHook]]:
        return list(self._hooks.items())


reattach_hooks = ReattachHooks()


def session_reattach(*, session: Session) -> bool:
    """Put a live session back on its edge after the edge restarted (it lost every hub, feed and
    recorder): re-create the hub, re-start the room's feed, run the registered reattach hooks
    (the recording resumes in a new segment), and tell the pages the media server restarted, so
    they reconnect at once.

    Idempotent: on an edge that still has the hub nothing happens and False is returned. Called by
    the edge's "edge.started" webhook and by every media offer (whichever comes first after a
    restart). Raises edgeclient.EdgeError when the edge cannot be reached.
    """
    if not _edge_prepare(session) or session.status != Session.Status.LIVE:
        return False
    detail = {name: hook(session) for name, hook in reattach_hooks.items()}
    audit_record(
        action="session.reattach", actor="system", session_public_id=str(session.public_id), detail=detail
    )
    log.warning("session %s re-created on its edge after an edge restart", session.public_id)
    _send_after_commit(session_group(session), {"type": "session.notice", "notice": {"event": "edge.restarted"}})
    return True


def edge_restart_handle(*, boot_id: str) -> list[Session]:
    """An edge reports it has just started (webhook "edge.started"): re-attach every live session.

    Sessions on other edges are left as they are (their edge still has their hub). One session
    the edge cannot take does not stop the others. Returns the sessions re-created.
    """
    reattached: list[Session] = []
    for session in Session.objects.filter(status=Session.Status.LIVE).select_related("room"):
        try:
            if session_reattach(session=session):
                reattached.append(session)
        except edgeclient.EdgeError as failure:
            log.warning("session %s not re-attached after edge start %s: %s", session.public_id, boot_id[:12], failure)
    return reattached


def _edge_session_close(session: Session) -> None:
    try:
        edgeclient.session_close(str(session.public_id), edge_url=session.room.edge_url or None)
    except edgeclient.EdgeError as failure:
        # The edge drops an idle hub on its own; the session is over either way.
        log.warning("edge did not close session %s: %s", session.public_id, failure)

"""Mentoring services: scheduling, participants, invitations, join tokens, admission, presence,
annotations, media and the cards the pages receive.

Every write and every rule of the mentoring app lives in this package; views, the API, the
consumer and tasks call these functions and nothing else. It is split by concern and this module
re-exports every public name, so callers keep writing `from mentoring import services` and
`services.session_start(...)`: common (errors, broadcasts, the coordinator's staff grant),
scheduling, times (a session's times in its room's zone), feed (the room's feed and the edge's
sessions), tokens (join tokens and links), invitations (the e-mail and .ics), participants,
admission, presence, annotations, media, withdrawal (what a narrower consent does to a live
session), selectors (reads, the edge's stats) and presenters (JSON shapes, a page's bootstrap).
Broadcasts and e-mails leave only after the transaction commits. Never logs a join token or a
patient reference.
"""

from .admission import Admission, join_token_check
from .annotations import (
    MAX_CHAT_CHARS,
    MAX_STROKE_POINTS,
    STROKE_COLOUR_NAMES,
    STROKE_COLOURS,
    STROKE_TOOL_NAMES,
    STROKE_TOOLS,
    AnnotationError,
    annotation_add,
)
from .common import (
    COORDINATOR_ADMIN_PERMISSIONS,
    ROLE_PURPOSE,
    TOKEN_SALT,
    JoinRefused,
    SchedulingError,
    coordinator_staff_grant,
    is_uuid,
    session_group,
)
from .feed import (
    FEED_PREPARING_MESSAGE,
    FEED_PREPARING_SUFFIX,
    ReattachHook,
    ReattachHooks,
    edge_restart_handle,
    reattach_hooks,
    room_feed_start,
    room_feed_state,
    session_reattach,
)
from .invitations import invitation_mail, invitation_send, session_ics
from .media import MediaRefused, ice_servers_for, media_clock, media_offer
from .participants import (
    join_token_revoke,
    participant_add,
    participant_invite,
    participant_reinvite,
    participant_remove,
    participant_role_change,
    session_live_join,
    specialist_link_mint,
)
from .presence import (
    HEARTBEAT_SECONDS,
    PRESENCE_STALE_SECONDS,
    connection_close,
    connection_end,
    connection_heartbeat,
    connection_links_ended,
    connection_sweep,
    latency_report,
    presence_connected,
    presence_list,
    presence_record,
)
from .presenters import (
    MAX_DRAWING_ON_JOIN,
    annotation_card,
    annotation_list_for,
    drawing_choices,
    drawing_in_view,
    page_bootstrap,
    participant_card,
    session_card,
)
from .scheduling import (
    room_create,
    session_cancel,
    session_end,
    session_reschedule,
    session_schedule,
    session_start,
)
from .selectors import (
    EdgeStats,
    participant_get,
    room_list,
    session_edge_stats,
    session_get,
    session_list_for,
)
from .times import session_clock, session_moment, session_when
from .tokens import join_token_mint, join_url, link_seal, link_state, link_unseal, participant_link_state
from .withdrawal import session_drop_uncovered, session_enforce_consent

__all__ = [
    "EdgeStats",
    "Admission",
    "AnnotationError",
    "COORDINATOR_ADMIN_PERMISSIONS",
    "FEED_PREPARING_MESSAGE",
    "FEED_PREPARING_SUFFIX",
    "HEARTBEAT_SECONDS",
    "JoinRefused",
    "MAX_CHAT_CHARS",
    "MAX_DRAWING_ON_JOIN",
    "MAX_STROKE_POINTS",
    "MediaRefused",
    "PRESENCE_STALE_SECONDS",
    "ROLE_PURPOSE",
    "ReattachHook",
    "ReattachHooks",
    "STROKE_COLOUR_NAMES",
    "STROKE_COLOURS",
    "STROKE_TOOL_NAMES",
    "STROKE_TOOLS",
    "SchedulingError",
    "TOKEN_SALT",
    "annotation_add",
    "annotation_card",
    "annotation_list_for",
    "connection_close",
    "connection_end",
    "connection_heartbeat",
    "connection_links_ended",
    "connection_sweep",
    "coordinator_staff_grant",
    "drawing_choices",
    "drawing_in_view",
    "edge_restart_handle",
    "ice_servers_for",
    "invitation_mail",
    "invitation_send",
    "is_uuid",
    "join_token_check",
    "join_token_mint",
    "join_token_revoke",
    "join_url",
    "latency_report",
    "link_seal",
    "link_state",
    "link_unseal",
    "media_clock",
    "media_offer",
    "participant_add",
    "participant_get",
    "participant_invite",
    "page_bootstrap",
    "participant_card",
    "participant_link_state",
    "participant_reinvite",
    "participant_remove",
    "participant_role_change",
    "presence_connected",
    "presence_list",
    "presence_record",
    "reattach_hooks",
    "room_create",
    "room_feed_start",
    "room_feed_state",
    "session_cancel",
    "session_card",
    "session_clock",
    "session_drop_uncovered",
    "session_end",
    "session_enforce_consent",
    "room_list",
    "session_get",
    "session_group",
    "session_ics",
    "session_edge_stats",
    "session_list_for",
    "session_live_join",
    "session_moment",
    "session_reattach",
    "session_reschedule",
    "session_schedule",
    "session_start",
    "session_when",
    "specialist_link_mint",
]

"""Recordings services: start and stop under consent, segment registration, verification,
archiving, export, restriction, erasure and retention.

A package split by concern; this module re-exports every public name, so callers keep writing
`from recordings import services` and `services.recording_finalize(...)`. Writes live in
lifecycle, sweep, verify, storage, access (the audited doors), export, restriction, erasure,
retention and bookmarks; reads in selectors and spool; JSON shapes in presenters; what they
share (errors, audit, storage, the progress channel, the task queue) in common. The long-term
archive (recompressed copies, the quality gate, originals, the storage report) is its own
namespace, ``recordings.services.archive``, which the pages, tasks and the DICOM export call.

Called by views (media), the library pages (list, player, marks, export, download, hold,
erasure), the progress consumer, the edge webhook view (segment_register, recording_stopped), tasks
(one per long job, same names), the consent effects registered in RecordingsConfig.ready
(restriction and stop when consent is withdrawn) and the admin. Every view, download, export and
erasure is audited through consent.audit, refusals too. Never holds a database transaction
across a call to the edge or a long file operation; never writes a patient identifier into a path,
a log line or a progress message.
"""

from .access import (
    VIEWING_TOUCH_SECONDS,
    MediaFile,
    RecordingScope,
    RecordingScopes,
    recording_access_check,
    recording_download_open,
    recording_in_scope,
    recording_may_download,
    recording_may_manage,
    recording_media_open,
    recording_progress_check,
    recording_scopes,
    recording_stop_check,
    recording_viewing_touch,
)
from .bookmarks import BOOKMARK_LABEL_MAX, bookmark_add
from .common import (
    CHUNK,
    SEGMENT_PATH,
    Progress,
    RecordingAccessDenied,
    RecordingEdgeUnavailable,
    RecordingError,
    RecordingNotReady,
    recording_group,
    recording_progress_send,
)
from .erasure import ERASE_STALE_AFTER, erase_request, recording_erase, recording_legal_hold
from .export import export_check, export_destination_check, export_request, recording_export
from .lifecycle import (
    SEGMENT_REGISTER_FIELDS,
    recording_live_stop_for_session,
    recording_rebuild_from_spool,
    recording_resume_for_session,
    recording_retry,
    recording_start,
    recording_stop,
    recording_stopped,
    segment_fields,
    segment_register,
)
from .presenters import (
    LIVE_PURPOSES,
    bookmark_card,
    recording_live_card,
    recording_live_for,
    recording_playback_for,
    session_live_state,
)
from .restriction import (
    recording_restrict,
    recording_restrict_for_session,
    recording_restrict_uncovered,
    recording_stop_uncovered,
)
from .retention import RetentionResult, retention_apply, retention_until
from .selectors import (
    BookmarkReveal,
    BookmarkReveals,
    LibraryChoices,
    LibraryFilter,
    RecordingProblem,
    bookmark_list_for,
    bookmark_reveals,
    library_choices_for,
    recording_get,
    recording_list_for,
    recording_problem_for,
    recording_problems_for,
    recording_running_for,
    recording_segment_paths,
)
from .spool import SpoolState, recording_spool_read
from .storage import recording_archive
from .sweep import SweepResult, recording_sweep
from .verify import (
    CONTACT_SHEET_COLUMNS,
    CONTACT_SHEET_ROWS,
    CONTACT_SHEET_TILE_WIDTH,
    DURATION_TOLERANCE,
    THUMBNAIL_WIDTH,
    recording_finalize,
)

__all__ = [
    "LIVE_PURPOSES",
    "BOOKMARK_LABEL_MAX",
    "CHUNK",
    "CONTACT_SHEET_COLUMNS",
    "CONTACT_SHEET_ROWS",
    "CONTACT_SHEET_TILE_WIDTH",
    "DURATION_TOLERANCE",
    "ERASE_STALE_AFTER",
    "LibraryChoices",
    "LibraryFilter",
    "MediaFile",
    "RecordingScope",
    "RecordingScopes",
    "Progress",
    "RecordingAccessDenied",
    "RecordingEdgeUnavailable",
    "RecordingError",
    "RecordingNotReady",
    "RecordingProblem",
    "RetentionResult",
    "SEGMENT_PATH",
    "SEGMENT_REGISTER_FIELDS",
    "SpoolState",
    "SweepResult",
    "THUMBNAIL_WIDTH",
    "VIEWING_TOUCH_SECONDS",
    "bookmark_add",
    "bookmark_card",
    "BookmarkReveal",
    "BookmarkReveals",
    "bookmark_list_for",
    "bookmark_reveals",
    "erase_request",
    "export_check",
    "export_destination_check",
    "export_request",
    "library_choices_for",
    "recording_access_check",
    "recording_archive",
    "recording_download_open",
    "recording_erase",
    "recording_export",
    "recording_finalize",
    "recording_get",
    "recording_group",
    "recording_legal_hold",
    "recording_list_for",
    "recording_live_card",
    "recording_live_for",
    "recording_live_stop_for_session",
    "recording_may_download",
    "recording_may_manage",
    "recording_media_open",
    "recording_playback_for",
    "recording_problem_for",
    "recording_problems_for",
    "recording_segment_paths",
    "recording_running_for",
    "recording_in_scope",
    "recording_progress_check",
    "recording_scopes",
    "recording_progress_send",
    "recording_rebuild_from_spool",
    "recording_restrict",
    "recording_restrict_for_session",
    "recording_restrict_uncovered",
    "recording_resume_for_session",
    "recording_retry",
    "recording_spool_read",
    "recording_start",
    "recording_stop",
    "recording_stop_check",
    "recording_stop_uncovered",
    "recording_stopped",
    "recording_sweep",
    "recording_viewing_touch",
    "retention_apply",
    "retention_until",
    "session_live_state",
    "segment_fields",
    "segment_register",
]

from django.apps import AppConfig


class RecordingsConfig(AppConfig):
    name = "recordings"
    verbose_name = "Recordings"

    def ready(self) -> None:
        from consent.effects import ConsentEffect, consent_effects
        from mentoring.events import edge_event_handlers
        from mentoring.services import reattach_hooks

        from . import events, services

        edge_event_handlers.register(events.EVENT_TYPES, events.recording_event_handle)
        # A live session put back on a restarted edge: its recording goes on in a new segment.
        reattach_hooks.register("recording", events.recording_reattach)

        # Without consent to record, the session's recordings are restricted in the withdrawal's
        # own transaction, and a live one is stopped at the edge after it commits.
        consent_effects.register(
            ConsentEffect(
                name="recordings.restrict_and_stop",
                within=services.recording_restrict_uncovered,
                deliver=services.recording_stop_uncovered,
            )
        )

from django.apps import AppConfig


class MentoringConfig(AppConfig):
    name = "mentoring"
    verbose_name = "Mentoring"

    def ready(self) -> None:
        from .keeper import ConnectionKeeper

        # Presence bookkeeping for this process's WebSockets; its thread starts with the first join.
        self.keeper = ConnectionKeeper()

        from consent.effects import ConsentEffect, consent_effects

        from . import services

        # A narrower consent drops the live viewers it no longer covers, within seconds.
        consent_effects.register(ConsentEffect(name="mentoring.drop_uncovered", deliver=services.session_drop_uncovered))

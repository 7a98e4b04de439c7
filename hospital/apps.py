from django.apps import AppConfig


class HospitalConfig(AppConfig):
    name = "hospital"
    verbose_name = "Hospital integration (PACS, worklist, EHR)"

    def ready(self) -> None:
        from consent.effects import ConsentEffect, consent_effects
        from mentoring.hooks import session_hooks
        from recordings.pages import recording_cards

        from . import services, views

        # A session that goes live or ends reports its procedure step to the hospital's RIS.
        session_hooks.register("hospital.mpps", services.procedure_step_for_session)

        # A recording's page says what the PACS has of it, with a link to its export page.
        recording_cards.register("hospital.pacs", views.recording_pacs_card)

        # A withdrawal that restricts a session's recordings marks their documents in the EHR.
        consent_effects.register(ConsentEffect(name="hospital.ehr_withdraw", deliver=services.ehr_links_withdraw))

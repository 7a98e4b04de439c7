from django.apps import AppConfig


class HospitalConfig(AppConfig):
    name = "hospital"
    verbose_name = "Hospital integration (PACS, worklist, EHR)"

    def ready(self) -> None:
        from mentoring.hooks import session_hooks

        from . import services

        # A session that goes live or ends reports its procedure step to the hospital's RIS.
        session_hooks.register("hospital.mpps", services.procedure_step_for_session)

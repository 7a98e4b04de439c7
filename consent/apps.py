from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = "Consent and audit"

    def ready(self) -> None:
        from django.core.signals import request_started

        from orstream.pages import refusal_audit

        from .audit import audit_refusal_page, audit_request_begin

        # Every refusal page is audited, once: the core shows it, the audit trail writes it.
        refusal_audit.register(audit_refusal_page)
        request_started.connect(audit_request_begin, dispatch_uid="consent.audit_request_begin")

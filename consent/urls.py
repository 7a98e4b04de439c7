"""Consent pages, included under /consent/ by orstream/urls.py. Session public ids and record numbers only."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "consent"

urlpatterns = [
    path("sessions/<uuid:public_id>/", views.consent_session, name="session"),
    path("sessions/<uuid:public_id>/records/<int:record_id>/withdraw/", views.consent_withdraw, name="withdraw"),
    path("sessions/<uuid:public_id>/records/<int:record_id>/fhir.json", views.consent_fhir, name="fhir"),
    path("sessions/<uuid:public_id>/audit.fhir.json", views.audit_fhir, name="audit"),
]

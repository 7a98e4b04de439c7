"""Training endpoints of the JSON API, included under /api/ by orstream/urls.py."""

from django.urls import path

from . import api

urlpatterns = [
    path("training/assessments/", api.AssessmentList.as_view(), name="api-training-assessments"),
    path("training/assessments/<uuid:public_id>/", api.AssessmentDetail.as_view(), name="api-training-assessment"),
    path("training/assessments/<uuid:public_id>/fhir/", api.AssessmentFhir.as_view(), name="api-training-assessment-fhir"),
    path("training/instruments/", api.InstrumentList.as_view(), name="api-training-instruments"),
    path("training/instruments/<int:pk>/fhir/", api.InstrumentFhir.as_view(), name="api-training-instrument-fhir"),
]

"""Training URLs, included under /training/ by orstream/urls.py. Public ids only."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "training"

urlpatterns = [
    path("", views.home, name="home"),
    path("recordings/<uuid:public_id>/", views.recording_page, name="recording"),
    path("recordings/<uuid:public_id>/performances/", views.performance_create, name="performance_create"),
    path("recordings/<uuid:public_id>/assign/", views.assessment_assign, name="assign"),
    path("recordings/<uuid:public_id>/curate/", views.entry_create, name="curate"),
    path("assessments/<uuid:public_id>/", views.assessment_page, name="assessment"),
    path("assessments/<uuid:public_id>/save/", views.assessment_save, name="assessment_save"),
    path("assessments/<uuid:public_id>/comments/", views.comment_create, name="comment_create"),
    path("progress/", views.progress, name="progress"),
    path("progress/<int:user_id>/", views.progress, name="progress_of"),
    path("cohort/", views.cohort, name="cohort"),
    path("reliability/", views.reliability_page, name="reliability"),
    path("library/", views.library, name="library"),
    path("library/<int:pk>/", views.collection_page, name="collection"),
    path("export/assessments.csv", views.export_csv, name="export_csv"),
]

"""Live-page JSON and the logged-in coordinator's live view; included at the root by orstream/urls.py."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "frontend"

urlpatterns = [
    path("sessions/<uuid:public_id>/live/", views.session_live, name="session_live"),
    path("live/<uuid:public_id>/state/", views.live_state, name="live_state"),
    path("live/<uuid:public_id>/recording/", views.live_recording, name="live_recording"),
    path("live/<uuid:public_id>/participants/<uuid:participant_id>/remove/", views.live_remove, name="live_remove"),
]

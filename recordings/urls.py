"""Recording URLs, included under /recordings/ by orstream/urls.py. Public ids only."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "recordings"

urlpatterns = [
    path("<uuid:public_id>/video.mp4", views.recording_media, {"index": 0}, name="media"),
    path("<uuid:public_id>/parts/<int:index>.mp4", views.recording_media, name="media_part"),
]

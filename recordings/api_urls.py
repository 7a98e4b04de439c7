"""Recording endpoints of the JSON API, included under /api/ by orstream/urls.py."""

from django.urls import path

from . import api

urlpatterns = [
    path("recordings/", api.RecordingList.as_view(), name="api-recordings"),
    path("sessions/<uuid:public_id>/recording/start/", api.RecordingStart.as_view(), name="api-recording-start"),
    path("recordings/<uuid:public_id>/stop/", api.RecordingStop.as_view(), name="api-recording-stop"),
    path("recordings/<uuid:public_id>/export/", api.RecordingExport.as_view(), name="api-recording-export"),
    path("recordings/<uuid:public_id>/parts/<int:index>.mp4", api.RecordingDownload.as_view(), name="api-recording-download"),
]

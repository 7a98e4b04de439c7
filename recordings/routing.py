"""WebSocket routes of the recordings app (added to the site's routes in orstream/routing.py)."""

from django.urls import path

from .consumers import RecordingProgressConsumer

websocket_urlpatterns = [
    path("ws/recordings/<uuid:recording_id>/", RecordingProgressConsumer.as_asgi()),
]

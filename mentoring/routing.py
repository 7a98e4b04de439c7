from django.urls import path

from recordings.routing import websocket_urlpatterns as recordings_websocket_urlpatterns

from .consumers import SessionConsumer

websocket_urlpatterns = [
    path("ws/sessions/<uuid:session_id>/", SessionConsumer.as_asgi()),
    *recordings_websocket_urlpatterns,
]

"""Every app's WebSocket routes in one list, for orstream.asgi. At the project level so that no app
imports another app's routes."""

from mentoring.routing import websocket_urlpatterns as mentoring_routes
from recordings.routing import websocket_urlpatterns as recordings_routes

websocket_urlpatterns = [*mentoring_routes, *recordings_routes]

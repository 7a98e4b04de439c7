from django.urls import path

from . import views

app_name = "mentoring"

urlpatterns = [
    path("", views.session_list, name="session_list"),
    path("sessions/new/", views.session_new, name="session_new"),
    path("sessions/<uuid:public_id>/", views.session_detail, name="session_detail"),
    path("sessions/<uuid:public_id>/calendar.ics", views.session_calendar, name="session_calendar"),
    path("sessions/<uuid:public_id>/participants/", views.participant_invite, name="participant_invite"),
    path("sessions/<uuid:public_id>/specialist/", views.specialist_link, name="specialist_link"),
    path("sessions/<uuid:public_id>/<str:action>/", views.session_action, name="session_action"),
    path("participants/<uuid:participant_id>/revoke/", views.participant_revoke, name="participant_revoke"),
    path("participants/<uuid:participant_id>/reinvite/", views.participant_reinvite, name="participant_reinvite"),
    path("participants/<uuid:participant_id>/remove/", views.participant_remove, name="participant_remove"),
    path("rooms/new/", views.room_new, name="room_new"),
    path("join/<str:token>/", views.join, name="join"),
    path("edge/events/", views.edge_events, name="edge_events"),
]

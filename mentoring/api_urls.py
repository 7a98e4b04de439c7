from django.urls import path

from . import api

urlpatterns = [
    path("rooms/", api.RoomList.as_view(), name="api-rooms"),
    path("sessions/", api.SessionList.as_view(), name="api-sessions"),
    path("sessions/<uuid:public_id>/", api.SessionDetail.as_view(), name="api-session"),
    path("sessions/<uuid:public_id>/participants/", api.ParticipantList.as_view(), name="api-participants"),
    path("sessions/<uuid:public_id>/specialist-link/", api.SpecialistLink.as_view(), name="api-specialist-link"),
    path("sessions/<uuid:public_id>/calendar.ics", api.SessionCalendar.as_view(), name="api-session-calendar"),
    path("sessions/<uuid:public_id>/<str:action>/", api.SessionAction.as_view(), name="api-session-action"),
    path("participants/<uuid:participant_id>/", api.ParticipantDetail.as_view(), name="api-participant"),
    path("participants/<uuid:participant_id>/revoke/", api.ParticipantRevoke.as_view(), name="api-participant-revoke"),
    path("participants/<uuid:participant_id>/reinvite/", api.ParticipantReinvite.as_view(), name="api-participant-reinvite"),
]

from django.urls import path

from . import views

app_name = "hospital"

urlpatterns = [
    path("sessions/new/", views.session_new_from_worklist, name="session_new"),
    path("sessions/<uuid:public_id>/worklist/", views.worklist_pick, name="worklist_pick"),
    path("recordings/<uuid:public_id>/pacs/", views.recording_pacs, name="recording_pacs"),
]

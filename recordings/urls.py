"""Recording URLs, included under /recordings/ by orstream/urls.py. Public ids only."""

from __future__ import annotations

from django.urls import path

from . import archive_pages, pages, views

app_name = "recordings"

urlpatterns = [
    path("", pages.library, name="library"),
    path("storage/", archive_pages.storage_report, name="storage"),
    path("<uuid:public_id>/", pages.recording_detail, name="detail"),
    path("<uuid:public_id>/archive/", archive_pages.recording_archive, name="archive"),
    path("<uuid:public_id>/bookmarks/", pages.bookmark_create, name="bookmark_create"),
    path("<uuid:public_id>/hold/", pages.recording_hold, name="hold"),
    path("<uuid:public_id>/erase/", pages.recording_erase, name="erase"),
    path("<uuid:public_id>/retry/", pages.recording_retry, name="retry"),
    path("<uuid:public_id>/export/", pages.recording_export, name="export"),
    path("<uuid:public_id>/download/<int:index>.mp4", pages.recording_download, name="download"),
    path("<uuid:public_id>/video.mp4", views.recording_media, {"index": 0}, name="media"),
    path("<uuid:public_id>/parts/<int:index>.mp4", views.recording_media, name="media_part"),
]

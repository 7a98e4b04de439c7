"""The archive's pages: ask for an archive copy, follow it (JSON for the recording page's script),
and the storage report for the records office.

Each view parses the request, calls one service of recordings.services.archive (which authorizes and
audits) and shapes the reply. URLs carry public ids only; nothing here shows a patient reference.
"""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from orstream.pages import refused

from . import services
from .services import archive


@require_http_methods(["GET", "POST"])
@login_required
def recording_archive(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """GET: the recording's archive copies and their progress (JSON). POST: ask for the copy."""
    recording = services.recording_get(public_id=public_id)
    if recording is None:
        raise Http404("No such recording.")
    if request.method == "POST":
        try:
            archive.archive_request(recording=recording, by=request.user)
        except archive.ArchiveAccessDenied as refusal:
            return refused(request, str(refusal))
        except archive.ArchiveError as problem:
            messages.error(request, str(problem))
        else:
            messages.success(request, "Archive copy asked for. Its progress shows below; you can leave this page.")
        return redirect("recordings:detail", recording.public_id)
    try:
        services.recording_progress_check(recording=recording, user=request.user)
    except services.RecordingAccessDenied as refusal:
        return JsonResponse({"ok": False, "message": str(refusal)}, status=403)
    copies = []
    for copy in archive.archive_list_for(recording=recording):
        copies.append({
            "codec": copy.codec, **archive.archive_progress_for(archive=copy).card(), "note": copy.note, "crf": copy.crf,
            "size": copy.size, "original_size": copy.original_size, "vmaf_mean": copy.vmaf_mean,
            "vmaf_min_chunk": copy.vmaf_min_chunk, "psnr_mean": copy.psnr_mean, "ssim_mean": copy.ssim_mean,
        })
    return JsonResponse({"ok": True, "copies": copies})


@require_GET
@login_required
def storage_report(request: HttpRequest) -> HttpResponse:
    """Per recording and in total: bytes as recorded, held now, and once originals are replaced."""
    try:
        report = archive.storage_report_for(user=request.user)
    except archive.ArchiveAccessDenied as refusal:
        return refused(request, str(refusal), title="You cannot see the storage report")
    return render(request, "recordings/storage.html", {"report": report})

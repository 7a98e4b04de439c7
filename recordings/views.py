"""Recording pages' HTTP adapters: the MP4 of a recording, with HTTP Range for seeking.

Parse the request, ask recordings.services (which authorizes and audits), shape the reply.
URLs carry the recording's public id only. Never decides who may watch: the service does.
Every request that serves bytes goes through the service, whatever its Range header: the service
audits once per viewing (recordings.services.recording_viewing_touch), never once per range.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO
from uuid import UUID

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_GET

from . import services

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 256 * 1024
# Larger than any file: a position with more digits than this is past the end of every file.
HUGE = 10**18


class Unsatisfiable(Exception):
    """A Range header naming no byte of the file (416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive for a single-range header, None to send the whole file.

    Multiple ranges and headers that are not byte ranges are ignored (RFC 9110 allows it: the
    whole file is sent). A range outside the file, or one that ends before it starts, is 416.
    """
    if not header:
        return None
    match = RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        raise Unsatisfiable
    if first == "":
        length = _position(last)
        if length == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - length), size - 1
    start = _position(first)
    end = size - 1 if last == "" else min(_position(last), size - 1)
    if start >= size or (last != "" and _position(last) < start):
        raise Unsatisfiable
    return start, end


def _position(digits: str) -> int:
    """A byte position from its digits, however many (int() refuses thousands of them)."""
    digits = digits.lstrip("0") or "0"
    return HUGE if len(digits) > 18 else int(digits)


def _stream(handle: IO[bytes], start: int, end: int) -> Iterator[bytes]:
    try:
        handle.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = handle.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        handle.close()


@require_GET
def recording_media(request: HttpRequest, public_id: UUID, index: int = 0) -> HttpResponseBase:
    recording = services.recording_get(public_id=public_id)
    if recording is None:
        raise Http404("No such recording.")
    header = request.headers.get("Range")
    try:
        media = services.recording_media_open(
            recording=recording, index=index, user=request.user, browser=request.session.session_key or ""
        )
    except services.RecordingAccessDenied as refusal:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        return HttpResponseForbidden(str(refusal))
    except services.RecordingError:
        raise Http404("This recording has no such part.") from None
    return ranged_response(media, header, disposition="inline")


def ranged_response(media: services.MediaFile, header: str | None, *, disposition: str) -> HttpResponseBase:
    """The file, or the byte range ``header`` asks for (206), or 416; for playback (inline) and
    for downloads (attachment), so a multi-gigabyte download can resume where it broke off."""
    try:
        wanted = byte_range(header, media.size)
    except Unsatisfiable:
        media.handle.close()
        unsatisfiable = HttpResponse(status=416)
        unsatisfiable["Content-Range"] = f"bytes */{media.size}"
        return unsatisfiable
    start, end = wanted if wanted is not None else (0, media.size - 1)
    response = StreamingHttpResponse(_stream(media.handle, start, end), status=206 if wanted else 200, content_type="video/mp4")
    response["Content-Length"] = str(end - start + 1)
    if wanted:
        response["Content-Range"] = f"bytes {start}-{end}/{media.size}"
    response["Accept-Ranges"] = "bytes"
    response["Content-Disposition"] = f'{disposition}; filename="{media.name}"'
    response["Cache-Control"] = "private, no-store"
    return response

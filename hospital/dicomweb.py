"""DICOMweb with the hospital's PACS: STOW-RS to store, WADO-RS to read back. Called by
hospital.services only; raises ``DicomwebError`` with what the PACS answered. Never puts a
patient identifier in a URL: only UIDs, which orstream derives from pseudonymous ids.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from pydicom import dcmread
from pydicom.dataset import Dataset

FAILED_SOP_SEQUENCE = "00081198"
FAILURE_REASON = "00081197"


class DicomwebError(Exception):
    """The PACS did not store or return what was asked; the message says what it answered."""


class _Body:
    """A multipart/related body read from the files as it is sent, with a known length (so the
    request carries Content-Length, not chunks, which some PACS do not take)."""

    def __init__(self, paths: list[Path], boundary: str) -> None:
        self._pieces: list[bytes | Path] = []
        for path in paths:
            self._pieces.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            self._pieces.append(path)
            self._pieces.append(b"\r\n")
        self._pieces.append(f"--{boundary}--\r\n".encode())
        self.length = sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in self._pieces)
        self._current: Any = None

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Any:
        return iter(lambda: self.read(1 << 20), b"")

    def read(self, size: int = -1) -> bytes:
        size = 1 << 20 if size is None or size < 0 else size
        while self._pieces or self._current is not None:
            if self._current is None:
                piece = self._pieces.pop(0)
                self._current = piece.open("rb") if isinstance(piece, Path) else io.BytesIO(piece)
            chunk = self._current.read(size)
            if chunk:
                return bytes(chunk)
            self._current.close()
            self._current = None
        return b""


def _timeout() -> float:
    return float(settings.HOSPITAL_DICOM_TIMEOUT_SECONDS)


def stow(base_url: str, paths: list[Path], *, study_uid: str) -> None:
    boundary = uuid.uuid4().hex
    body = _Body(paths, boundary)
    try:
        reply = requests.post(
            f"{base_url.rstrip('/')}/studies/{study_uid}",
            data=body,
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "Accept": "application/dicom+json",
            },
            timeout=max(_timeout(), 300.0),
        )
    except requests.RequestException as failure:
        raise DicomwebError(f"The PACS's DICOMweb service at {base_url} could not be reached: {type(failure).__name__}.") from None
    failed = _failed(reply)
    if reply.status_code >= 400 or failed:
        reasons = ", ".join(sorted(set(failed))) or reply.reason
        raise DicomwebError(f"The PACS refused the STOW-RS request (HTTP {reply.status_code}: {reasons}).")


def _failed(reply: requests.Response) -> list[str]:
    try:
        data = reply.json()
    except ValueError:
        return []
    items = (data.get(FAILED_SOP_SEQUENCE) or {}).get("Value") or [] if isinstance(data, dict) else []
    reasons = []
    for item in items:
        values = (item.get(FAILURE_REASON) or {}).get("Value") or ["?"]
        reasons.append(f"failure reason 0x{int(values[0]):04X}" if str(values[0]).isdigit() else str(values[0]))
    return reasons


def retrieve(base_url: str, *, study_uid: str, series_uid: str, instance_uid: str) -> Dataset:
    """WADO-RS one instance, as stored (any transfer syntax)."""
    url = f"{base_url.rstrip('/')}/studies/{study_uid}/series/{series_uid}/instances/{instance_uid}"
    try:
        reply = requests.get(
            url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}, timeout=max(_timeout(), 300.0)
        )
    except requests.RequestException as failure:
        raise DicomwebError(f"The PACS's DICOMweb service could not be reached to read back: {type(failure).__name__}.") from None
    if reply.status_code != 200:
        raise DicomwebError(f"The PACS did not return a stored instance (HTTP {reply.status_code}).")
    return dcmread(io.BytesIO(_first_part(reply)))


def _first_part(reply: requests.Response) -> bytes:
    content_type = reply.headers.get("Content-Type", "")
    boundary = next((p.split("=", 1)[1].strip('"') for p in content_type.split(";") if p.strip().startswith("boundary=")), "")
    if not boundary:
        return reply.content
    body = reply.content
    marker = b"--" + boundary.encode()
    start = body.index(marker) + len(marker)
    head_end = body.index(b"\r\n\r\n", start) + 4
    end = body.index(b"\r\n" + marker, head_end)
    return body[head_end:end]


def echo(base_url: str) -> str:
    """A cheap read that any DICOMweb server answers: a study search for one result."""
    try:
        reply = requests.get(f"{base_url.rstrip('/')}/studies", params={"limit": "1"},
                             headers={"Accept": "application/dicom+json"}, timeout=_timeout())
    except requests.RequestException as failure:
        raise DicomwebError(f"{base_url} could not be reached: {type(failure).__name__}.") from None
    if reply.status_code not in (200, 204):
        raise DicomwebError(f"{base_url} answered a study search with HTTP {reply.status_code}.")
    return f"DICOMweb at {base_url} answered (HTTP {reply.status_code})."

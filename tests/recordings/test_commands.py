"""The records office's commands: a verified export from the shell, retention by hand."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from consent.models import AuditEvent
from recordings.models import ExportJob, Recording


def test_export_command_copies_and_verifies(available_recording: Recording, alice: Any, tmp_path: Path, settings: Any) -> None:
    share = tmp_path / "usb"
    share.mkdir()
    settings.EXPORT_DESTINATIONS = [str(share)]
    out = io.StringIO()
    call_command("recordings_export", str(available_recording.public_id), str(share), "--by", "alice", stdout=out)
    assert "checksums verified" in out.getvalue()
    assert "export 100%" in out.getvalue()
    assert ExportJob.objects.get().sha256_verified
    assert (share / available_recording.prefix / "SHA256SUMS").exists()


def test_export_command_refuses_a_folder_outside_the_allow_list(available_recording: Recording, alice: Any, tmp_path: Path, settings: Any) -> None:
    settings.EXPORT_DESTINATIONS = [str(tmp_path / "share")]
    with pytest.raises(CommandError, match="only be written under"):
        call_command("recordings_export", str(available_recording.public_id), "/tmp", "--by", "alice")


def test_export_command_refuses_someone_not_in_the_records_office(available_recording: Recording, dave: Any, tmp_path: Path, settings: Any) -> None:
    settings.EXPORT_DESTINATIONS = [str(tmp_path)]
    with pytest.raises(CommandError, match="Only the records office"):
        call_command("recordings_export", str(available_recording.public_id), str(tmp_path), "--by", "dave")
    assert AuditEvent.objects.filter(action="recording.export", outcome="refused", actor=f"user:{dave.pk}").exists()


def test_retention_command_reports_what_it_did(available_recording: Recording) -> None:
    Recording.objects.filter(pk=available_recording.pk).update(retain_until="2000-01-01")
    out = io.StringIO()
    call_command("retention_apply", stdout=out)
    assert out.getvalue().strip() == "Erased 1, kept under legal hold 0, resumed 0."
    assert Recording.objects.get(pk=available_recording.pk).status == Recording.Status.ERASED

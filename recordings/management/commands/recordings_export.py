"""`manage.py recordings_export <recording id> <folder> --by <username>`: a verified copy for the records office.

Runs the export in this process (no worker needed), printing progress; the folder must be under
ORSTREAM_EXPORT_DESTINATIONS. Audited like any export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from recordings import services
from recordings.models import ExportJob


class Command(BaseCommand):
    help = "Copy a recording to an allowed destination folder, verified by SHA-256."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("recording", help="The recording's public id.")
        parser.add_argument("destination", type=Path)
        parser.add_argument("--by", required=True, help="Username of the coordinator asking for it.")

    def handle(self, *args: Any, **options: Any) -> None:
        recording = services.recording_get(public_id=options["recording"])
        if recording is None:
            raise CommandError(f"No recording {options['recording']}.")
        user = get_user_model().objects.filter(username=options["by"]).first()
        if user is None:
            raise CommandError(f"No user {options['by']}.")
        try:
            target = services.export_check(recording=recording, destination=options["destination"], by=user)
            job = ExportJob.objects.create(recording=recording, destination=str(target), requested_by=user)
            job = services.recording_export(
                job=job, progress=lambda stage, percent: self.stdout.write(f"\r{stage} {percent:3d}%", ending="")
            )
        except services.RecordingError as refusal:
            raise CommandError(str(refusal)) from None
        self.stdout.write(f"\nExported {job.bytes_copied} bytes to {target / recording.prefix}, checksums verified.")

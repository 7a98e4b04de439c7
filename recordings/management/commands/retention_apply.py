"""`manage.py retention_apply`: what the nightly beat task does, run by hand (erases past retention,
keeps legal holds, resumes interrupted erasures)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from recordings import services


class Command(BaseCommand):
    help = "Erase recordings past their retention date (not those under legal hold); resume interrupted erasures."

    def handle(self, *args: Any, **options: Any) -> None:
        result = services.retention_apply()
        self.stdout.write(
            f"Erased {len(result.erased)}, kept under legal hold {len(result.held)}, resumed {len(result.resumed)}."
        )

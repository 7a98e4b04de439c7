"""`manage.py audit_verify`: check the audit trail's hash chain from the first event to the last.

Run by the records office and by monitoring (exit status 0 = intact, 1 = broken). It only reads.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.audit import audit_head, audit_verify


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; exit non-zero and name the first broken link."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--head",
            help="A head hash printed by an earlier run: fails if the events up to it were cut off.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        broken = audit_verify(head=options.get("head"))
        if broken is not None:
            raise CommandError(f"Audit trail broken at event {broken.event_id}: {broken.reason}.", returncode=1)
        count, head = audit_head()
        self.stdout.write(f"Audit trail intact: {count} events, head {head}")

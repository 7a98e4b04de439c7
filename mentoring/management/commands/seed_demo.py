"""`manage.py seed_demo`: a demo room, people, a consented session and a join link per role, and
what the apps above register (mentoring.demo: training's programme and assessed recording).

Idempotent: run again, it reuses what exists, resets the coordinator's password and mints fresh
links for the demo's own cast (their previous links are revoked; anyone else's links are left
alone). The password and the links are secrets: they go to a file only its owner may read
(``var/demo-links.txt``), never to the terminal, so no log of `make run` holds a working link.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand
from django.utils import timezone

from consent import services as consent_services
from consent.models import ConsentForm
from mentoring import services
from mentoring.demo import DemoCast, demo_seeders
from mentoring.models import JoinToken, OperatingRoom, Participant, Role, Session

DEMO_CLIP = "demo-4k.mp4"
DEMO_LINKS = "demo-links.txt"
PURPOSES = ["record", "live_internal", "live_external", "archive_training", "research"]


class Command(BaseCommand):
    help = "Create demo data for the embedded profile; write the coordinator login and join links to var/demo-links.txt."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--password", help="coordinator password (default: a new random one)")

    def handle(self, *args: Any, **options: Any) -> None:
        password = options["password"] or secrets.token_urlsafe(9)
        coordinator = self.user("coordinator", "Casey", "Coordinator", password=password)
        # The demo's coordinator may also open /admin/, with the coordinator group's limited
        # permissions (rooms, and a read-only view of the rest): never a superuser.
        services.coordinator_staff_grant(user=coordinator)
        surgeon = self.user("surgeon", "Sam", "Surgeon")
        clip = settings.VAR_DIR / DEMO_CLIP
        room = OperatingRoom.objects.filter(name="OR 1 (demo)").first() or services.room_create(
            name="OR 1 (demo)", location="Demo theatre", ingest_url=str(clip)
        )
        session = Session.objects.filter(room=room, status__in=["scheduled", "live"]).first()
        if session is None:
            start = timezone.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
            session = services.session_schedule(
                room=room, procedure="Demo: microsurgical anastomosis", surgeon=surgeon, planned_start=start,
                planned_end=start + timedelta(hours=4), time_zone=settings.TIME_ZONE, created_by=coordinator,
                patient_ref="DEMO-0001",
            )
        form = ConsentForm.objects.filter(title="Demo consent", version="1").first() or consent_services.consent_form_create(
            title="Demo consent", version="1", text="Demonstration consent covering every purpose.", purposes=PURPOSES
        )
        if consent_services.consent_in_force(session=session) is None:
            consent_services.consent_record(
                session=session, form=form, decisions=dict.fromkeys(PURPOSES, True), obtained_by=coordinator,
                attestation="Demo data: no patient.",
            )
        cast = [
            (Role.SURGEON, "Sam Surgeon", False),
            (Role.MENTOR, "Dr Morgan Mentor (reference centre)", True),
            (Role.RESIDENT, "Riley Resident", False),
            (Role.DISPLAY, "Conference room 2", False),
            (Role.COORDINATOR, "Casey Coordinator", False),
        ]
        # The coordinator's participant is their account's: the live view reuses it.
        accounts = {Role.SURGEON: surgeon, Role.COORDINATOR: coordinator}
        lines = [
            "orstream demo",
            f"  sign in at {settings.PUBLIC_URL}/accounts/login/ as coordinator / {password}",
            f"  admin: {settings.PUBLIC_URL}/admin/ with the same sign-in (operating rooms, and a read-only view of"
            " sessions, participants, recordings and consent)",
            "  join links (personal, valid until the session ends):",
        ]
        for role, name, external in cast:
            # The demo's own participant of this role: a mentor a coordinator added keeps their link.
            participant = Participant.objects.filter(
                session=session, role=role, display_name=name, removed_at__isnull=True
            ).first()
            account = accounts.get(role)
            if participant is None:
                participant = services.participant_add(
                    session=session, role=role, display_name=name, is_external=external, by=coordinator,
                    user=account, email=account.email if account else "",
                )
            elif account is not None and participant.user_id is None:
                participant.user = account
                participant.save(update_fields=["user"])
            JoinToken.objects.filter(participant=participant, revoked_at__isnull=True).update(revoked_at=timezone.now())
            token = services.join_token_mint(participant=participant, by=coordinator)
            lines.append(f"    {participant.get_role_display():32} {services.join_url(token)}")
        # What the apps above add (training: a programme, its people, an assessed recording).
        lines.extend(demo_seeders.run(DemoCast(coordinator=coordinator, surgeon=surgeon, consent_form=form, password=password)))
        links = Path(settings.VAR_DIR) / DEMO_LINKS
        links.parent.mkdir(parents=True, exist_ok=True)
        # Created readable by its owner only, before anything secret is written into it.
        fd = os.open(links, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        self.stdout.write(self.style.SUCCESS("orstream demo"))
        self.stdout.write(f"  session: {session.procedure} ({session.get_status_display()}) in {room.name}")
        self.stdout.write(f"  demo video: {clip.name} looped by the edge when the session goes live")
        self.stdout.write(f"  coordinator password and join links: {links} (readable only by you; they are secrets)")

    def user(self, username: str, first: str, last: str, *, password: str | None = None) -> User:
        user, _ = User.objects.get_or_create(
            username=username, defaults={"first_name": first, "last_name": last, "email": f"{username}@demo.invalid"}
        )
        if password:
            user.set_password(password)
            user.save(update_fields=["password"])
        return user

"""`manage.py seed_demo`: a demo room, people, a consented session and a join link per role.

Idempotent: run again, it reuses what exists, resets the coordinator's password and mints fresh
links (the previous ones are revoked, so only the printed links work).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand
from django.utils import timezone

from consent import services as consent_services
from consent.models import ConsentForm
from mentoring import services
from mentoring.models import JoinToken, OperatingRoom, Participant, Role, Session

DEMO_CLIP = "demo-4k.mp4"
PURPOSES = ["record", "live_internal", "live_external", "archive_training", "research"]


class Command(BaseCommand):
    help = "Create demo data for the embedded profile and print the coordinator login and join links."

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
        if consent_services.consent_in_force(session=session) is None:
            form = ConsentForm.objects.filter(title="Demo consent", version="1").first() or consent_services.consent_form_create(
                title="Demo consent", version="1", text="Demonstration consent covering every purpose.", purposes=PURPOSES
            )
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
        self.stdout.write(self.style.SUCCESS("orstream demo"))
        self.stdout.write(f"  sign in at {settings.PUBLIC_URL}/accounts/login/ as coordinator / {password}")
        self.stdout.write(
            f"  admin: {settings.PUBLIC_URL}/admin/ with the same sign-in (operating rooms, and a read-only view of"
            " sessions, participants, recordings and consent)"
        )
        self.stdout.write(f"  session: {session.procedure} ({session.get_status_display()}) in {room.name}")
        self.stdout.write(f"  demo video: {clip.name} looped by the edge when the session goes live")
        self.stdout.write("  join links (personal, valid until the session ends):")
        for role, name, external in cast:
            participant = Participant.objects.filter(session=session, role=role, removed_at__isnull=True).first()
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
            self.stdout.write(f"    {participant.get_role_display():32} {services.join_url(token)}")

    def user(self, username: str, first: str, last: str, *, password: str | None = None) -> User:
        user, _ = User.objects.get_or_create(
            username=username, defaults={"first_name": first, "last_name": last, "email": f"{username}@demo.invalid"}
        )
        if password:
            user.set_password(password)
            user.save(update_fields=["password"])
        return user

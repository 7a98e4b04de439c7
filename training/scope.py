"""Which recordings faculty and residents may see: their programme's, and the curated library's.

Registered with recordings' scopes (``recordings.services.recording_scopes``) in
``TrainingConfig.ready()``, so the library's list, the player, the media and the API narrow by it
while recordings imports nothing of training. Coordinators are never narrowed, and a recording's
own surgeon sees it whatever this says (recordings decides both); the patient's consent to
training use (archive_training) is asked on top, by recordings' access check.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from mentoring.models import Role
from orstream import roles
from recordings.models import Recording

from .models import CollectionEntry, ProgrammeMember

TEACHING_ROLES = (ProgrammeMember.Role.FACULTY, ProgrammeMember.Role.DIRECTOR)


def training_recording_scope(user: Any) -> Q | None:
    """The recordings ``user`` may see as faculty or resident, as a filter on Recording:

    - faculty (and directors): the recordings of sessions their programme's residents operated in
      (a recorded performance for the programme) or took part in as residents;
    - residents: the sessions they took part in, the performances recorded for them, and the
      recordings of their own programme;
    - everyone narrowed: the model-procedure library's recordings (curated by faculty).

    None for coordinators (and anyone signed out: recordings refuses them first).
    """
    if not getattr(user, "is_authenticated", False) or roles.user_is_coordinator(user):
        return None
    memberships = ProgrammeMember.objects.filter(user=user)
    taught = memberships.filter(role__in=TEACHING_ROLES).values("programme") if roles.user_is_faculty(user) else None
    studied = memberships.filter(role=ProgrammeMember.Role.RESIDENT).values("programme")
    seen = Recording.objects.filter(pk__in=CollectionEntry.objects.values("recording"))
    seen = seen | Recording.objects.filter(
        session__participants__user=user, session__participants__role=Role.RESIDENT,
        session__participants__removed_at__isnull=True,
    )
    seen = seen | Recording.objects.filter(session__performances__resident=user)
    seen = seen | Recording.objects.filter(session__performances__programme__in=studied)
    if taught is not None:
        seen = seen | Recording.objects.filter(session__performances__programme__in=taught)
        residents = ProgrammeMember.objects.filter(programme__in=taught, role=ProgrammeMember.Role.RESIDENT).values("user")
        seen = seen | Recording.objects.filter(
            session__participants__user__in=residents, session__participants__role=Role.RESIDENT,
            session__participants__removed_at__isnull=True,
        )
    return Q(pk__in=seen.values("pk"))

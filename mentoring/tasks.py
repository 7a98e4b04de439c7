"""Celery tasks of mentoring: the invitation and cancellation e-mails, and the periodic re-attach
of live sessions to an edge that restarted unannounced.

Enqueued by mentoring.services after the transaction commits; each takes ids, loads the row and
calls the service of the same name. A mail server that refuses or does not answer is retried with
backoff; the last failure is logged (never the link), and the coordinator still has the link shown
on the session page. Sending twice is harmless: the invitation carries the same UID and
SEQUENCE, so a calendar updates the event rather than adding one.
"""

from __future__ import annotations

import logging
import smtplib
from typing import Any

from celery import shared_task

import orstream.celery  # noqa: F401  (the Celery app, configured from Django settings)

from . import services
from .models import Participant

log = logging.getLogger(__name__)
MAX_RETRIES = 6


@shared_task(name="mentoring.tasks.invitation_mail", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def invitation_mail(self: Any, participant_id: int, method: str, sealed_url: str = "") -> str:
    participant = Participant.objects.select_related("session").get(pk=participant_id)
    try:
        services.invitation_mail(participant=participant, method=method, url=services.link_unseal(sealed_url))
    except (OSError, smtplib.SMTPException) as failure:
        if self.request.retries < MAX_RETRIES and not self.request.is_eager:
            raise self.retry(countdown=min(600, 10 * 2**self.request.retries)) from failure
        log.warning("the %s e-mail to participant %s could not be sent: %s", method, participant.public_id, type(failure).__name__)
        return "failed"
    return "sent"


@shared_task(name="mentoring.tasks.sessions_reattach", bind=True)
def sessions_reattach(self: Any) -> list[str]:
    """Beat, every 30 s: put every live session back on its edge if the edge restarted and its
    "edge.started" notice never arrived (the site was restarting too, the network dropped it).
    Idempotent: an edge that has the session is left as it is."""
    return [str(session.public_id) for session in services.edge_restart_handle(boot_id="periodic check")]

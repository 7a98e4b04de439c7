"""Celery job of the consent app: carry out one effect of a narrower consent after it commits.

Queued only by consent.services after a withdrawal (or a record that grants less) commits, one job
per registered effect; with a worker, consent.services has tried the effect once already at
commit, and the job, due a few seconds later, confirms it (or carries it out). The job finds the effect by name, calls consent.services, and owns the
retries: with back-off while the effect raises (the edge restarting, the channel layer or the
database busy), acknowledged late and re-queued when its worker dies. The effects are idempotent,
so a repeat does no harm. It decides nothing: consent.services and the effects do.

Run eagerly (the embedded default has no worker), the job runs on the thread that committed the
withdrawal and retries there, over a few seconds only: long enough for a supervised edge to come
back, short enough for the person who withdrew to get their answer.
"""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task

# Configures the Celery app from Django settings (broker, eager mode); see recordings/tasks.py.
import orstream.celery  # noqa: F401

from . import services
from .effects import ConsentNarrowed

MAX_RETRIES = 8  # on a worker: about 90 s of back-off in all
CONFIRM_AFTER = 3.0  # s: the job follows consent.services' first attempt made at commit
EAGER_ATTEMPTS = 4  # eager: 0.5 + 1 + 2 s between the attempts


def backoff(retries: int) -> float:
    """Seconds before the next attempt: 0.5, 1, 2, 4 ... at most 30 (about 90 s over all tries)."""
    return float(min(0.5 * 2**retries, 30))


@shared_task(
    name="consent.tasks.consent_effect_deliver", bind=True, acks_late=True, reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
)
def consent_effect_deliver(self: Any, effect: str, change: dict[str, Any]) -> None:
    narrowed = ConsentNarrowed.from_json(change)
    if self.request.is_eager:
        # Celery's own retry of an eager task raises Retry at the caller instead of trying again.
        return _deliver_eagerly(effect, narrowed)
    last = self.request.retries >= MAX_RETRIES
    try:
        services.consent_effect_deliver(effect=effect, change=narrowed, last_attempt=last)
    except Exception as failure:
        if last:
            raise
        raise self.retry(exc=failure, countdown=backoff(self.request.retries)) from failure


def _deliver_eagerly(effect: str, change: ConsentNarrowed) -> None:
    for attempt in range(EAGER_ATTEMPTS):
        last = attempt == EAGER_ATTEMPTS - 1
        try:
            services.consent_effect_deliver(effect=effect, change=change, last_attempt=last)
            return
        except Exception:
            if last:
                raise
            time.sleep(backoff(attempt))

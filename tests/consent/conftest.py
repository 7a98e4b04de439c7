"""Consent's own fixtures. ``probe`` registers an effect that records what consent announces, so
consent's tests need no app above it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from consent.effects import ConsentEffect, ConsentNarrowed, consent_effects
from consent.models import ConsentRecord


@dataclass
class Probe:
    within: list[ConsentNarrowed] = field(default_factory=list)
    delivered: list[ConsentNarrowed] = field(default_factory=list)
    withdrawn_in_database: list[bool] = field(default_factory=list)
    fail_within: Exception | None = None
    deliver_failures: int = 0  # how many deliveries fail before one succeeds

    def run_within(self, *, change: ConsentNarrowed) -> None:
        self.within.append(change)
        self.withdrawn_in_database.append(
            not ConsentRecord.objects.filter(session_id=change.session_id, withdrawn_at__isnull=True).exists()
        )
        if self.fail_within is not None:
            raise self.fail_within

    def run_deliver(self, *, change: ConsentNarrowed) -> None:
        if self.deliver_failures:
            self.deliver_failures -= 1
            raise ConnectionError("the media server did not answer")
        self.delivered.append(change)


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries follow each other at once: the tests count attempts, they do not wait for them."""
    from consent import tasks

    monkeypatch.setattr(tasks, "backoff", lambda retries: 0.0)


@pytest.fixture
def probe(no_backoff: None) -> Iterator[Probe]:
    state = Probe()
    effect = ConsentEffect(name="tests.probe", within=state.run_within, deliver=state.run_deliver)
    consent_effects.register(effect)
    try:
        yield state
    finally:
        consent_effects.unregister("tests.probe")

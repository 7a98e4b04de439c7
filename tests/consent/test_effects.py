"""Consent announces a narrower consent to the effects the apps register, and carries them out:
``within`` in the withdrawal's own transaction, ``deliver`` after commit in a retried job whose
failure is audited, never swallowed. These tests register a probe effect of their own; the apps'
real effects are tested in tests/mentoring and tests/recordings."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from consent import services, tasks
from consent.audit import audit_verify
from consent.effects import ConsentEffect, ConsentEffects, ConsentNarrowed, consent_effects
from consent.models import AuditEvent, ConsentRecord
from tests.conftest import ALL_PURPOSES

from .conftest import Probe

CONSENT = Path(services.__file__).resolve().parent
ABOVE = {"mentoring", "recordings", "frontend"}


def test_a_withdrawal_runs_each_effect_inside_its_transaction_then_delivers_after_commit(
    probe: Probe, session: Any, consenting_patient: ConsentRecord, alice: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as pending:
        services.consent_withdraw(record=consenting_patient, by=alice, reason="patient asked")
    # Within ran in the withdrawal's transaction, which had already marked the record withdrawn
    # (and an error there rolls it back: the next test).
    assert [c.session_id for c in probe.within] == [session.pk]
    assert probe.withdrawn_in_database == [True]
    assert probe.within[0].granted == frozenset() and probe.within[0].by_id == alice.pk
    assert probe.within[0].reason == "consent withdrawn"
    assert probe.delivered == []  # nothing reaches the edge or the pages before commit
    for callback in pending:
        callback()
    assert probe.delivered == probe.within


def test_an_effect_that_fails_within_rolls_the_withdrawal_back(
    probe: Probe, consenting_patient: ConsentRecord, alice: Any
) -> None:
    probe.fail_within = RuntimeError("cannot restrict")
    with pytest.raises(RuntimeError, match="cannot restrict"):
        services.consent_withdraw(record=consenting_patient, by=alice)
    consenting_patient.refresh_from_db()
    assert consenting_patient.withdrawn_at is None
    assert not AuditEvent.objects.filter(action="consent.withdraw").exists()


def test_a_delivery_that_fails_is_retried_until_it_succeeds(
    probe: Probe, consenting_patient: ConsentRecord, alice: Any, django_capture_on_commit_callbacks: Any
) -> None:
    probe.deliver_failures = 3
    with django_capture_on_commit_callbacks(execute=True):
        services.consent_withdraw(record=consenting_patient, by=alice)
    assert len(probe.delivered) == 1
    assert probe.deliver_failures == 0
    assert not AuditEvent.objects.filter(action="consent.effect").exists()


def test_a_delivery_that_keeps_failing_is_audited_and_the_other_effects_still_run(
    probe: Probe, session: Any, consenting_patient: ConsentRecord, alice: Any, django_capture_on_commit_callbacks: Any,
    caplog: Any,
) -> None:
    others: list[ConsentNarrowed] = []

    def other(*, change: ConsentNarrowed) -> None:
        others.append(change)

    # Registered after the probe: it must run even though the probe's delivery gives up.
    consent_effects.register(ConsentEffect(name="tests.other", deliver=other))
    try:
        probe.deliver_failures = tasks.EAGER_ATTEMPTS  # every attempt of the (eager) job
        with django_capture_on_commit_callbacks(execute=True):
            services.consent_withdraw(record=consenting_patient, by=alice)
    finally:
        consent_effects.unregister("tests.other")
    assert probe.delivered == [] and probe.deliver_failures == 0
    assert len(others) == 1
    (event,) = AuditEvent.objects.filter(action="consent.effect")
    assert event.outcome == "refused" and event.target == "effect:tests.probe"
    assert event.session_public_id == str(session.public_id)
    assert event.detail == {"reason": "consent withdrawn", "error": "the media server did not answer"}
    assert "consent effect tests.probe" in caplog.text and "was not carried out" in caplog.text
    assert audit_verify() is None


def test_a_newer_record_that_grants_less_announces_what_it_still_grants(
    probe: Probe, session: Any, consent_form: Any, consenting_patient: ConsentRecord, alice: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    kept = {"record", "live_internal"}
    with django_capture_on_commit_callbacks(execute=True):
        services.consent_record(
            session=session, form=consent_form, decisions={p: p in kept for p in ALL_PURPOSES},
            obtained_by=alice, attestation="Patient no longer agrees to other centres or research",
        )
    (change,) = probe.delivered
    assert change.granted == frozenset(kept)
    assert change.covers("record") and not change.covers("live_external")
    assert change.reason == "replaced by a consent record that grants less"


def test_a_newer_record_that_grants_as_much_announces_nothing(
    probe: Probe, session: Any, consent_form: Any, refusing_patient: ConsentRecord, alice: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        services.consent_record(
            session=session, form=consent_form, decisions={p: True for p in ALL_PURPOSES},
            obtained_by=alice, attestation="Patient agreed after all, signed form",
        )
    assert probe.within == [] and probe.delivered == []


def test_the_announcement_reads_the_same_on_a_worker() -> None:
    change = ConsentNarrowed(session_id=7, session_public_id="p", granted=frozenset({"record"}), by_id=None, reason="r")
    assert ConsentNarrowed.from_json(change.as_json()) == change


def test_an_effect_name_cannot_be_taken_twice() -> None:
    registry = ConsentEffects()

    def one(*, change: ConsentNarrowed) -> None: ...

    def two(*, change: ConsentNarrowed) -> None: ...

    registry.register(ConsentEffect(name="a", deliver=one))
    registry.register(ConsentEffect(name="a", deliver=one))  # the same again: AppConfig.ready may run twice
    with pytest.raises(ValueError, match="already registered as 'a'"):
        registry.register(ConsentEffect(name="a", deliver=two))
    with pytest.raises(LookupError, match="no consent effect is registered as 'b'"):
        registry.get("b")


def imported_apps(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_consent_imports_no_app_above_it() -> None:
    # Lazy imports inside functions count too: ast.walk sees every import statement.
    offenders = {
        str(path.relative_to(CONSENT.parent)): sorted(imported_apps(path) & ABOVE)
        for path in CONSENT.rglob("*.py")
        if imported_apps(path) & ABOVE
    }
    assert offenders == {}


def test_with_a_worker_each_effect_is_tried_at_commit_and_its_job_follows_even_if_that_failed(
    probe: Probe, consenting_patient: ConsentRecord, alice: Any, django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    queued: list[tuple[str, float, int]] = []

    def enqueue(args: tuple[str, dict[str, Any]], *, countdown: float) -> None:
        # What the broker is handed, and how many deliveries had happened by then.
        queued.append((args[0], countdown, len(probe.delivered)))

    monkeypatch.setitem(tasks.consent_effect_deliver.app.conf, "task_always_eager", False)
    monkeypatch.setattr(tasks.consent_effect_deliver, "apply_async", enqueue)
    probe.deliver_failures = 1  # the attempt at commit fails
    with django_capture_on_commit_callbacks(execute=True):
        services.consent_withdraw(record=consenting_patient, by=alice)
    assert ("tests.probe", tasks.CONFIRM_AFTER, 0) in queued
    assert probe.deliver_failures == 0 and probe.delivered == []  # tried once, left to the job
    (change,) = probe.within
    tasks.consent_effect_deliver.run("tests.probe", change.as_json())  # the job, as a worker runs it
    assert probe.delivered == [change]


def test_with_a_worker_an_effect_done_at_commit_is_only_confirmed_by_its_job(
    probe: Probe, consenting_patient: ConsentRecord, alice: Any, django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    queued: list[tuple[str, int]] = []
    monkeypatch.setitem(tasks.consent_effect_deliver.app.conf, "task_always_eager", False)
    monkeypatch.setattr(
        tasks.consent_effect_deliver, "apply_async", lambda args, *, countdown: queued.append((args[0], len(probe.delivered)))
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.consent_withdraw(record=consenting_patient, by=alice)
    # Delivered at commit, before its job was queued.
    assert ("tests.probe", 1) in queued and len(probe.delivered) == 1

"""The audit trail's hash chain and `manage.py audit_verify`, tampered with as an attacker would: raw SQL."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from consent.audit import audit_hash, audit_head, audit_record, audit_verify
from consent.models import AuditEvent


@contextmanager
def tampering() -> Iterator[Any]:
    """A cursor for an attacker who owns the database: they switch the append-only trigger off first."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE consent_auditevent DISABLE TRIGGER consent_auditevent_append_only")
        try:
            yield cursor
        finally:
            if connection.vendor == "postgresql":
                cursor.execute("ALTER TABLE consent_auditevent ENABLE TRIGGER consent_auditevent_append_only")


def test_the_database_refuses_to_change_or_delete_an_audit_event(chain: list[AuditEvent]) -> None:
    from django.db import DatabaseError, transaction

    if connection.vendor != "postgresql":
        pytest.fail("the append-only trigger is PostgreSQL's: run the suite on PostgreSQL")
    for sql in ("UPDATE consent_auditevent SET actor = 'x' WHERE id = %s", "DELETE FROM consent_auditevent WHERE id = %s"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [chain[1].id])
    assert audit_verify() is None


def run_audit_verify(*args: str) -> tuple[int, str]:
    """Run the command, returning (exit status, everything printed).

    `manage.py` turns a CommandError into ``sys.exit(error.returncode)`` after printing it; the
    helper does the same without `run_from_argv`, which would close the test's connection.
    """
    out = io.StringIO()
    try:
        call_command("audit_verify", *args, stdout=out, stderr=out)
    except CommandError as error:
        return error.returncode, f"{out.getvalue()}{error}"
    return 0, out.getvalue()


@pytest.fixture
def chain(db: Any) -> list[AuditEvent]:
    return [
        audit_record(action="recording.view", actor=f"user:{n}", target=f"recording:{n}", detail={"form": "v2", "n": n})
        for n in range(5)
    ]


def test_an_untouched_chain_verifies(chain: list[AuditEvent]) -> None:
    assert audit_verify() is None
    status, output = run_audit_verify()
    assert status == 0
    assert "intact: 5 events" in output


def test_one_changed_byte_in_an_events_detail_is_found(chain: list[AuditEvent]) -> None:
    victim = chain[2]
    with tampering() as cursor:
        cursor.execute(
            "UPDATE consent_auditevent SET detail = replace(detail::text, '\"v2\"', '\"v3\"')::jsonb WHERE id = %s",
            [victim.id],
        )
    broken = audit_verify()
    assert broken is not None
    assert broken.event_id == victim.id
    assert "changed" in broken.reason
    status, output = run_audit_verify()
    assert status == 1
    assert f"event {victim.id}" in output


def test_a_deleted_event_is_found_at_the_next_one(chain: list[AuditEvent]) -> None:
    with tampering() as cursor:
        cursor.execute("DELETE FROM consent_auditevent WHERE id = %s", [chain[1].id])
    broken = audit_verify()
    assert broken is not None and broken.event_id == chain[2].id
    assert "removed" in broken.reason
    status, output = run_audit_verify()
    assert status == 1 and f"event {chain[2].id}" in output


def test_reordered_events_are_found(chain: list[AuditEvent]) -> None:
    a, b = chain[1].id, chain[3].id
    with tampering() as cursor:
        # Swap the two rows' positions in the chain.
        cursor.execute("UPDATE consent_auditevent SET id = -1 WHERE id = %s", [a])
        cursor.execute("UPDATE consent_auditevent SET id = %s WHERE id = %s", [a, b])
        cursor.execute("UPDATE consent_auditevent SET id = %s WHERE id = -1", [b])
    broken = audit_verify()
    assert broken is not None and broken.event_id == a
    assert "reordered" in broken.reason
    assert run_audit_verify()[0] == 1


def test_a_rewritten_event_with_a_recomputed_hash_breaks_the_next_link(chain: list[AuditEvent]) -> None:
    victim = AuditEvent.objects.get(pk=chain[2].id)
    victim.outcome = "refused"
    victim.hash = audit_hash(victim)
    with tampering() as cursor:
        cursor.execute("UPDATE consent_auditevent SET outcome = %s, hash = %s WHERE id = %s", ["refused", victim.hash, victim.id])
    broken = audit_verify()
    assert broken is not None and broken.event_id == chain[3].id


def test_a_cut_off_tail_is_found_against_a_kept_head(chain: list[AuditEvent]) -> None:
    _, head = audit_head()
    assert run_audit_verify("--head", head)[0] == 0
    with tampering() as cursor:
        cursor.execute("DELETE FROM consent_auditevent WHERE id >= %s", [chain[3].id])
    status, output = run_audit_verify("--head", head)
    assert status == 1
    assert f"after event {chain[2].id} were removed" in output


def test_gaps_left_by_rolled_back_transactions_are_not_breaks(chain: list[AuditEvent]) -> None:
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record(action="recording.view", actor="user:9")
        raise RuntimeError("rolled back")
    after = audit_record(action="recording.view", actor="user:10")
    assert after.id > chain[-1].id + 1
    assert audit_verify() is None


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_the_chain_whole() -> None:
    from functools import partial

    from tests.concurrency import at_once

    def append(writer: int) -> int:
        for n in range(25):
            audit_record(action="recording.view", actor=f"user:{writer}", detail={"n": n})
        return writer

    assert at_once(*(partial(append, w) for w in range(4))) == [0, 1, 2, 3]
    events = list(AuditEvent.objects.order_by("id"))
    assert len(events) == 100
    # One chain, no fork: every event links to the one before it, each hash is followed once.
    assert len({e.prev_hash for e in events}) == 100
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    status, output = run_audit_verify()
    assert status == 0 and "Audit trail intact: 100 events" in output

"""Sign-in is throttled per account and per address, and every failure is audited."""

from __future__ import annotations

from typing import Any

from django.test import Client

from consent.models import AuditEvent
from mentoring import services
from tests.conftest import make_user


def sign_in(client: Client, username: str, password: str, *, address: str = "10.0.0.1", path: str = "/accounts/login/") -> Any:
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=address)


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_five_wrong_passwords_lock_the_account_even_against_the_right_one(alice, settings):
    client = Client()
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        assert sign_in(client, "alice", "wrong").status_code == 200
    response = sign_in(client, "alice", "alice-pass-Xy9!")
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode() and "try again" in response.content.decode()
    assert not signed_in(client)
    # From another address too: the account is what was attacked.
    assert sign_in(Client(), "alice", "alice-pass-Xy9!", address="10.9.9.9").status_code == 429


def test_failures_and_throttled_attempts_are_audited(alice, settings):
    client = Client()
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT + 1):
        sign_in(client, "alice", "wrong")
    events = AuditEvent.objects.filter(action="auth.login", outcome="refused", actor="anonymous")
    assert [e.detail["reason"] for e in events] == ["bad credentials"] * settings.LOGIN_FAILURES_PER_ACCOUNT + ["throttled"]
    assert {e.detail["account"] for e in events} == {"alice"} and {e.detail["address"] for e in events} == {"10.0.0.1"}
    assert all("wrong" not in str(e.detail) for e in events)


def test_one_address_trying_many_accounts_is_throttled(alice, bob, settings):
    client = Client()
    for n in range(settings.LOGIN_FAILURES_PER_ADDRESS):
        sign_in(client, f"nobody{n}", "guess", address="10.6.6.6")
    assert sign_in(client, "bob", "bob-pass-Xy9!", address="10.6.6.6").status_code == 429
    # Bob himself, from his own desk, is not locked out by it.
    other = Client()
    assert sign_in(other, "bob", "bob-pass-Xy9!", address="10.0.0.2").status_code == 302
    assert signed_in(other)


def test_the_right_password_before_the_limit_signs_in_and_clears_the_count(alice, settings):
    client = Client()
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT - 1):
        sign_in(client, "alice", "wrong")
    assert sign_in(client, "alice", "alice-pass-Xy9!").status_code == 302
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT - 1):
        sign_in(Client(), "alice", "wrong")
    assert sign_in(Client(), "alice", "alice-pass-Xy9!").status_code == 302


def test_the_admin_sign_in_is_throttled_too(db, settings):
    make_user("root", coordinator=True).__class__.objects.filter(username="root").update(is_staff=True, is_superuser=True)
    client = Client()
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        sign_in(client, "root", "wrong", path="/admin/login/")
    response = sign_in(client, "root", "root-pass-Xy9!", path="/admin/login/")
    assert "Too many failed sign-ins" in response.content.decode()
    assert not signed_in(client)


def test_a_flood_of_garbage_join_links_is_counted_not_written_row_by_row(client, session):
    for n in range(300):
        assert client.get(f"/join/garbage-{n}/").status_code == 403
    events = list(AuditEvent.objects.filter(action="session.join", outcome="refused"))
    assert 10 <= len(events) <= 12
    assert max(e.detail.get("refused_this_minute", 0) for e in events) == 100


def test_a_person_with_an_expired_link_is_still_audited_one_by_one(client, carol, alice):
    token = services.join_token_mint(participant=carol)
    services.join_token_revoke(participant=carol, by=alice)
    for _ in range(3):
        client.get(f"/join/{token}/")
    assert AuditEvent.objects.filter(action="session.join", outcome="refused", detail__reason="revoked").count() == 3

"""The Content-Security-Policy header, in both profiles (the pages themselves are tried in
Chromium by tests/e2e/test_csp.py)."""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit

import pytest
from django.db import connection

from consent.models import AuditEvent
from orstream import csp

from .test_settings import PRODUCTION, manage

SHOW = (
    "from django.test import Client; "
    "r = Client().get('/api/schema/', HTTP_HOST='orstream.hospital.example', secure=True); "
    "print(r.headers.get('Content-Security-Policy'))"
)


@pytest.mark.parametrize("profile", ["embedded", "production"])
def test_every_response_carries_the_strict_policy_in_both_profiles(profile, tmp_path, request):
    if profile == "production":
        # Production refuses the schema to a reader who is not signed in, and every refusal is
        # audited: the process gets a database (the tests' own), as a production site always has.
        request.getfixturevalue("transactional_db")
        env = {**PRODUCTION, "DATABASE_URL": the_tests_database_url(), "ORSTREAM_CHANNEL_PREFIX": f"test-{uuid.uuid4().hex}"}
    else:
        # Nothing is migrated under tmp_path: the schema is public here and needs no database.
        env = {"ORSTREAM_VAR_DIR": str(tmp_path), "ALLOWED_HOSTS": "orstream.hospital.example"}
    result = manage("shell", "-c", SHOW, env=env)
    assert result.stdout.strip().splitlines()[-1] == csp.POLICY, result.stdout + result.stderr
    if profile == "production":
        [event] = AuditEvent.objects.filter(outcome="refused")
        assert (event.action, event.actor) == ("page.refused", "anonymous")
        assert (event.detail["page"], event.detail["method"], event.detail["status"]) == ("api-schema", "GET", 403)
    else:
        assert not (tmp_path / "orstream.sqlite3").exists()


def the_tests_database_url() -> str:
    """DATABASE_URL naming the database these tests run on."""
    return urlsplit(os.environ["DATABASE_URL"])._replace(path="/" + connection.settings_dict["NAME"]).geturl()


def test_the_policy_runs_only_the_sites_own_scripts_and_styles():
    directives = dict(d.split(" ", 1) for d in csp.POLICY.split("; "))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in csp.POLICY

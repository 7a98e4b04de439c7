"""The Content-Security-Policy header, in both profiles (the pages themselves are tried in
Chromium by tests/e2e/test_csp.py)."""

from __future__ import annotations

import pytest

from orstream import csp

from .test_settings import PRODUCTION, manage

SHOW = (
    "from django.test import Client; "
    "r = Client().get('/api/schema/', HTTP_HOST='orstream.hospital.example', secure=True); "
    "print(r.headers.get('Content-Security-Policy'))"
)


@pytest.mark.parametrize("profile", ["embedded", "production"])
def test_every_response_carries_the_strict_policy_in_both_profiles(profile, tmp_path):
    env = PRODUCTION if profile == "production" else {"ORSTREAM_VAR_DIR": str(tmp_path), "ALLOWED_HOSTS": "orstream.hospital.example"}
    result = manage("shell", "-c", SHOW, env=env)
    assert result.stdout.strip().splitlines()[-1] == csp.POLICY, result.stdout + result.stderr


def test_the_policy_runs_only_the_sites_own_scripts_and_styles():
    directives = dict(d.split(" ", 1) for d in csp.POLICY.split("; "))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in csp.POLICY

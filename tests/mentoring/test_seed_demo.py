from __future__ import annotations

import re
from io import StringIO

from django.core.management import call_command

from mentoring import services
from mentoring.models import Session


def test_seed_demo_prints_a_working_link_per_role_and_can_run_twice(db, settings):
    first = StringIO()
    call_command("seed_demo", "--password", "demo-pass-1", stdout=first)
    second = StringIO()
    call_command("seed_demo", stdout=second)
    assert Session.objects.count() == 1
    links = re.findall(r"/join/([^/\s]+)/", second.getvalue())
    assert len(links) == 5
    roles = {services.join_token_check(token=t).participant.role for t in links}
    assert roles == {"surgeon", "mentor", "resident", "display", "coordinator"}
    # Links printed by the earlier run no longer work.
    old = re.findall(r"/join/([^/\s]+)/", first.getvalue())[1]
    try:
        services.join_token_check(token=old)
    except services.JoinRefused as refusal:
        assert refusal.reason == "revoked"
    else:
        raise AssertionError("an old demo link still works")
    assert "coordinator / " in second.getvalue()

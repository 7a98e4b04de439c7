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


def test_the_demo_coordinator_reaches_the_admin_with_limited_permissions(db, client):
    out = StringIO()
    call_command("seed_demo", "--password", "demo-pass-1", stdout=out)
    assert "/admin/ with the same sign-in" in out.getvalue()
    assert client.login(username="coordinator", password="demo-pass-1")
    session = Session.objects.get()
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/mentoring/operatingroom/add/").status_code == 200
    assert client.get(f"/admin/mentoring/session/{session.pk}/change/").status_code == 200  # read-only view
    assert client.post(f"/admin/mentoring/session/{session.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get("/admin/auth/user/").status_code == 403
    assert Session.objects.filter(pk=session.pk).exists()
    from django.contrib.auth.models import User

    coordinator = User.objects.get(username="coordinator")
    assert coordinator.is_staff and not coordinator.is_superuser


def test_the_live_view_reuses_the_demo_coordinators_participant(db, client):
    call_command("seed_demo", "--password", "demo-pass-1", stdout=StringIO())
    session = Session.objects.get()
    # Live without the edge (the demo room's feed would need one): the live view opens as it would.
    Session.objects.filter(pk=session.pk).update(status="live")
    assert client.login(username="coordinator", password="demo-pass-1")
    assert client.get(f"/sessions/{session.public_id}/live/").status_code == 200
    assert session.participants.filter(role="coordinator").count() == 1

from __future__ import annotations

import re
import stat
from io import StringIO
from pathlib import Path

from django.core.management import call_command

from mentoring import services
from mentoring.models import Role, Session

# The live demo session (training's demo adds an ended, recorded one beside it).
DEMO_PROCEDURE = "Demo: microsurgical anastomosis"


def seed(settings, tmp_path: Path, *args: str) -> tuple[str, str]:
    """Run seed_demo; (what it printed, what it wrote to the links file)."""
    settings.VAR_DIR = tmp_path
    # The training demo's recording is put on the spool and verified into storage: both under tmp.
    settings.RECORDINGS_SPOOL_DIR = tmp_path / "spool"
    settings.MEDIA_ROOT = tmp_path / "media"
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue(), (tmp_path / "demo-links.txt").read_text()


def test_seed_demo_writes_a_working_link_per_role_and_can_run_twice(db, settings, tmp_path):
    _, first = seed(settings, tmp_path, "--password", "demo-pass-1")
    _, second = seed(settings, tmp_path)
    assert Session.objects.filter(procedure=DEMO_PROCEDURE).count() == 1
    links = re.findall(r"/join/([^/\s]+)/", second)
    assert len(links) == 5
    roles = {services.join_token_check(token=t).participant.role for t in links}
    assert roles == {"surgeon", "mentor", "resident", "display", "coordinator"}
    # Links written by the earlier run no longer work.
    old = re.findall(r"/join/([^/\s]+)/", first)[1]
    try:
        services.join_token_check(token=old)
    except services.JoinRefused as refusal:
        assert refusal.reason == "revoked"
    else:
        raise AssertionError("an old demo link still works")
    assert "coordinator / " in second


def test_seed_demo_prints_no_secret_and_keeps_its_file_private(db, settings, tmp_path):
    printed, written = seed(settings, tmp_path, "--password", "demo-pass-1")
    assert "demo-pass-1" in written and "/join/" in written
    assert "demo-pass-1" not in printed and "/join/" not in printed
    assert str(tmp_path / "demo-links.txt") in printed
    assert stat.S_IMODE((tmp_path / "demo-links.txt").stat().st_mode) == 0o600


def test_seed_demo_again_leaves_other_participants_links_alone(db, settings, tmp_path, alice):
    seed(settings, tmp_path)
    session = Session.objects.get(procedure=DEMO_PROCEDURE)
    mentor = services.participant_add(session=session, role=Role.MENTOR, display_name="Dr Kim (real)", by=alice)
    token = services.join_token_mint(participant=mentor, by=alice)
    seed(settings, tmp_path)
    assert services.join_token_check(token=token).participant == mentor


def test_the_demo_coordinator_reaches_the_admin_with_limited_permissions(db, client, settings, tmp_path):
    _, written = seed(settings, tmp_path, "--password", "demo-pass-1")
    assert "/admin/ with the same sign-in" in written
    assert client.login(username="coordinator", password="demo-pass-1")
    session = Session.objects.get(procedure=DEMO_PROCEDURE)
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/mentoring/operatingroom/add/").status_code == 200
    assert client.get(f"/admin/mentoring/session/{session.pk}/change/").status_code == 200  # read-only view
    assert client.post(f"/admin/mentoring/session/{session.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get("/admin/auth/user/").status_code == 403
    assert Session.objects.filter(pk=session.pk).exists()
    from django.contrib.auth.models import User

    coordinator = User.objects.get(username="coordinator")
    assert coordinator.is_staff and not coordinator.is_superuser


def test_the_live_view_reuses_the_demo_coordinators_participant(db, client, settings, tmp_path):
    seed(settings, tmp_path, "--password", "demo-pass-1")
    session = Session.objects.get(procedure=DEMO_PROCEDURE)
    # Live without the edge (the demo room's feed would need one): the live view opens as it would.
    Session.objects.filter(pk=session.pk).update(status="live")
    assert client.login(username="coordinator", password="demo-pass-1")
    assert client.get(f"/sessions/{session.public_id}/live/").status_code == 200
    assert session.participants.filter(role="coordinator").count() == 1

"""The coordinator's session page in a real browser: destructive buttons ask first (a plain form
step, no script), times read in the session's own zone, and a revoked participant shows as such
and gets a new link."""

from __future__ import annotations

from typing import Any

import pytest

from mentoring import services
from mentoring.models import Participant, Session

from .conftest import screenshot
from .test_library import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_coordinator_confirms_each_destructive_action_and_reinvites_a_revoked_mentor(
    site: Any, open_page: Any, session: Session, carol: Participant, alice: Any, consenting_patient: Any, settings: Any
) -> None:
    carol_link = services.join_token_mint(participant=carol)
    page = sign_in(open_page, site, alice, settings, f"/sessions/{session.public_id}/")
    page.get_by_role("heading", name=session.procedure).wait_for()
    when = page.locator(".meta .when").inner_text()
    assert when == services.session_when(session=session) and when.endswith("(Europe/Paris)")
    assert "UTC" not in page.locator(".meta").inner_text()

    row = page.locator(f"tr[data-participant='{carol.public_id}']")
    assert row.get_attribute("data-link") == "active"
    # Revoke asks; going back changes nothing.
    row.get_by_role("button", name="Revoke the links of Dr Carol Mentor").click()
    page.get_by_role("heading", name="Revoke the links of Dr Carol Mentor?").wait_for()
    screenshot(page, "confirm-revoke")
    page.get_by_role("link", name="No, go back").click()
    row.wait_for()
    assert row.get_attribute("data-link") == "active"
    assert services.join_token_check(token=carol_link).participant == carol
    # Confirmed, the link is revoked and the row says so, with a way to send a new one.
    row.get_by_role("button", name="Revoke the links of Dr Carol Mentor").click()
    page.get_by_role("button", name="Revoke their links").click()
    row.wait_for()
    assert row.get_attribute("data-link") == "revoked"
    assert "revoked" in row.locator(".link-state").inner_text()
    with pytest.raises(services.JoinRefused):
        services.join_token_check(token=carol_link)
    row.get_by_role("button", name="Send Dr Carol Mentor a new link").click()
    message = page.locator(".messages li.success")
    message.wait_for()
    new_link = message.inner_text().split("/join/")[1].split("/")[0]
    assert services.join_token_check(token=new_link).participant == carol
    assert row.get_attribute("data-link") == "active"

    # Remove asks too.
    row.get_by_role("button", name="Remove Dr Carol Mentor").click()
    page.get_by_role("heading", name="Remove Dr Carol Mentor from the session?").wait_for()
    page.get_by_role("button", name="Remove them").click()
    page.get_by_role("heading", name=session.procedure).wait_for()
    assert page.locator(f"tr[data-participant='{carol.public_id}']").count() == 0
    carol.refresh_from_db()
    assert carol.removed_at is not None

    # End session: "Keep it live" keeps it live; confirming ends it.
    page.get_by_role("button", name="Go live").click()
    page.get_by_role("button", name="End session").click()
    page.get_by_role("heading", name=f"End {session.procedure}?").wait_for()
    page.get_by_role("link", name="Keep it live").click()
    page.get_by_role("button", name="End session").wait_for()
    session.refresh_from_db()
    assert session.status == "live"
    page.get_by_role("button", name="End session").click()
    page.get_by_role("button", name="End the session").click()
    page.locator(".status.ended").wait_for()
    session.refresh_from_db()
    assert session.status == "ended"


def test_cancelling_a_session_asks_first_in_the_browser(
    site: Any, open_page: Any, session: Session, alice: Any, settings: Any
) -> None:
    page = sign_in(open_page, site, alice, settings, f"/sessions/{session.public_id}/")
    page.get_by_role("button", name="Cancel session").click()
    page.get_by_role("heading", name=f"Cancel {session.procedure}?").wait_for()
    session.refresh_from_db()
    assert session.status == "scheduled"
    page.get_by_role("button", name="Cancel the session").click()
    page.locator(".status.cancelled").wait_for()
    session.refresh_from_db()
    assert session.status == "cancelled"


def test_the_api_docs_render_with_no_network_beyond_the_site(site: Any, browser: Any) -> None:
    context = browser.new_context()
    outside: list[str] = []

    def only_the_site(route: Any) -> None:
        if route.request.url.startswith(site.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_site)
    page = context.new_page()
    page.goto(f"{site.url}/api/docs/")
    page.locator(".swagger-ui .info .title").filter(has_text="orstream API").wait_for(timeout=20_000)
    page.locator(".opblock-summary-path[data-path='/api/recordings/{public_id}/stop/']").wait_for()
    screenshot(page, "api-docs")
    assert outside == []
    context.close()


def test_someone_who_is_not_a_coordinator_is_refused_in_the_browser_and_audited_once(
    site: Any, open_page: Any, bob: Any, settings: Any
) -> None:
    from consent.models import AuditEvent

    page = sign_in(open_page, site, bob, settings, "/rooms/new/")
    page.get_by_role("heading", name="You cannot open this page").wait_for()
    assert "Ask your administrator to add you to the coordinator group." in page.locator("main").inner_text()
    [event] = AuditEvent.objects.filter(actor=f"user:{bob.pk}", outcome="refused")
    assert (event.action, event.target) == ("page.refused", "page:mentoring:room_new")

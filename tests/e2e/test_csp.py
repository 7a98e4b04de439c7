"""The Content-Security-Policy in Chromium: every page, for each role, runs under the strict
policy with no violation, and still works (the live picture plays, the docs render, the player
loads, the consent form reacts).

Violations are caught twice: a ``securitypolicyviolation`` listener installed before any page
script (reported to the test through a binding, so none is lost to a navigation), and the
console's "Content Security Policy" messages. A control at the start proves both listeners
hear a violation when there is one.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User

from mentoring import services
from orstream import csp
from tests.recordings.fixtures import clip, clip_facts  # noqa: F401

from .conftest import CHROMIUM, off_loop
from .test_library import playable_recording  # noqa: F401
from .test_media import live  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-pass-Xy9!"
LISTEN = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolation(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""
JOINED = "() => window.orstream && window.orstream.link.joined"


class Person:
    """One browser context (one person) that records every CSP violation its pages hit."""

    def __init__(self, browser: Any, violations: list[str]) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 720})
        self.violations = violations
        self.context.expose_binding("__cspViolation", lambda source, text: violations.append(f"{source['page'].url}: {text}"))
        self.context.add_init_script(LISTEN)
        self.page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: print(f"[page error] {error}"))

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text:
            self.violations.append(f"{self.page.url}: console: {message.text[:300]}")

    def open(self, url: str, *, status: int = 200) -> Any:
        """Open ``url``; check it answered with ``status`` and carries the site's policy."""
        response = self.page.goto(url)
        assert response is not None and response.status == status, f"{url} answered {response and response.status}"
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy, (url, policy)
        assert "unsafe-eval" not in policy, (url, policy)
        return self.page

    def sign_in(self, site: Any, user: User, then: str = "/") -> None:
        self.open(f"{site.url}/accounts/login/?next={then}")
        self.page.get_by_label("User name").fill(user.username)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(re.compile(rf".*{re.escape(then)}$"))


@pytest.fixture
def people(browser: Any) -> Any:
    violations: list[str] = []
    made: list[Person] = []

    def person() -> Person:
        made.append(Person(browser, violations))
        return made[-1]

    person.violations = violations  # type: ignore[attr-defined]
    yield person
    for p in made:
        p.context.close()


def with_password(settings: Any, *users: User) -> None:
    # The site process knows Django's default hashers, not the fast one the cast was made with.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    for user in users:
        user.set_password(PASSWORD)
        user.save(update_fields=["password"])


def test_the_listeners_hear_a_violation_when_a_page_breaks_the_policy(site, people):
    assert CHROMIUM.exists()
    person = people()
    page = person.open(f"{site.url}/accounts/login/")
    ran = page.evaluate(
        """() => { const s = document.createElement("script"); s.textContent = "window.__ran = 1";
                   document.body.append(s); return window.__ran === 1; }"""
    )
    assert ran is False, "the policy lets an inline script run"
    page.wait_for_timeout(300)
    assert any("script-src" in v for v in people.violations), people.violations
    assert any("console" in v for v in people.violations), people.violations


def test_every_page_of_every_role_runs_under_the_policy_without_a_violation(
    site, people, live, surgeon, carol, resident, alice, dave, playable_recording, settings  # noqa: F811
):
    session = live
    admin = User.objects.create_superuser("root", "root@hospital.example", PASSWORD)
    with_password(settings, alice, dave, admin)
    display = services.participant_add(session=session, role="display", display_name="Conference room B", by=alice)
    _, specialist_url = off_loop(services.specialist_link_mint, session=session, by=alice, minutes=20, display_name="Dr Spec")

    # Signed out: the sign-in pages and a refused link.
    anonymous = people()
    anonymous.open(f"{site.url}/accounts/login/").get_by_label("User name").wait_for()
    anonymous.open(f"{site.url}/admin/login/").get_by_label("Username").wait_for()
    anonymous.open(f"{site.url}/join/not-a-token/", status=403)

    # The OR console publishes; every participant's page joins; the mentor sees the picture.
    console = people()
    console.open(site.join_url(services.join_token_mint(participant=surgeon)))
    console.page.wait_for_function("() => window.orstream.media.state === 'live'", timeout=30_000)
    mentor = people()
    mentor.open(site.join_url(services.join_token_mint(participant=carol)))
    mentor.page.wait_for_function("() => document.getElementById('video').videoWidth > 0", timeout=30_000)
    mentor.page.wait_for_function(
        "() => document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames > 5", timeout=20_000
    )
    for url in (
        site.join_url(services.join_token_mint(participant=resident)),
        site.join_url(services.join_token_mint(participant=display)),
        site.url + urlsplit(specialist_url).path,  # the link names the configured public address
    ):
        viewer = people()
        viewer.open(url).wait_for_function(JOINED, timeout=30_000)
        viewer.context.close()

    # The coordinator's pages.
    coordinator = people()
    coordinator.sign_in(site, alice)
    sid = session.public_id
    coordinator.open(f"{site.url}/").get_by_role("link", name=session.procedure).first.wait_for()
    coordinator.open(f"{site.url}/sessions/new/")
    coordinator.open(f"{site.url}/rooms/new/")
    detail = coordinator.open(f"{site.url}/sessions/{sid}/")
    detail.get_by_role("button", name="End session").click()  # the confirmation page, then back
    detail.get_by_role("button", name="End the session").wait_for()
    detail.get_by_role("link", name="Keep it live").click()
    detail.get_by_role("link", name="Open the live view").wait_for()
    live_view = coordinator.open(f"{site.url}/sessions/{sid}/live/")
    live_view.wait_for_function(JOINED, timeout=30_000)
    live_view.wait_for_function("() => !document.getElementById('record-start').disabled", timeout=20_000)
    consent = coordinator.open(f"{site.url}/consent/sessions/{sid}/")
    # Its script runs: only the chosen form's uses are shown and enabled.
    consent.wait_for_function("() => document.querySelectorAll('.decision-row:not([hidden])').length > 0")
    coordinator.open(f"{site.url}/recordings/").get_by_role("heading", name="Recordings library").wait_for()
    player = coordinator.open(f"{site.url}/recordings/{playable_recording.public_id}/")
    player.wait_for_function("() => document.getElementById('player').dataset.state === 'ready'", timeout=15_000)
    assert player.evaluate("() => getComputedStyle(document.getElementById('frame')).aspectRatio") == "320 / 240"
    docs = coordinator.open(f"{site.url}/api/docs/")
    docs.locator("#swagger-ui .info .title").wait_for(timeout=15_000)  # Swagger UI ran and drew the schema
    coordinator.open(f"{site.url}/api/sessions/").locator("#content").wait_for()

    # A resident's library and player.
    resident_person = people()
    resident_person.sign_in(site, dave, "/recordings/")
    resident_person.open(f"{site.url}/recordings/{playable_recording.public_id}/").wait_for_function(
        "() => document.getElementById('player').dataset.state === 'ready'", timeout=15_000
    )

    # The admin, signed in.
    staff = people()
    staff.open(f"{site.url}/admin/login/?next=/admin/")
    staff.page.get_by_label("Username").fill("root")
    staff.page.get_by_label("Password").fill(PASSWORD)
    staff.page.get_by_role("button", name="Log in").click()
    staff.page.wait_for_url(re.compile(r".*/admin/$"))
    staff.open(f"{site.url}/admin/")
    staff.open(f"{site.url}/admin/mentoring/session/")
    staff.open(f"{site.url}/admin/mentoring/session/{session.pk}/change/").locator("#content-main").wait_for()

    mentor.page.wait_for_timeout(500)  # a late violation report has its moment
    assert people.violations == [], "\n".join(people.violations)
    assert csp.POLICY.startswith("default-src 'self'")

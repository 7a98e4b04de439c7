"""What people see on the live pages when no video is involved: refusals, drawings, chat."""

from __future__ import annotations

from typing import Any

import pytest

from mentoring import services

from .conftest import off_loop, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def display_participant(session: Any, alice: Any) -> Any:
    return services.participant_add(session=session, role="display", display_name="Conference room B", by=alice)


def overlay_ink(page: Any) -> int:
    """How many pixels of the drawing layer carry ink."""
    return int(
        page.evaluate(
            """() => {
              const c = document.getElementById('overlay');
              const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              let n = 0;
              for (let i = 3; i < data.length; i += 4) if (data[i] > 128) n++;
              return n;
            }"""
        )
    )


def test_a_link_refused_for_missing_consent_says_why_and_whom_to_call(site, open_page, session, carol, refusing_patient):
    page = open_page(site.join_url(services.join_token_mint(participant=carol)))
    assert page.get_by_role("heading", name="This link cannot be used").is_visible()
    text = page.locator("main").inner_text()
    assert "consent does not cover it" in text and "Contact the coordinator" in text
    screenshot(page, "refused-consent")


def test_a_revoked_link_drops_the_mentor_with_the_reason_and_no_reconnection(site, open_page, session, carol, alice, consenting_patient):
    page = open_page(site.join_url(services.join_token_mint(participant=carol)))
    page.wait_for_function("() => window.orstream && window.orstream.link.joined")
    off_loop(services.join_token_revoke, participant=carol, by=alice)
    alert = page.get_by_role("alert")
    alert.wait_for(timeout=10_000)
    assert "withdrawn by the coordinator" in alert.inner_text()
    assert page.locator("#connection").inner_text() == "Disconnected"
    page.wait_for_timeout(2500)  # longer than the first reconnection delay
    assert page.evaluate("() => window.orstream.link.state") == "ended"
    screenshot(page, "mentor-removed")


def test_the_mentor_waits_for_the_session_with_a_message_and_no_error(site, open_page, session, carol, consenting_patient):
    page = open_page(site.join_url(services.join_token_mint(participant=carol)))
    status = page.locator("#status")
    status.wait_for(timeout=10_000)
    page.wait_for_function("() => document.getElementById('status').innerText.includes('not started yet')")
    assert "appears as soon as the coordinator starts it" in status.inner_text()
    assert page.locator("#connection").inner_text() == "Connected"
    screenshot(page, "mentor-waiting")


def test_a_stroke_drawn_by_the_mentor_appears_on_the_console_and_in_the_conference_room(
    site, open_page, session, carol, surgeon, alice, consenting_patient
):
    display = display_participant(session, alice)
    mentor = open_page(site.join_url(services.join_token_mint(participant=carol)))
    console = open_page(site.join_url(services.join_token_mint(participant=surgeon)))
    room = open_page(site.join_url(services.join_token_mint(participant=display)), width=1920, height=1080)
    for page in (mentor, console, room):
        page.wait_for_function("() => window.orstream && window.orstream.link.joined")
    assert overlay_ink(console) == 0 and overlay_ink(room) == 0

    mentor.get_by_label("Red").check()
    mentor.get_by_label("Circle").check()
    box = mentor.locator("#overlay").bounding_box()
    cx, cy = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5
    mentor.mouse.move(cx, cy)
    mentor.mouse.down()
    mentor.mouse.move(cx + 40, cy, steps=5)
    mentor.mouse.move(cx + box["width"] * 0.1, cy + 10, steps=5)
    mentor.mouse.up()

    for page in (console, room, mentor):
        page.wait_for_function("() => document.getElementById('overlay').dataset.strokes === '1'", timeout=10_000)
        assert overlay_ink(page) > 100
    stroke = session.annotations.get(kind="stroke")
    assert stroke.payload["tool"] == "circle" and stroke.payload["color"] == "#ff1744"
    (centre, rim) = stroke.payload["points"]
    assert abs(centre[0] - 0.5) < 0.02 and abs(centre[1] - 0.5) < 0.02 and rim[0] > centre[0]
    # Red ink lands at the same place of the picture on every screen, whatever its size.
    for page in (console, room):
        red = page.evaluate(
            """([x, y]) => {
              const c = document.getElementById('overlay');
              const r = Math.hypot((x - 0.5) * c.width, (y - 0.5) * c.height);
              const px = Math.round(c.width * 0.5 + r), py = Math.round(c.height * 0.5);
              const d = c.getContext('2d').getImageData(px - 3, py - 3, 7, 7).data;
              for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i + 1] < 80 && d[i + 3] > 200) return true;
              return false;
            }""",
            rim,
        )
        assert red, "the circle's rim is not where the mentor drew it"
    screenshot(mentor, "mentor")
    screenshot(console, "console")
    screenshot(room, "display")

    mentor.get_by_role("button", name="Clear drawings").click()
    for page in (console, room):
        page.wait_for_function("() => document.getElementById('overlay').dataset.strokes === '0'", timeout=10_000)
        assert overlay_ink(page) == 0


def test_chat_reaches_the_other_mentor_and_the_conference_room_cannot_draw(site, open_page, session, carol, alice, resident, consenting_patient):
    display = display_participant(session, alice)
    mentor = open_page(site.join_url(services.join_token_mint(participant=carol)))
    other = open_page(site.join_url(services.join_token_mint(participant=resident)))
    room = open_page(site.join_url(services.join_token_mint(participant=display)))
    for page in (mentor, other, room):
        page.wait_for_function("() => window.orstream && window.orstream.link.joined")
    mentor.get_by_label("Message").fill("Watch the facial nerve here")
    mentor.get_by_label("Message").press("Enter")
    other.locator("#chat-log li").first.wait_for(timeout=10_000)
    assert "Watch the facial nerve here" in other.locator("#chat-log").inner_text()
    # Residents read and chat, but neither draw nor talk.
    assert not other.locator("#draw-tools").is_visible() and not other.locator("#mic-tools").is_visible()
    assert room.locator("#overlay").evaluate("c => getComputedStyle(c).cursor") != "crosshair"
    assert "Dr Carol Mentor" in other.locator("#people").inner_text()


CAMERA_FAILS = """(name) => {
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    if (constraints.video) throw new DOMException('no camera here', name);
    return new MediaStream();
  };
}"""


@pytest.mark.parametrize(
    "error,title,advice",
    [
        ("NotFoundError", "No camera found", "plugged in and switched on"),
        ("NotAllowedError", "The browser is not allowed to use the camera", "choose “Allow”"),
    ],
)
def test_the_console_says_what_to_do_when_the_camera_is_missing_or_refused(site, browser, session, surgeon, error, title, advice):
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    try:
        context.add_init_script(f"({CAMERA_FAILS})({error!r})")
        page = context.new_page()
        page.goto(site.join_url(services.join_token_mint(participant=surgeon)))
        alert = page.get_by_role("alert")
        alert.wait_for(timeout=10_000)
        assert title in alert.inner_text() and advice in alert.inner_text()
        # Keyboard first: the way out has the focus.
        assert page.evaluate("() => document.activeElement.textContent") == "Try the camera again"
        screenshot(page, f"console-camera-{error}")
    finally:
        context.close()


def test_the_mentor_page_works_from_the_keyboard_and_at_4k(site, open_page, session, carol, consenting_patient):
    page = open_page(site.join_url(services.join_token_mint(participant=carol)), width=3840, height=2160)
    page.wait_for_function("() => window.orstream && window.orstream.link.joined")
    page.wait_for_function("() => !document.getElementById('talk').disabled", timeout=10_000)
    # Tab reaches the size buttons, the talk button, the tools and the chat, in that order.
    reached = []
    for _ in range(14):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("() => document.activeElement.id || document.activeElement.name || document.activeElement.textContent"))
    for control in ("fit", "native", "talk", "open-mic", "tool", "colour", "clear"):
        assert control in reached, f"{control} cannot be reached with Tab: {reached}"
    page.locator("#open-mic").focus()
    page.keyboard.press("Enter")
    assert page.locator("#mic-state").inner_text() == "The operating room hears you."
    page.keyboard.press("Enter")
    assert page.locator("#mic-state").inner_text().startswith("Muted")
    # Text stays readable on a 4K wall screen: larger than at 1280x720.
    size = float(page.evaluate("() => parseFloat(getComputedStyle(document.body).fontSize)"))
    assert size >= 24
    frame = page.locator("#frame").bounding_box()
    assert frame["width"] > 2500 and abs(frame["width"] / frame["height"] - 16 / 9) < 0.01
    screenshot(page, "mentor-4k")

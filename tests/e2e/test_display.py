"""The conference-room display in a real browser: its title and badges sit on a backdrop of their
own along the top edge, legible over any picture, and never over the centre of the picture."""

from __future__ import annotations

from typing import Any

import pytest

from mentoring import services

from .conftest import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (3840, 2160), (1280, 1024)])
def test_the_display_overlays_have_a_backdrop_clear_of_the_pictures_centre(
    site: Any, open_page: Any, session: Any, alice: Any, consenting_patient: Any, width: int, height: int
) -> None:
    display = services.participant_add(session=session, role="display", display_name="Conference room 2", by=alice)
    page = open_page(site.join_url(services.join_token_mint(participant=display)), width=width, height=height)
    page.locator(".kiosk-info .procedure").wait_for()
    geometry = page.evaluate(
        """() => {
          const info = document.querySelector('.kiosk-info').getBoundingClientRect();
          const frame = document.getElementById('frame').getBoundingClientRect();
          const fill = getComputedStyle(document.querySelector('.kiosk-info')).backgroundColor;
          const alpha = (fill.match(/rgba?\\(([^)]+)\\)/)[1].split(',').map(Number)[3]);
          return { info: [info.left, info.top, info.right, info.bottom], frame: [frame.left, frame.top, frame.right, frame.bottom],
                   alpha: alpha === undefined || Number.isNaN(alpha) ? 1 : alpha };
        }"""
    )
    left, top, right, bottom = geometry["info"]
    f_left, f_top, f_right, f_bottom = geometry["frame"]
    assert geometry["alpha"] >= 0.5, f"the title and badges have no backdrop: {geometry}"
    # The picture's middle third (where the surgeon works) stays clear.
    third_top = f_top + (f_bottom - f_top) / 3
    assert bottom <= third_top, f"the overlays reach into the middle of the picture: {geometry}"
    centre = ((f_left + f_right) / 2, (f_top + f_bottom) / 2)
    assert not (left <= centre[0] <= right and top <= centre[1] <= bottom)
    screenshot(page, f"display-{width}x{height}")

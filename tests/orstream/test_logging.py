"""Join tokens never reach a log line, whichever logger prints the request path."""

from __future__ import annotations

import io
import logging

from mentoring import services


def test_a_refused_join_link_is_logged_without_its_token(client, carol, consenting_patient):
    token = services.join_token_mint(participant=carol)
    services.join_token_revoke(participant=carol, by=carol.session.created_by)
    stream = io.StringIO()
    handlers = [h for h in logging.getLogger("django").handlers if isinstance(h, logging.StreamHandler)]
    assert handlers, "the django logger prints through the project's console handler"
    saved = [h.setStream(stream) for h in handlers]
    try:
        assert client.get(f"/join/{token}/").status_code == 403
    finally:
        for handler, old in zip(handlers, saved, strict=True):
            handler.setStream(old)
    logged = stream.getvalue()
    assert "Forbidden: /join/<token>/" in logged
    assert token not in logged and token[:20] not in logged

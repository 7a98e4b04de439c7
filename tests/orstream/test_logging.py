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


def logged_through_the_project_handler(logger: logging.Logger, emit) -> str:
    stream = io.StringIO()
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler))
    old = handler.setStream(stream)
    try:
        emit(logger)
    finally:
        handler.setStream(old)
    return stream.getvalue()


def test_the_servers_access_log_goes_through_the_filter_without_the_token(carol):
    from orstream.serve import AccessLog

    token = services.join_token_mint(participant=carol)
    logged = logged_through_the_project_handler(
        logging.getLogger("orstream.access"),
        lambda _: AccessLog()("http", "complete", {"client": "127.0.0.1:1", "method": "GET", "path": f"/join/{token}/?x=1", "status": 200, "size": 10}),
    )
    assert '"GET /join/<token>/?x=1" 200 10' in logged
    assert token not in logged


def test_tracebacks_bearers_and_secret_parameters_are_redacted(carol):
    token = services.join_token_mint(participant=carol)

    def emit(logger: logging.Logger) -> None:
        logger.info("WHIP call with Authorization: Bearer abc.def-ghi and /x?token=s3cr3t&y=2")
        try:
            raise ValueError(f"could not open /join/{token}/")
        except ValueError:
            logger.exception("failed")

    logged = logged_through_the_project_handler(logging.getLogger("orstream.test"), emit)
    assert "Bearer <token>" in logged and "token=<redacted>&y=2" in logged
    assert "abc.def-ghi" not in logged and "s3cr3t" not in logged
    assert "ValueError: could not open /join/<token>/" in logged and token not in logged

"""Logging filters: no join token or other secret reaches a log line.

A join link carries its token in the path (/join/<token>/). Django's request logger and the ASGI
server's access log (orstream.serve) print paths, so every handler passes records through
``RedactJoinTokens``, which also covers bearer tokens, secrets in query strings and the text of
tracebacks (an exception message may quote what it failed on).
"""

from __future__ import annotations

import logging
import re

JOIN_PATH = re.compile(r"(/join/)[^/\s\"'?]+")
BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")
SECRET_QUERY = re.compile(r"(?i)([?&](?:token|secret|credential|password|signature|key)=)[^&\s\"']+")


def redact(text: str) -> str:
    """``text`` with join tokens, bearer tokens and secret query parameters replaced."""
    text = JOIN_PATH.sub(r"\1<token>", text)
    text = BEARER.sub(r"\1<token>", text)
    return SECRET_QUERY.sub(r"\1<redacted>", text)


class RedactJoinTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True

"""Logging filters: join tokens never reach a log line.

A join link carries its token in the path (/join/<token>/). Django's request logger and the ASGI
server's access log print paths, so every handler passes records through ``RedactJoinTokens``.
"""

from __future__ import annotations

import logging
import re

JOIN_PATH = re.compile(r"(/join/)[^/\s\"']+")


class RedactJoinTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = JOIN_PATH.sub(r"\1<token>", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True

"""``python -m orstream.serve [daphne options] orstream.asgi:application``: the site's ASGI server.

daphne itself, with one change: its access log goes through Python logging (logger
``orstream.access``) instead of straight to stdout, so it passes the same filter as every other
log line and no join token in a request path (``/join/<token>/``) is ever written out. `make run`
(orstream/devserver.py) and docker-compose.yml start the site this way; every daphne option works.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from daphne.access import AccessLogGenerator
from daphne.cli import CommandLineInterface
from daphne.server import Server

from orstream.logfilters import redact

access_log = logging.getLogger("orstream.access")


class AccessLog(AccessLogGenerator):
    """daphne's NCSA-style access lines, written through logging with secrets redacted."""

    def __init__(self) -> None:
        super().__init__(stream=None)

    def write_entry(
        self,
        host: Any,
        date: Any,
        request: str,
        status: Any = None,
        length: Any = None,
        ident: Any = None,
        user: Any = None,
    ) -> None:
        access_log.info('%s "%s" %s %s', host, redact(request), status or "-", length or "-")


class RedactingServer(Server):  # type: ignore[misc]
    def __init__(self, *args: Any, action_logger: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, action_logger=AccessLog() if action_logger is not None else None, **kwargs)


class ServeCommand(CommandLineInterface):  # type: ignore[misc]
    description = "orstream's ASGI server (daphne, with a redacted access log)"
    server_class = RedactingServer


def main(argv: list[str] | None = None) -> None:
    ServeCommand().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()

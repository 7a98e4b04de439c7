"""``python -m orstream.edge --host 127.0.0.1 --port 8010``: run one edge process.

Started by ``make run`` next to the site, or as its own service in production. Configuration
comes from the environment (see config.py); sessions and sources arrive through the API.
Never imports Django.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from .api import announce_start, create_app
from .config import ConfigError, EdgeConfig
from .events import WebhookSender
from .hub import Edge


def build(config: EdgeConfig) -> web.Application:
    """The edge's aiohttp application from its configuration (also used by tests and the benchmark)."""
    webhooks = WebhookSender(
        url=config.webhook_url, secret=config.secret, queue_size=config.webhook_queue_size, edge_id=config.edge_id
    )
    edge = Edge(emit_event=webhooks.emit, ice_loopback=config.ice_loopback, media_dir=config.media_dir)
    return create_app(edge, secret=config.secret, webhooks=webhooks, max_body_bytes=config.max_body_bytes)


async def serve(config: EdgeConfig, host: str, port: int) -> None:
    app = build(config)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    logging.getLogger("orstream.edge").info("edge listening on http://%s:%d", host, port)
    announce_start(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        # cleanup closes every session: sources stopped, peers closed, recordings finished
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orstream.edge", description="orstream media edge")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8010)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # aioice logs every candidate pair at INFO
    logging.getLogger("aioice").setLevel(logging.WARNING)
    try:
        config = EdgeConfig.from_env()
    except ConfigError as exc:
        print(f"orstream edge: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(config, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())

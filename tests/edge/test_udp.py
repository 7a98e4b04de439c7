"""Batches of datagrams through one system call, and what happens when the kernel will not."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from orstream.edge.udp import DatagramWriter, writer_for


class Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[bytes] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append(data)


async def _pair() -> tuple[Any, Inbox, Any, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    inbox_transport, inbox = await loop.create_datagram_endpoint(Inbox, local_addr=("127.0.0.1", 0))
    out_transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    return out_transport, inbox, inbox_transport, inbox_transport.get_extra_info("sockname")


async def _received(inbox: Inbox, count: int) -> list[bytes]:
    for _ in range(200):
        if len(inbox.datagrams) >= count:
            break
        await asyncio.sleep(0.005)
    return inbox.datagrams


async def test_a_batch_arrives_as_separate_datagrams_with_or_without_segmentation_offload() -> None:
    for gso in (True, False):
        out, inbox, inbox_transport, addr = await _pair()
        writer = writer_for(out, addr)
        assert isinstance(writer, DatagramWriter)
        writer.gso = writer.gso and gso
        batch = b"a" * 1200 + b"b" * 1200 + b"c" * 700
        writer.send_batch(memoryview(batch), 1200, 3)
        assert await _received(inbox, 3) == [b"a" * 1200, b"b" * 1200, b"c" * 700]
        assert writer.syscalls == (1 if writer.gso else 3)
        out.close()
        inbox_transport.close()


async def test_a_full_socket_buffer_hands_datagrams_to_the_transport_in_order() -> None:
    out, inbox, inbox_transport, addr = await _pair()
    writer = writer_for(out, addr)
    assert writer is not None

    class FullSocket:
        """The kernel's answer when the send buffer is full."""

        type = socket.SOCK_DGRAM

        def sendmsg(self, *args: Any) -> int:
            raise BlockingIOError

        def sendto(self, *args: Any) -> int:
            raise BlockingIOError

    writer.sock = FullSocket()  # type: ignore[assignment]
    writer.send_batch(memoryview(b"x" * 100 + b"y" * 100), 100, 2)
    writer.send_one(b"z")
    # the transport queued them and writes them out once the socket takes data again
    assert await _received(inbox, 3) == [b"x" * 100, b"y" * 100, b"z"]
    out.close()
    inbox_transport.close()


async def test_only_plain_udp_transports_get_a_writer() -> None:
    class TurnLike:
        def sendto(self, data: bytes, addr: Any) -> None:
            pass

    assert writer_for(TurnLike(), ("127.0.0.1", 9)) is None

"""Writing RTP datagrams straight to a viewer's UDP socket, many per system call when possible.

``RtpStreamSender`` (send.py) calls ``DatagramWriter`` for media packets it has already SRTP-
protected into one contiguous buffer. Where the kernel supports UDP generic segmentation
offload (Linux >= 4.18), one ``sendmsg`` with a ``UDP_SEGMENT`` control message hands it up to
``GSO_MAX_SEGMENTS`` equal-size datagrams (the last may be shorter): a 4K keyframe then costs a
few dozen system calls per viewer instead of ~1,100 ``sendto`` calls through asyncio's transport.
GSO support is detected on the first batch (an error such as EIO or EINVAL turns it off for that
socket, and the batch goes out one datagram at a time); a full socket buffer hands the datagrams
to the asyncio transport, which queues them and reports its backlog to the feed.

Only plain UDP sockets qualify: a TURN relay or TCP path keeps aioice's own transport, whose
``sendto`` wraps the data (``writer_for`` returns None for those). Never blocks, never copies.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
from typing import Any

logger = logging.getLogger(__name__)

# linux/udp.h; Python exposes socket.UDP_SEGMENT only from 3.12 on.
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
SOL_UDP = getattr(socket, "SOL_UDP", 17)
# The kernel accepts at most 64 segments (UDP_MAX_SEGMENTS on older kernels) and one IP
# datagram's worth of bytes (64 KiB minus IP and UDP headers) per GSO send.
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65_000
# errnos meaning "this socket or device cannot segment": fall back to one datagram per call.
_GSO_UNSUPPORTED = {errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP}


class DatagramWriter:
    """Sends to one remote address through one UDP socket, bypassing asyncio's per-datagram path.

    ``transport`` is the asyncio datagram transport that owns the socket; it takes over whatever
    the socket cannot accept right now, so ordering is kept and its backlog stays visible.
    """

    __slots__ = ("transport", "sock", "addr", "gso", "syscalls", "_segment_cmsg")

    def __init__(self, transport: Any, sock: socket.socket, addr: tuple[Any, ...]) -> None:
        # asyncio's selector datagram transport (typed Any: its write-buffer size is not in the ABC)
        self.transport = transport
        self.sock = sock
        self.addr = addr
        self.gso = hasattr(sock, "sendmsg")
        self.syscalls = 0
        # A control message per segment size, built once: batches mostly share one size.
        self._segment_cmsg: dict[int, list[tuple[int, int, bytes]]] = {}

    def send_one(self, data: Any) -> None:
        """One datagram (bytes or a buffer slice)."""
        if self.transport.get_write_buffer_size():
            # Something is already queued in the transport: keep datagrams in order behind it.
            self.transport.sendto(bytes(data), self.addr)
            return
        try:
            self.sock.sendto(data, self.addr)
            self.syscalls += 1
        except (BlockingIOError, InterruptedError):
            self.transport.sendto(bytes(data), self.addr)
        except OSError as exc:
            # Like asyncio: a datagram error (e.g. ECONNREFUSED from an ICMP) is not fatal.
            logger.debug("send to %s failed: %s", self.addr, exc)

    def send_batch(self, data: memoryview, segment: int, count: int) -> None:
        """``count`` datagrams laid end to end in ``data``: all ``segment`` bytes but the last."""
        if count == 1:
            self.send_one(data)
            return
        if self.gso and not self.transport.get_write_buffer_size():
            cmsg = self._segment_cmsg.get(segment)
            if cmsg is None:
                cmsg = self._segment_cmsg[segment] = [(SOL_UDP, UDP_SEGMENT, struct.pack("H", segment))]
            try:
                self.sock.sendmsg((data,), cmsg, 0, self.addr)
                self.syscalls += 1
                return
            except (BlockingIOError, InterruptedError):
                pass  # socket buffer full: the transport queues them one by one below
            except OSError as exc:
                if exc.errno not in _GSO_UNSUPPORTED:
                    logger.debug("send to %s failed: %s", self.addr, exc)
                    return
                logger.info("UDP segmentation offload unavailable on this socket (%s); sending datagrams one by one", exc)
                self.gso = False
        for start in range(0, len(data), segment):
            self.send_one(data[start : start + segment])


def writer_for(transport: Any, addr: tuple[Any, ...]) -> DatagramWriter | None:
    """A writer for a plain UDP asyncio transport; None for anything else (TURN, TCP, closing)."""
    # asyncio hands out only a TransportSocket wrapper without sendmsg; the selector transport
    # keeps the real socket here (aioice's TURN transport has none: it must wrap every datagram).
    sock = getattr(transport, "_sock", None)
    if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_DGRAM:
        return None
    if transport.is_closing():
        return None
    return DatagramWriter(transport, sock, addr)

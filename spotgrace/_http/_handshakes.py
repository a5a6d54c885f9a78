"""Stop new TCP handshakes on a listener, and see the ones still under way (Linux).

Closing a listening socket resets every connection the kernel has not handed
over yet: those in the accept queue, and those whose handshake is under way
(the server answered the SYN, the client's ACK has not arrived). A client of
the second kind already believes it is connected and writes its request; it
reads a reset. So intake stops in this order: new SYNs are dropped at the
socket (:func:`drop_new_handshakes`; a client retries its SYN, then is refused
once the socket closes), the handshakes under way finish
(:func:`handshakes_in_progress` reaches 0) and are accepted, and only then does
the socket close.

The filter drops only SYNs: the ACK that completes a handshake (and the data
that may come with it) must pass, or that connection would hang until the
close and then be reset, which a filter dropping every packet did.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import struct
import sys
from collections.abc import Iterable

__all__ = ["drop_new_handshakes", "handshakes_in_progress", "tcp_ports"]

#: ``SO_ATTACH_FILTER`` (Linux).
_SO_ATTACH_FILTER = 26
#: A classic BPF program. A socket filter on a TCP socket sees the packet from
#: the TCP header on; byte 13 holds the flags, 0x02 is SYN (a new connection
#: attempt: a listener never receives a SYN-ACK). ``ret #0`` drops the packet,
#: ``ret #-1`` keeps all of it.
_SYN_ONLY = (
    (0x30, 0, 0, 13),  # ldb [13]
    (0x45, 0, 1, 0x02),  # jset #0x02, next, skip one
    (0x06, 0, 0, 0),  # ret #0: a SYN, dropped
    (0x06, 0, 0, 0xFFFFFFFF),  # ret #-1: anything else, kept whole
)
_PROGRAM = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in _SYN_ONLY))
#: ``/proc/net/tcp`` state of a request socket: a handshake answered, its ACK not yet in.
_SYN_RECV = "03"
_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def drop_new_handshakes(fd: int) -> bool:
    """Make the kernel drop new SYNs to listener ``fd``; False if unsupported (not Linux).

    Handshakes already under way still complete (their ACK is not a SYN), and
    established connections are not affected.
    """
    if fd < 0 or not sys.platform.startswith("linux"):
        return False
    program = struct.pack("HP", len(_SYN_ONLY), ctypes.addressof(_PROGRAM))  # sock_fprog
    dup = socket.socket(fileno=os.dup(fd))
    try:
        dup.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, program)
    except OSError:
        return False
    finally:
        dup.close()
    return True


def tcp_ports(socks: Iterable[socket.socket]) -> set[int]:
    """The local ports of the TCP (IPv4/IPv6) sockets among ``socks``."""
    ports = set()
    for sock in socks:
        with contextlib.suppress(OSError, AttributeError, IndexError, TypeError):
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                ports.add(int(sock.getsockname()[1]))
    return ports


def handshakes_in_progress(ports: Iterable[int]) -> int | None:
    """Handshakes to these local ports the kernel answered and did not complete; None if unknown.

    Read from ``/proc/net/tcp`` and ``/proc/net/tcp6`` (the network namespace's
    request sockets, state SYN_RECV). A listener sharing the port through
    ``SO_REUSEPORT`` counts its handshakes too.
    """
    wanted = {f"{port:04X}" for port in ports}
    if not wanted:
        return 0
    found, readable = 0, False
    for table in _TABLES:
        try:
            with open(table, encoding="ascii") as lines:
                next(lines, None)  # the header
                for line in lines:
                    fields = line.split(None, 4)
                    if (
                        len(fields) > 3
                        and fields[3] == _SYN_RECV
                        and fields[1].rpartition(":")[2] in wanted
                    ):
                        found += 1
        except OSError:
            continue
        readable = True
    return found if readable else None

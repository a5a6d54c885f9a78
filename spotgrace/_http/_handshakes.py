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

__all__ = [
    "cookie_handshakes_possible",
    "drop_new_handshakes",
    "handshakes_in_progress",
    "has_ipv6",
    "tcp_ports",
]

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
#: sock_diag over netlink (what ``ss`` uses): the kernel lists only the
#: sockets in the states asked for, so the cost does not grow with the
#: connections and TIME_WAIT entries of a busy server (``/proc/net/tcp``
#: formats every one of them: tens of ms with a few thousand).
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST_DUMP = 0x1 | 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
#: ``1 << TCP_SYN_RECV``: a request socket (the SYN answered, the ACK not yet in).
_TCPF_SYN_RECV = 1 << 3
_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
#: ``inet_diag_req_v2``: family, protocol, ext, pad, states, ``inet_diag_sockid``
#: (sport and dport big-endian first, then addresses, interface, cookie: 48 bytes).
_DIAG_REQ = struct.Struct("=BBBxI48s")
_SPORT = struct.Struct("!H")  # at offset 4 of ``inet_diag_msg``


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


def has_ipv6(socks: Iterable[socket.socket]) -> bool:
    """Whether any of ``socks`` is an IPv6 socket (whose handshakes may be IPv4 or IPv6)."""
    return any(getattr(sock, "family", None) == socket.AF_INET6 for sock in socks)


def tcp_ports(socks: Iterable[socket.socket]) -> set[int]:
    """The local ports of the TCP (IPv4/IPv6) sockets among ``socks``."""
    ports = set()
    for sock in socks:
        with contextlib.suppress(OSError, AttributeError, IndexError, TypeError):
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                ports.add(int(sock.getsockname()[1]))
    return ports


def handshakes_in_progress(ports: Iterable[int], *, ipv6: bool = True) -> int | None:
    """Handshakes to these local ports the kernel answered and did not complete; None if unknown.

    Asked of the kernel through sock_diag netlink (Linux): request sockets
    (state SYN_RECV) of the network namespace, over IPv4, and over IPv6 unless
    ``ipv6`` is False (no IPv6 listener: it halves the cost, a few ms on a
    large connection table). A listener sharing the port through
    ``SO_REUSEPORT`` counts its handshakes too.
    """
    wanted = sorted(set(ports))
    if not wanted:
        return 0
    if not sys.platform.startswith("linux"):
        return None
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as nl:
            nl.settimeout(1.0)
            found = 0
            families = (socket.AF_INET, socket.AF_INET6) if ipv6 else (socket.AF_INET,)
            for seq, family in enumerate(families, 1):
                found += _dump(nl, seq, family, set(wanted))
            return found
    except (OSError, ValueError, struct.error):
        return None


def _syncookies_sent() -> int | None:
    """The network namespace's ``TcpExt: SyncookiesSent`` counter (Linux); None if unknown."""
    try:
        with open("/proc/net/netstat", encoding="ascii") as netstat:
            lines = netstat.read().splitlines()
    except (OSError, ValueError):
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            counters = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            with contextlib.suppress(KeyError, ValueError):
                return int(counters["SyncookiesSent"])
    return None


#: The counter when this module was imported (the process started serving).
_COOKIES_AT_START = _syncookies_sent()


def cookie_handshakes_possible() -> bool:
    """Whether the kernel answered SYNs with cookies in this network namespace since start.

    It does when the SYN queue overflows (a connect burst against the backlog)
    or always with ``net.ipv4.tcp_syncookies=2``. A handshake answered with a
    cookie leaves no request socket, so :func:`handshakes_in_progress` cannot
    see it while its ACK is on the way: a wait for handshakes then lasts its
    whole limit.
    """
    now = _syncookies_sent()
    return now is not None and _COOKIES_AT_START is not None and now != _COOKIES_AT_START


def _dump(nl: socket.socket, seq: int, family: int, ports: set[int]) -> int:
    body = _DIAG_REQ.pack(family, socket.IPPROTO_TCP, 0, _TCPF_SYN_RECV, bytes(48))
    header = _NLMSGHDR.pack(
        _NLMSGHDR.size + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP, seq, 0
    )
    nl.send(header + body)
    found = 0
    while True:
        data = nl.recv(65536)
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
            if kind == _NLMSG_DONE:
                return found
            if kind == _NLMSG_ERROR or length < _NLMSGHDR.size:
                raise OSError(f"sock_diag answered an error (message type {kind})")
            if _SPORT.unpack_from(data, offset + _NLMSGHDR.size + 4)[0] in ports:
                found += 1
            offset += (length + 3) & ~3

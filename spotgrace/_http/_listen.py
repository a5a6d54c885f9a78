"""Stop intake on listening sockets shared by forked workers, without a connection reset.

A pre-fork master's workers each hold the same listening socket. Before they
are told to stop, new handshakes are refused at the socket (the kernel drops
new SYNs; a client retries, then is refused once the socket closes) and the
workers, still accepting, empty the kernel's accept queue (and take the
handshakes that were under way, which still complete); only then do they stop,
so no connection the kernel completed is left in the queue to be reset.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterable

from ._handshakes import (
    cookie_handshakes_possible,
    drop_new_handshakes,
    handshakes_in_progress,
    has_ipv6,
    tcp_ports,
)
from ._shared import HANDSHAKE_WAIT

__all__ = ["accept_queue_length", "stop_new_handshakes", "wait_accept_queues_empty"]

#: ``struct tcp_info``: eight one-byte fields, then ``rto, ato, snd_mss,
#: rcv_mss, unacked``; for a listening socket ``unacked`` is the accept queue's length.
_UNACKED = struct.Struct("8x4xIIII")
_POLL = 0.005


def accept_queue_length(sock: socket.socket) -> int | None:
    """Connections the kernel completed that nobody accepted yet; None if unknown."""
    try:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except (OSError, AttributeError):
        return None
    if len(raw) < _UNACKED.size:
        return None
    unacked: int = _UNACKED.unpack_from(raw)[3]
    return unacked


def stop_new_handshakes(socks: Iterable[socket.socket]) -> int:
    """Make the kernel drop new connection attempts on each socket (Linux); returns how many."""
    return sum(1 for sock in socks if drop_new_handshakes(sock.fileno()))


def wait_accept_queues_empty(socks: Iterable[socket.socket], *, limit: float) -> bool:
    """Wait (at most ``limit`` s) until every socket's accept queue is empty; True if it was.

    A handshake still under way (answered, its ACK not yet in) counts as queued:
    it completes into the queue (new SYNs are dropped, its ACK is not). One
    answered with a SYN cookie is invisible: if there may be some, the wait
    lasts at least ``HANDSHAKE_WAIT`` (within ``limit``).
    """
    socks = list(socks)
    ports, ipv6 = tcp_ports(socks), has_ipv6(socks)
    start = time.monotonic()
    end = start + limit
    floor = start + min(limit, HANDSHAKE_WAIT) if cookie_handshakes_possible() else start
    while True:
        lengths = [accept_queue_length(sock) for sock in socks]
        if (
            all(not n for n in lengths)
            and not handshakes_in_progress(ports, ipv6=ipv6)
            and time.monotonic() >= floor
        ):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(_POLL)

"""spotgrace._http._listen: the accept queue's length, and refusing new handshakes (Linux)."""

from __future__ import annotations

import socket
import sys

import pytest

from spotgrace._http._listen import (
    accept_queue_length,
    stop_new_handshakes,
    wait_accept_queues_empty,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def test_accept_queue_length_counts_connections_nobody_accepted() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        assert accept_queue_length(listener) == 0
        clients = [socket.create_connection(listener.getsockname()) for _ in range(3)]
        try:
            assert accept_queue_length(listener) == 3
            assert not wait_accept_queues_empty([listener], limit=0.05)
            taken = [listener.accept()[0] for _ in range(3)]
            assert wait_accept_queues_empty([listener], limit=1)
            for conn in taken:
                conn.close()
        finally:
            for client in clients:
                client.close()


def test_after_stop_new_handshakes_a_connection_is_not_completed() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        assert stop_new_handshakes([listener]) == 1
        with pytest.raises(TimeoutError):
            socket.create_connection(listener.getsockname(), timeout=0.3).close()
        assert accept_queue_length(listener) == 0


def test_unix_sockets_have_no_known_queue_length() -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        assert accept_queue_length(sock) is None

"""Review attack: a SYN-cookie handshake under way at intake close is not waited for.

Run as root in a private network namespace (touches no host sysctl):
    unshare -n .venv/bin/python bench/review_cookie_ack.py [--rtt 0.03] [--rounds 20]
In the namespace: lo up, net.ipv4.tcp_syncookies=2 (every SYN is answered with
a cookie, as when the SYN queue overflows under a connect burst). A raw-socket
client sends a SYN, gets the SYN-ACK, and sends its ACK with its request
``--rtt`` s after close_listeners began (a network round trip). With a request
socket (syncookies off) sock_diag shows the handshake and close_listeners waits
for it (up to HANDSHAKE_WAIT); with a cookie the kernel keeps no state, the
wait returns at once, the listener closes, and the ACK+request is answered by
an RST: a client that believes it is connected reads a reset.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from spotgrace._http._listen import stop_new_handshakes, wait_accept_queues_empty
from spotgrace._http._shared import close_listeners


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _tcp(sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
    mss = struct.pack("!BBH", 2, 4, 1460) if flags & 0x02 else b""
    off = (20 + len(mss)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, 65535, 0, 0) + mss
    src = dst = socket.inet_aton("127.0.0.1")
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(hdr) + len(payload))
    c = _csum(pseudo + hdr + payload)
    return hdr[:16] + struct.pack("!H", c) + hdr[18:] + payload


def _recv_from(
    raw: socket.socket, port: int, sport: int, timeout: float
) -> tuple[int, int, int, bytes] | None:
    raw.settimeout(timeout)
    try:
        while True:
            pkt = raw.recv(65535)
            ihl = (pkt[0] & 0x0F) * 4
            s, d, seq, ack, off, flags = struct.unpack_from("!HHIIBB", pkt, ihl)
            if s == port and d == sport:
                return flags, seq, ack, pkt[ihl + (off >> 4) * 4 :]
    except TimeoutError:
        return None


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"echo:" + data)  # type: ignore[attr-defined]


async def one_round(sport: int, rtt: float) -> str:
    loop = asyncio.get_running_loop()
    took: list[float] = []
    server = await loop.create_server(_Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    try:
        raw.sendto(_tcp(sport, port, 1000, 0, 0x02), ("127.0.0.1", 0))
        synack = await asyncio.to_thread(_recv_from, raw, port, sport, 2)
        assert synack is not None, "no SYN-ACK"
        assert synack[0] & 0x12 == 0x12, synack
        started = loop.time()
        closing = asyncio.create_task(close_listeners([server], _Echo))
        closing.add_done_callback(lambda _: took.append(loop.time() - started))
        await asyncio.sleep(rtt)  # the SYN-ACK's trip to the client, and the ACK's back
        raw.sendto(_tcp(sport, port, 1001, synack[1] + 1, 0x18, b"GET"), ("127.0.0.1", 0))
        outcome = "no answer"
        for _ in range(5):  # a bare ACK of the request may come first
            answer = await asyncio.to_thread(_recv_from, raw, port, sport, 2)
            if answer is None:
                break
            flags, _, _, _data = answer
            # The first answer tells: an RST (no listener: the client reads a reset),
            # or the ACK of the request (a connection was made and queued). This raw
            # client's own kernel then resets that connection (no socket of its own).
            outcome = "reset" if flags & 0x04 else "accepted"
            break
        await closing
        server.close()
        return f"{outcome} (close_listeners took {'<' if took[0] < 0.01 else '>='}10 ms)"
    finally:
        raw.close()


def _master_close(listener: socket.socket, took: list[float]) -> None:
    """The pre-fork master's intake close (spotgrace.gunicorn), then the workers' drain and close."""
    started = time.monotonic()
    stop_new_handshakes([listener])
    wait_accept_queues_empty([listener], limit=1.0)
    took.append(time.monotonic() - started)
    listener.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            listener.accept()[0].close()
    listener.close()


async def one_round_master(sport: int, rtt: float) -> str:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    took: list[float] = []
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    try:
        raw.sendto(_tcp(sport, port, 1000, 0, 0x02), ("127.0.0.1", 0))
        synack = await asyncio.to_thread(_recv_from, raw, port, sport, 2)
        assert synack is not None, "no SYN-ACK"
        closing = asyncio.create_task(asyncio.to_thread(_master_close, listener, took))
        await asyncio.sleep(rtt)
        raw.sendto(_tcp(sport, port, 1001, synack[1] + 1, 0x18, b"GET"), ("127.0.0.1", 0))
        answer = await asyncio.to_thread(_recv_from, raw, port, sport, 2)
        await closing
        outcome = "no answer" if answer is None else "reset" if answer[0] & 0x04 else "accepted"
        return f"{outcome} (master wait took {'<' if took[0] < 0.01 else '>='}10 ms)"
    finally:
        raw.close()


async def main(rounds: int, rtt: float, cookies: str, master: bool) -> None:
    counts: dict[str, int] = {}
    for i in range(rounds):
        outcome = await (one_round_master if master else one_round)(41000 + i, rtt)
        counts[outcome] = counts.get(outcome, 0) + 1
    print(f"{'master' if master else 'close_listeners'} rtt={rtt}s syncookies={cookies}: {counts}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--rtt", type=float, default=0.03)
    ap.add_argument("--cookies", type=int, default=2)
    ap.add_argument("--master", action="store_true", help="the pre-fork master's wait instead")
    args = ap.parse_args()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with open("/proc/sys/net/ipv4/tcp_syncookies", "w") as f:
        f.write(str(args.cookies))
    asyncio.run(main(args.rounds, args.rtt, str(args.cookies), args.master))

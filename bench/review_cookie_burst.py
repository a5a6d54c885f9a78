"""Review evidence: a connect burst makes Linux answer with SYN cookies (no request socket).

Run as root in a private network namespace (default ``tcp_syncookies=1``):
    unshare -n .venv/bin/python bench/review_cookie_burst.py
A listener with asyncio's default backlog (100) that does not accept for 50 ms
gets 400 non-blocking connects from 4 threads; the namespace's TcpExt counters
show how many handshakes were answered with a cookie (invisible to sock_diag).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from pathlib import Path


def _counters() -> tuple[int, int]:
    lines = Path("/proc/net/netstat").read_text().splitlines()
    values = dict(zip(lines[0].split(), lines[1].split(), strict=True))
    return int(values["SyncookiesSent"]), int(values["ListenOverflows"])


def main() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(100)
    port = listener.getsockname()[1]
    before = _counters()
    accepted: list[socket.socket] = []

    def accept() -> None:
        time.sleep(0.05)
        listener.settimeout(2)
        try:
            while True:
                accepted.append(listener.accept()[0])
        except OSError:
            pass

    clients: list[socket.socket] = []

    def burst(n: int) -> None:
        for _ in range(n):
            client = socket.socket()
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                client.connect(("127.0.0.1", port))
            clients.append(client)

    acceptor = threading.Thread(target=accept)
    acceptor.start()
    threads = [threading.Thread(target=burst, args=(100,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    acceptor.join()
    after = _counters()
    print(
        f"backlog 100, 400 connects: SyncookiesSent +{after[0] - before[0]} "
        f"ListenOverflows +{after[1] - before[1]} accepted {len(accepted)}"
    )


if __name__ == "__main__":
    main()

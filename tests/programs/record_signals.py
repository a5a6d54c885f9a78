"""Print each signal received; exit 0 on SIGTERM (after stopping the grandchild).

Usage: record_signals.py child|grandchild [--with-grandchild] [--exit-on SIGNAL]

The child with ``--with-grandchild`` starts a grandchild in its own process
group; each prints ``<role> got <SIGNAL>`` as a signal arrives, and on SIGTERM
``<role> exits; received: A,B,...``. The child sends SIGTERM to the grandchild
before it exits, so the grandchild's summary shows whether a signal reached it.
``--exit-on SIGUSR1`` makes it exit on SIGUSR1 instead (and keep going on SIGTERM).
"""

import signal
import subprocess
import sys

SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")
role = sys.argv[1]
EXIT_ON = sys.argv[sys.argv.index("--exit-on") + 1] if "--exit-on" in sys.argv else "SIGTERM"
received: list[str] = []
grandchild: "subprocess.Popen[bytes] | None" = None


def on_signal(number: int, frame: object) -> None:
    name = signal.Signals(number).name
    received.append(name)
    print(f"{role} got {name}", flush=True)
    if name == EXIT_ON:
        if grandchild is not None:
            if grandchild.poll() is None:
                grandchild.send_signal(signal.SIGTERM)
            grandchild.wait()
        print(f"{role} exits; received: {','.join(received)}", flush=True)
        sys.exit(0)


for name in SIGNALS:
    signal.signal(signal.Signals[name], on_signal)
if "--with-grandchild" in sys.argv:
    grandchild = subprocess.Popen([sys.executable, __file__, "grandchild"])
print(f"{role} ready", flush=True)
while True:
    signal.pause()

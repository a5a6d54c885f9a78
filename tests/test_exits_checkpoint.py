"""FileCheckpoint shared by instances and processes: no writer loses another's key."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from spotgrace.checkpoint import FileCheckpoint

SAVES = 60

WRITER = """
import sys
from spotgrace.checkpoint import FileCheckpoint
store = FileCheckpoint(sys.argv[1])
key, saves = sys.argv[2], int(sys.argv[3])
sys.stdin.readline()  # start together
for i in range(saves):  # a key per save: a lost update stays lost
    store.save(f"{key}-{i}", {"position": i, "complete": True})
print("done", flush=True)
"""


def test_two_processes_saving_their_own_keys_to_one_file_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "ck.json")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, path, key, str(SAVES)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for key in ("loop-a", "loop-b")
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert (proc.returncode, out.strip()) == (0, "done"), out
    store = FileCheckpoint(path)
    # Before locking, each writer's read-modify-write dropped the other's keys.
    missing = [
        f"{key}-{i}"
        for key in ("loop-a", "loop-b")
        for i in range(SAVES)
        if store.load(f"{key}-{i}") != {"position": i, "complete": True}
    ]
    assert missing == []


def test_two_instances_in_one_process_lose_nothing(tmp_path: Path) -> None:
    # The README pattern: one store per loop, on one file.
    path = tmp_path / "ck.json"
    stores = [FileCheckpoint(path), FileCheckpoint(path)]
    start = threading.Barrier(2)

    def write(store: FileCheckpoint, key: str) -> None:
        start.wait()
        for i in range(SAVES):  # a key per save: a lost update stays lost
            store.save(f"{key}-{i}", i)

    threads = [
        threading.Thread(target=write, args=(s, k)) for s, k in zip(stores, "ab", strict=False)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    check = FileCheckpoint(path)
    missing = [f"{k}-{i}" for k in "ab" for i in range(SAVES) if check.load(f"{k}-{i}") != i]
    assert missing == []


def test_lock_file_is_private(tmp_path: Path) -> None:
    FileCheckpoint(tmp_path / "ck.json").save("k", 1)
    assert (tmp_path / ".ck.json.lock").stat().st_mode & 0o777 == 0o600

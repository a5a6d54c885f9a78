"""Checkpoint stores: FileCheckpoint and RedisCheckpoint (real Redis), and the kill -9 torture."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import random
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from spotgrace.checkpoint import (
    CheckpointError,
    CheckpointPathError,
    FileCheckpoint,
    RedisCheckpoint,
)

from ._redis import redis_server_fixture, redis_url_fixture  # noqa: F401 - fixtures

PROGRAMS = Path(__file__).parent / "programs"
WRITER = PROGRAMS / "checkpoint_writer.py"


def _writer_module() -> Any:
    spec = importlib.util.spec_from_file_location("checkpoint_writer", WRITER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- FileCheckpoint -----------------------------------------------------------


def test_file_load_without_file_is_none(tmp_path: Path) -> None:
    store = FileCheckpoint(tmp_path / "ck.json")
    assert store.load("job") is None
    assert not (tmp_path / "ck.json").exists()


def test_file_save_then_load_round_trips(tmp_path: Path) -> None:
    store = FileCheckpoint(tmp_path / "ck.json")
    value = {"position": 3, "names": ["a", "b"], "ratio": 0.5, "done": False, "x": None}
    store.save("job", value)
    assert store.load("job") == value
    assert FileCheckpoint(tmp_path / "ck.json").load("job") == value


def test_file_keys_are_independent(tmp_path: Path) -> None:
    store = FileCheckpoint(tmp_path / "ck.json")
    store.save("a", 1)
    store.save("b", 2)
    store.save("a", 10)
    assert (store.load("a"), store.load("b")) == (10, 2)


def test_file_clear_forgets_one_key_and_removes_the_file_when_empty(tmp_path: Path) -> None:
    path = tmp_path / "ck.json"
    store = FileCheckpoint(path)
    store.save("a", 1)
    store.save("b", 2)
    store.clear("a")
    assert (store.load("a"), store.load("b")) == (None, 2)
    store.clear("missing")
    store.clear("b")
    assert not path.exists()


def test_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "ck.json"
    FileCheckpoint(path).save("job", 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_file_too_open_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "ck.json"
    FileCheckpoint(path).save("job", 1)
    path.chmod(0o644)
    FileCheckpoint(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_file_refuses_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    FileCheckpoint(target).save("job", 1)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    with pytest.raises(CheckpointPathError, match="symlink"):
        FileCheckpoint(link)


def test_file_refuses_a_directory(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(CheckpointPathError, match="not a regular file"):
        FileCheckpoint(tmp_path / "d")
    with pytest.raises(CheckpointPathError, match="must name a file"):
        FileCheckpoint(str(tmp_path) + "/")


def test_file_refuses_a_world_writable_directory_without_sticky_bit(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(CheckpointPathError, match="world-writable"):
        FileCheckpoint(shared / "ck.json")
    shared.chmod(0o1777)  # like /tmp: allowed
    FileCheckpoint(shared / "ck.json").save("job", 1)


def test_file_refuses_a_parent_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(CheckpointPathError):
        FileCheckpoint(tmp_path / "f" / "ck.json")


@pytest.mark.skipif(
    os.geteuid() != 0 and os.environ.get("CI") != "true",
    reason="needs root to chown a file to another user (CI runs as root)",
)
def test_file_refuses_a_file_owned_by_another_user(tmp_path: Path) -> None:
    path = tmp_path / "ck.json"
    path.write_text("{}")
    os.chown(path, 65534, 65534)
    with pytest.raises(CheckpointPathError, match="owned by uid 65534"):
        FileCheckpoint(path)


def test_file_replaced_by_a_symlink_later_is_not_followed(tmp_path: Path) -> None:
    path = tmp_path / "ck.json"
    store = FileCheckpoint(path)
    secret = tmp_path / "secret"
    secret.write_text("do not touch")
    path.symlink_to(secret)
    with pytest.raises(CheckpointPathError, match="symlink"):
        store.load("job")
    assert secret.read_text() == "do not touch"


@pytest.mark.parametrize("content", [b"", b"{", b"[1, 2]", b'{"format": "other"}'])
def test_file_that_is_not_a_checkpoint_is_an_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "ck.json"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"ck\.json"):
        FileCheckpoint(path).load("job")


@pytest.mark.parametrize(("value", "error"), [(object(), TypeError), (math.nan, ValueError)])
def test_file_value_json_cannot_hold_leaves_the_file_alone(
    tmp_path: Path, value: object, error: type[Exception]
) -> None:
    store = FileCheckpoint(tmp_path / "ck.json")
    store.save("job", 1)
    with pytest.raises(error):
        store.save("job", value)
    assert store.load("job") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ck.json.lock", "ck.json"]


def test_file_failed_rename_keeps_the_old_value_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileCheckpoint(tmp_path / "ck.json")
    store.save("job", 1)

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        store.save("job", 2)
    monkeypatch.undo()
    assert store.load("job") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ck.json.lock", "ck.json"]


def test_file_stale_temps_of_dead_writers_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "ck.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    host = os.uname().nodename.replace(".", "_")
    stale = tmp_path / f".ck.json.tmp.{host}.{dead.stdout.strip()}.abcd"
    live = tmp_path / f".ck.json.tmp.{host}.{os.getpid()}.abcd"
    other = tmp_path / ".ck.json.tmp.otherhost.1.abcd"
    for p in (stale, live, other):
        p.write_text("torn")
    FileCheckpoint(path)
    assert (stale.exists(), live.exists(), other.exists()) == (False, True, True)


@pytest.mark.parametrize("key", ["", 3])
def test_file_bad_keys_are_refused(tmp_path: Path, key: Any) -> None:
    store = FileCheckpoint(tmp_path / "ck.json")
    with pytest.raises((TypeError, ValueError)):
        store.save(key, 1)


def test_file_async_methods(tmp_path: Path) -> None:
    store = FileCheckpoint(tmp_path / "ck.json")

    async def main() -> tuple[Any, Any]:
        await store.asave("job", {"position": 7})
        first = await store.aload("job")
        await store.aclear("job")
        return first, await store.aload("job")

    assert asyncio.run(main()) == ({"position": 7}, None)


# -- RedisCheckpoint ----------------------------------------------------------


@pytest.fixture
def make_store(redis_url: str) -> Iterator[Callable[..., RedisCheckpoint]]:
    """RedisCheckpoint(redis_url, key, **options), closed after the test."""
    made: list[RedisCheckpoint] = []

    def make(key: str = "ck", **options: Any) -> RedisCheckpoint:
        made.append(RedisCheckpoint(redis_url, key, **options))
        return made[-1]

    yield make
    for store in made:
        store.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client, to look behind the store's back."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_redis_save_load_clear(make_store: Callable[..., RedisCheckpoint]) -> None:
    store = make_store()
    assert store.load("job") is None
    store.save("job", {"position": 5})
    store.save("other", [1])
    assert make_store().load("job") == {"position": 5}
    store.clear("job")
    assert (store.load("job"), store.load("other")) == (None, [1])


def test_redis_ttl_is_set_on_every_save(
    make_store: Callable[..., RedisCheckpoint], raw: redis.Redis
) -> None:
    store = make_store(ttl=600)
    store.save("job", 1)
    assert 0 < raw.pttl("ck") <= 600_000
    raw.persist("ck")
    store.save("job", 2)
    assert 0 < raw.pttl("ck") <= 600_000
    make_store("plain").save("job", 1)
    assert raw.pttl("plain") == -1


def test_redis_ttl_expires_the_checkpoints(
    make_store: Callable[..., RedisCheckpoint], raw: redis.Redis
) -> None:
    store = make_store(ttl=0.05)
    store.save("job", 1)
    # Redis expires the key by itself; poll generously rather than sleep a fixed time.
    for _ in range(200):
        if not raw.exists("ck"):
            break
        time.sleep(0.05)
    assert store.load("job") is None


@pytest.mark.parametrize("ttl", [0, -1, math.inf, math.nan, "5"])
def test_redis_bad_ttl_is_refused(ttl: Any) -> None:
    with pytest.raises(ValueError, match="ttl"):
        RedisCheckpoint("redis://127.0.0.1:1/0", "ck", ttl=ttl)


def test_redis_corrupt_value_is_an_error(
    make_store: Callable[..., RedisCheckpoint], raw: redis.Redis
) -> None:
    raw.hset("ck", "job", b"{not json")
    with pytest.raises(CheckpointError, match="ck"):
        make_store().load("job")


def test_redis_async_methods(make_store: Callable[..., RedisCheckpoint]) -> None:
    store = make_store()

    async def main() -> Any:
        await store.asave("job", {"position": 1})
        return await store.aload("job")

    assert asyncio.run(main()) == {"position": 1}


def test_redis_store_is_a_context_manager_that_closes_its_client(
    redis_url: str, raw: redis.Redis
) -> None:
    def connections() -> int:
        return len(raw.client_list())

    before = connections()
    with RedisCheckpoint(redis_url, "ck") as store:
        store.save("job", 1)
        assert connections() == before + 1
    for _ in range(100):  # the server sees the close a moment later
        if connections() == before:
            break
        time.sleep(0.05)
    assert connections() == before


def test_redis_store_leaves_a_client_it_was_given_open(raw: redis.Redis) -> None:
    with RedisCheckpoint(key="ck", client=raw) as store:
        store.save("job", 1)
    assert raw.ping()


def test_redis_unreachable_server_fails_within_timeout() -> None:
    store = RedisCheckpoint("redis://127.0.0.1:1/0", "ck", timeout=0.5)
    with pytest.raises(redis.ConnectionError):
        store.save("job", 1)


def test_import_spotgrace_does_not_import_redis() -> None:
    code = "import sys, spotgrace, spotgrace.checkpoint; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- kill -9 torture ------------------------------------------------------------

ROUNDS = 200


def _torture(argv: list[str], load: Callable[[], Any], temps: Callable[[], int]) -> dict[str, int]:
    """Fork writers and SIGKILL each at a random moment; check the checkpoint each time."""
    value = _writer_module().value
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    stats = {"rounds": 0, "saves": 0, "mid_save": 0, "unacked_committed": 0}
    floor = -1  # the checkpoint is known to hold at least value(floor)
    try:
        for _ in range(ROUNDS):
            proc.stdin.write("fork\n")
            acked: list[int] = []
            line = proc.stdout.readline()
            while not line.startswith("child "):
                assert line.startswith("saved "), f"writer said {line!r} (seed {seed})"
                acked.append(int(line.split()[1]))
                line = proc.stdout.readline()
            pid = int(line.split()[1])
            pause = rng.choice([0.0, rng.uniform(0, 0.005), rng.uniform(0, 0.04)])
            if pause:
                time.sleep(pause)
            os.kill(pid, signal.SIGKILL)
            proc.stdin.write(f"reap {pid}\n")
            line = proc.stdout.readline()
            while line != f"reaped {pid}\n":
                assert line.startswith("saved "), f"writer said {line!r} (seed {seed})"
                acked.append(int(line.split()[1]))
                line = proc.stdout.readline()
            stats["mid_save"] += temps() > 0
            loaded = load()
            last = max([floor, *acked])
            stats["rounds"] += 1
            stats["saves"] += len(acked)
            if last < 0 and loaded is None:
                continue  # killed before the very first save completed
            assert isinstance(loaded, dict), f"loaded {loaded!r} (seed {seed})"
            i = loaded["i"]
            assert loaded == value(i), f"torn checkpoint at i={i} (seed {seed})"
            assert last <= i <= last + 1, f"loaded {i}, last acked {last} (seed {seed})"
            stats["unacked_committed"] += i == last + 1
            floor = i
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()
    print(f"torture {argv[0]}: seed={seed} {stats}")
    return stats


@pytest.mark.slow
def test_file_checkpoint_survives_kill_9_at_random_moments(tmp_path: Path) -> None:
    path = tmp_path / "ck.json"
    stats = _torture(
        ["file", str(path)],
        load=lambda: (
            json.loads(path.read_bytes())["checkpoints"].get("torture") if path.exists() else None
        ),
        temps=lambda: sum(p.name.startswith(".ck.json.tmp.") for p in tmp_path.iterdir()),
    )
    # The test only means something if writers saved often and were killed mid-save.
    assert stats["rounds"] == ROUNDS
    assert stats["saves"] >= 10
    assert stats["mid_save"] > 0
    FileCheckpoint(path)  # sweeps the temp files of dead writers
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ck.json.lock", "ck.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.slow
def test_redis_checkpoint_survives_kill_9_at_random_moments(
    redis_url: str, make_store: Callable[..., RedisCheckpoint]
) -> None:
    store = make_store("torture-hash")
    stats = _torture(["redis", redis_url, "torture-hash"], load=lambda: store.load("torture"),
                     temps=lambda: 0)  # fmt: skip
    assert stats["rounds"] == ROUNDS
    assert stats["saves"] >= 10


def test_checkpoint_all_is_sorted_complete_and_documented() -> None:
    import spotgrace.checkpoint as module

    assert module.__all__ == sorted(module.__all__)
    public = {n for n in vars(module) if not n.startswith("_") and n != "annotations"}
    assert public == set(module.__all__)
    for name in module.__all__:
        assert getattr(module, name).__doc__, f"spotgrace.checkpoint.{name} has no docstring"


@pytest.mark.parametrize(
    ("ci", "outcome"), [("1", pytest.fail.Exception), (None, pytest.skip.Exception)]
)
def test_missing_redis_server_skips_locally_and_fails_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str | None, outcome: type[BaseException]
) -> None:
    from . import _redis

    monkeypatch.setattr(_redis.shutil, "which", lambda name: None)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="redis-server not found"):
        _redis._start(tmp_path)

"""FileCheckpoint: checkpoints in one JSON file, replaced atomically.

Public names are re-exported by :mod:`spotgrace.checkpoint`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._base import (
    CheckpointError,
    CheckpointPathError,
    SyncCheckpointStore,
    check_key,
    decode,
    encode,
)

__all__ = ["FileCheckpoint"]

_FORMAT = "spotgrace.checkpoint/1"
# A temp file this old cannot belong to a save still under way.
_STALE_TEMP_SECONDS = 3600.0
# How long a save waits for another writer's lock before it gives up loudly.
_LOCK_WAIT_SECONDS = 10.0


class FileCheckpoint(SyncCheckpointStore):
    """Checkpoints in one JSON file, for local runs and shared volumes (EFS).

    Every save writes the whole file to a temp file in the same directory,
    ``fsync`` s it, renames it over the old file and ``fsync`` s the directory:
    after a crash or ``kill -9`` at any moment the file holds either the
    previous checkpoint or the new one. The file (and a directory it has to
    create) is private to the user: mode ``0600`` (``0700``).

    The constructor refuses, with :class:`CheckpointPathError`, a path it
    cannot make safe: a symlink or non-regular file, a file owned by another
    user, a directory anyone may write to without the sticky bit, or one this
    process cannot write to. A file that is too open is ``chmod`` ed to ``0600``.
    Temp files left by writers that died mid-save are removed.

    One file holds any number of checkpoints, one per key. Every save and
    clear reads, changes and replaces the file under an exclusive ``flock`` on
    a lock file next to it (``.<name>.lock``, ``0600``), so instances in one
    process, threads and processes on one host can share a file without losing
    each other's keys. Two writers of the *same* key still overwrite each other:
    give each loop its own key. On NFS/EFS ``flock`` is emulated with
    ``fcntl`` locks where the mount supports them.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Check (and if needed create) ``path``'s directory; nothing is written yet."""
        self._path = Path(os.path.abspath(os.fspath(path)))
        if os.fspath(path).endswith(os.sep) or self._path.name in ("", ".", ".."):
            raise CheckpointPathError(f"{path!s}: a checkpoint path must name a file")
        self._dir = self._path.parent
        self._tmp_prefix = f".{self._path.name}.tmp."
        self._lock_path = self._dir / f".{self._path.name}.lock"
        self._lock = threading.Lock()
        self._make_safe()
        self._remove_stale_temps()

    @property
    def path(self) -> Path:
        """The checkpoint file (absolute)."""
        return self._path

    def __repr__(self) -> str:
        return f"FileCheckpoint({os.fspath(self._path)!r})"

    def load(self, key: str) -> Any:
        """The value saved under ``key``, or ``None`` if there is none (or no file)."""
        check_key(key)
        return self._read_all().get(key)

    def save(self, key: str, value: object) -> None:
        """Atomically replace the value under ``key``; durable once this returns."""
        check_key(key)
        with self._lock, self._file_lock():
            checkpoints = self._read_all()
            checkpoints[key] = value
            self._write(encode({"format": _FORMAT, "checkpoints": checkpoints}))

    def clear(self, key: str) -> None:
        """Forget ``key``; the file is removed when it holds no checkpoint any more."""
        check_key(key)
        with self._lock, self._file_lock():
            checkpoints = self._read_all()
            if key not in checkpoints:
                return
            del checkpoints[key]
            if checkpoints:
                self._write(encode({"format": _FORMAT, "checkpoints": checkpoints}))
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path)
                self._fsync_dir()

    # -- internals ------------------------------------------------------------

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Hold the exclusive lock shared by every writer of this file, any process."""
        where = os.fspath(self._path)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self._lock_path, flags, 0o600)
        except OSError as exc:
            raise CheckpointPathError(f"{where}: cannot open its lock file: {exc}") from exc
        try:
            self._check_lock_file(fd)
            end = time.monotonic() + _LOCK_WAIT_SECONDS
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > end:
                        raise CheckpointError(
                            f"{where}: another writer has held {self._lock_path.name} for "
                            f"{_LOCK_WAIT_SECONDS:g} s; not saving over it"
                        ) from None
                    time.sleep(0.002)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _check_lock_file(self, fd: int) -> None:
        """Refuse a lock file this user does not own, as the checkpoint file itself is.

        Another user who may create files in the directory (a shared, sticky
        one) could otherwise plant it, hold it, and stall every save for the
        whole lock wait, at shutdown too; root would not even be refused the open.
        """
        st = os.fstat(fd)
        name = self._lock_path.name
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointPathError(f"{self._path}: its lock file {name} is not a regular file")
        if st.st_uid != os.geteuid():
            raise CheckpointPathError(
                f"{self._path}: its lock file {name} is owned by uid {st.st_uid}, "
                "not by this user; remove it if it is stale"
            )

    def _check_existing_lock(self) -> None:
        """A lock file already there must be ours: say so at start, not at the first save."""
        try:
            fd = os.open(
                self._lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
            )
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CheckpointPathError(f"{self._path}: cannot open its lock file: {exc}") from exc
        try:
            self._check_lock_file(fd)
        finally:
            os.close(fd)

    def _make_safe(self) -> None:
        where = os.fspath(self._path)
        try:
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            dir_st = os.stat(self._dir)
        except OSError as exc:
            raise CheckpointPathError(f"{where}: cannot use its directory: {exc}") from exc
        if not stat.S_ISDIR(dir_st.st_mode):
            raise CheckpointPathError(f"{where}: {self._dir} is not a directory")
        if dir_st.st_mode & stat.S_IWOTH and not dir_st.st_mode & stat.S_ISVTX:
            raise CheckpointPathError(
                f"{where}: {self._dir} is world-writable without the sticky bit; "
                "anyone could replace the checkpoint"
            )
        if not os.access(self._dir, os.W_OK | os.X_OK):
            raise CheckpointPathError(f"{where}: {self._dir} is not writable by this process")
        self._check_existing_lock()
        try:
            st = os.lstat(self._path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise CheckpointPathError(f"{where}: is a symlink; give the real path")
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointPathError(f"{where}: exists and is not a regular file")
        if st.st_uid != os.geteuid():
            raise CheckpointPathError(f"{where}: owned by uid {st.st_uid}, not by this user")
        if stat.S_IMODE(st.st_mode) & 0o077:
            fd = os.open(self._path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.fchmod(fd, 0o600)
            finally:
                os.close(fd)

    def _read_all(self) -> dict[str, Any]:
        where = os.fspath(self._path)
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise CheckpointPathError(f"{where}: is a symlink; refusing to read it") from exc
            raise
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise CheckpointPathError(f"{where}: is not a regular file")
            data = f.read()
        doc = decode(data, where)
        if (
            not isinstance(doc, dict)
            or doc.get("format") != _FORMAT
            or not isinstance(doc.get("checkpoints"), dict)
        ):
            raise CheckpointError(f"{where}: not a spotgrace checkpoint file ({_FORMAT})")
        checkpoints: dict[str, Any] = doc["checkpoints"]
        return checkpoints

    def _write(self, data: bytes) -> None:
        tmp = self._dir / (f"{self._tmp_prefix}{_host()}.{os.getpid()}.{secrets.token_hex(4)}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        dfd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _remove_stale_temps(self) -> None:
        """Remove temp files of writers that died mid-save (this host) or are very old."""
        host, now = _host(), time.time()
        with os.scandir(self._dir) as entries:
            for entry in entries:
                if not entry.name.startswith(self._tmp_prefix):
                    continue
                parts = entry.name[len(self._tmp_prefix) :].rsplit(".", 2)
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                dead = len(parts) == 3 and parts[0] == host and not _pid_alive(parts[1])
                if (dead or now - st.st_mtime > _STALE_TEMP_SECONDS) and st.st_uid == os.geteuid():
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)


def _host() -> str:
    return socket.gethostname().replace(".", "_") or "localhost"


def _pid_alive(text: str) -> bool:
    try:
        pid = int(text)
    except ValueError:
        return True  # not ours to judge: leave it to the age rule
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

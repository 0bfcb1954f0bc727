"""Atomic file writes: a reader, or a run resumed after a kill, never sees half a file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import BinaryIO, Iterator

from jaxlottery import paths

_passes: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Fault injection for the test suite: with JAXLOTTERY_KILL_AT="PATTERN:N", the process
    kills itself (SIGKILL, like a preemption) the N-th time it passes a point whose name
    matches PATTERN (fnmatch), e.g. "write results.json:1", "checkpoint:3", "write *:10"."""
    spec = os.environ.get("JAXLOTTERY_KILL_AT")
    if not spec:
        return
    import fnmatch
    import signal

    pattern, _, n = spec.rpartition(":")
    if fnmatch.fnmatch(name, pattern):
        _passes[pattern] = _passes.get(pattern, 0) + 1
        if _passes[pattern] == int(n):
            os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file object whose content replaces `path` only once the block completes:
    written to a temporary file in the same folder, fsynced, then renamed over `path`."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    except OSError as e:  # name the file asked for, not the temporary one
        raise type(e)(e.errno, f"cannot write {path}: {e.strerror}") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            fault_point(f"write {os.path.basename(path)}")  # written, not yet in place
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_open(path) as f:
        f.write(data)


class RunLocked(RuntimeError):
    """Another live process holds the run directory."""


class RunLock:
    """An exclusive lock on a run directory: a `lock` file naming its holder.

    A second process refuses with the holder's pid, host and start time. A lock left by a
    process that no longer exists on this host (killed with -9, a crashed notebook) is stale:
    it is taken over, with a note. Locks held from another host are never broken.
    """

    def __init__(self, directory: str | os.PathLike, log=print):
        self.path = os.path.join(os.fspath(directory), paths.LOCK)
        self.log = log
        self.held = False

    def __enter__(self) -> "RunLock":
        import json
        import socket
        import time

        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder and holder.get("host") == me["host"] and not _alive(holder.get("pid")):
                    self.log(f"removing stale lock {self.path} of process {holder.get('pid')} "
                             "(no longer running)")
                    os.unlink(self.path)
                    continue
                if holder is None:  # empty: being written now, or cut by a crash long ago
                    if time.time() - os.path.getmtime(self.path) < 10:
                        raise RunLocked(f"{self.path} is being taken by another process")
                    os.unlink(self.path)
                    continue
                started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
                raise RunLocked(f"{os.path.dirname(self.path)} is in use by process "
                                f"{holder.get('pid')} on {holder.get('host')} (since {started}); "
                                f"wait for it to finish, or delete {self.path} if it is gone")
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise RunLocked(f"could not take {self.path}")

    def __exit__(self, *exc) -> None:
        if self.held and os.path.exists(self.path):
            os.unlink(self.path)
        self.held = False

    def _holder(self) -> dict | None:
        import json

        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

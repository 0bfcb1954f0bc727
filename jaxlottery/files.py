"""Run files: atomic writes (a reader, or a run resumed after a kill, never sees half a file)
and plain JSON read and written without the checkpoint machinery (the reading wing uses them)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from typing import Any, BinaryIO, Iterator

import numpy as np

from jaxlottery import paths

_passes: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Fault injection for the test suite: with JAXLOTTERY_KILL_AT="PATTERN:N", the process
    kills itself (SIGKILL, like a lost machine) the N-th time it passes a point whose name
    matches PATTERN (fnmatch), e.g. "write results.json:1", "checkpoint:3", "write *:10";
    "PATTERN:N:TERM" sends SIGTERM instead (how preemptible VMs and schedulers stop a job)."""
    spec = os.environ.get("JAXLOTTERY_KILL_AT")
    if not spec:
        return
    import fnmatch
    import signal

    sig = signal.SIGKILL
    if spec.endswith(":TERM"):
        spec, sig = spec[:-len(":TERM")], signal.SIGTERM
    pattern, _, n = spec.rpartition(":")
    if fnmatch.fnmatch(name, pattern):
        _passes[pattern] = _passes.get(pattern, 0) + 1
        if _passes[pattern] == int(n):
            os.kill(os.getpid(), sig)


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


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's contents (run files, results, facts)."""
    with open(path) as f:
        return json.load(f)


def write_json(path: str, obj: Any) -> None:
    """Standard JSON written atomically (temp file, fsync, rename): arrays become lists and a
    value that is not a finite number (NaN: not computable) becomes null."""
    text = json.dumps(_plain(obj), indent=1, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def _plain(x: Any) -> Any:
    """JSON's types: dicts, lists, str, int, finite floats, bool and None (for non-finite)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.ndarray, np.generic)) or hasattr(x, "__array__"):  # jax arrays too
        return _plain(np.asarray(x).tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_open(path) as f:
        f.write(data)


class RunLocked(RuntimeError):
    """Another live process holds the run directory."""


class RunLock:
    """An exclusive lock on a run directory: a `lock` file naming its holder, whose
    modification time the holder refreshes every `heartbeat` seconds while it runs.

    A second process refuses with the holder's pid, host and start time. A lock is taken over,
    with a note naming the old holder, when its holder is gone: a process that no longer exists
    on this host (killed with -9, a crashed notebook), or a lock of any host whose heartbeat is
    older than `expiry` seconds (a Colab runtime that disconnected: the new VM has another host
    name). A live holder on this host is never disturbed; `break_lock` takes any lock.
    """

    def __init__(self, directory: str | os.PathLike, log=print, expiry: float = 300.0,
                 heartbeat: float | None = None, break_lock: bool = False):
        self.path = os.path.join(os.fspath(directory), paths.LOCK)
        self.log = log
        self.expiry = expiry
        self.heartbeat = heartbeat if heartbeat is not None else min(30.0, expiry / 5)
        self.break_lock = break_lock
        self.held = False
        self._stop = None

    def __enter__(self) -> "RunLock":
        import json
        import socket
        import threading
        import time

        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                who = (f"process {holder.get('pid')} on {holder.get('host')}" if holder
                       else "an unreadable holder")
                try:
                    quiet = time.time() - os.path.getmtime(self.path)
                except FileNotFoundError:  # released meanwhile
                    continue
                if self.break_lock:
                    self.log(f"breaking the lock {self.path} of {who} (--break_lock)")
                elif holder and holder.get("host") == me["host"]:
                    if _alive(holder.get("pid")):
                        raise RunLocked(self._in_use(holder))
                    self.log(f"removing stale lock {self.path} of process {holder.get('pid')} "
                             "(no longer running)")
                elif holder is None and quiet < 10:  # being written now
                    raise RunLocked(f"{self.path} is being taken by another process")
                elif holder is not None and quiet <= self.expiry:
                    raise RunLocked(self._in_use(holder))
                elif holder is not None:
                    self.log(f"taking over the lock {self.path} of {who}: not refreshed for "
                             f"{quiet:.0f} s (more than --lock_expiry={self.expiry:g} s), so "
                             "its holder is gone")
                os.unlink(self.path)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            self._stop = threading.Event()
            threading.Thread(target=self._beat, args=(self._stop,), daemon=True,
                             name="jaxlottery-lock-heartbeat").start()
            return self
        raise RunLocked(f"could not take {self.path}")

    def _beat(self, stop) -> None:
        while not stop.wait(self.heartbeat):
            try:
                os.utime(self.path)
            except OSError:  # gone (broken by force): nothing to refresh
                return

    def _in_use(self, holder: dict) -> str:
        import time

        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
        return (f"{os.path.dirname(self.path)} is in use by process {holder.get('pid')} on "
                f"{holder.get('host')} (since {started}, alive within the last "
                f"{self.expiry:g} s); wait for it, or pass --break_lock if it is gone")

    def __exit__(self, *exc) -> None:
        if self._stop is not None:
            self._stop.set()
        if self.held and os.path.exists(self.path):
            os.unlink(self.path)
        self.held = False

    def _holder(self) -> dict | None:
        import json

        try:
            with open(self.path) as f:
                holder = json.load(f)
            return holder if isinstance(holder, dict) else None
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

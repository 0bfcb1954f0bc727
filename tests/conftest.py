"""Test-wide settings.

- Compile time dominates these small runs on CPU, so XLA's optimizations are off (set
  JAXLOTTERY_TEST_OPTIMIZE=1 to keep them).
- No test may reach the network: name lookups and connections to anything but loopback fail
  at once with an OSError, so a test that forgets to mock a download fails instead of hanging.
"""

import atexit
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import jax
import pytest

from jaxlottery import config

if os.environ.get("JAXLOTTERY_TEST_OPTIMIZE") != "1":
    jax.config.update("jax_disable_most_optimizations", True)


def _loopback(host) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if not _loopback(host.decode() if isinstance(host, bytes) else host):
            raise OSError(f"network access in a test: lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            raise OSError(f"network access in a test: connect to {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture(scope="module", autouse=True)
def release_compiled_programs():
    """Each test module's compiled programs are released when it ends. Every XLA:CPU executable
    holds a few memory mappings of JIT code (about 6 for a small program), and one process
    compiling the whole suite passed Linux's default limit of 65,530 mappings per process
    (vm.max_map_count): LLVM aborted with "Unable to allocate section memory" in test_siblings
    (CI, 2026-12-06; the earlier segfaults while serializing to the persistent cache had the
    same cause). Programs a later module needs again come back from the persistent cache."""
    yield
    jax.clear_caches()


# --- the smoke study, shared by the end-to-end and reliability tests ---------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Subprocesses compile like the in-process tests, so results compare exactly. They share one
# persistent XLA cache: the many kill-and-resume processes of one smoke run then compile each
# program once (measured cold and warm times: BUILD_NOTES.md).
XLA_CACHE = tempfile.mkdtemp(prefix="jaxlottery-test-xla-cache-")
atexit.register(shutil.rmtree, XLA_CACHE, ignore_errors=True)
ENV = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1", JAX_PLATFORMS="cpu",
           JAX_COMPILATION_CACHE_DIR=XLA_CACHE, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
           JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
# The test process reads and fills the same cache: what a subprocess compiled (the smoke run) is
# not compiled again here, and the reverse.
for option, value in (("jax_compilation_cache_dir", XLA_CACHE),
                      ("jax_persistent_cache_min_compile_time_secs", 0),
                      ("jax_persistent_cache_min_entry_size_bytes", 0)):
    jax.config.update(option, value)
SMOKE = config.preset("smoke")


def run_cli(workdir, *extra, env=None, **kw):
    return subprocess.Popen([sys.executable, os.path.join(REPO, "experiments", "run.py"),
                             "--preset=smoke", f"--workdir={workdir}", "--no_progress", *extra],
                            env=env or ENV, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def comparable(results):
    """Everything but wall-clock timing."""
    return {k: v for k, v in results.items() if k != "timing"}


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """An uninterrupted smoke run from the CLI: (workdir, rundir, results, stdout)."""
    workdir = tmp_path_factory.mktemp("smoke")
    proc = run_cli(workdir)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    rundir = os.path.join(workdir, SMOKE.run_id())
    with open(os.path.join(rundir, "results.json")) as f:
        return workdir, rundir, json.load(f), out

"""Test-wide settings.

- Compile time dominates these small runs on CPU, so XLA's optimizations are off (set
  JAXLOTTERY_TEST_OPTIMIZE=1 to keep them).
- No test may reach the network: name lookups and connections to anything but loopback fail
  at once with an OSError, so a test that forgets to mock a download fails instead of hanging.
"""

import ipaddress
import os
import socket

import jax
import pytest

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

"""The download survives a cut connection and a killed process, and keeps nothing it cannot
verify: against an HTTP server on the loopback address (no network)."""

import hashlib
import http.server
import os
import threading

import numpy as np
import pytest

from jaxlottery import download

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class Server:
    """Serves PAYLOAD at /file with Range support; `cut_after` bytes into the next `cuts`
    responses it closes the connection; `ranges=False` ignores Range; /missing is a 404;
    /other serves different bytes. Records the Range header of every request."""

    def __init__(self):
        self.cuts, self.cut_after, self.ranges, self.seen = 0, 100_000, True, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.seen.append((self.path, self.headers.get("Range")))
                if self.path == "/missing":
                    self.send_error(404)
                    return
                body = PAYLOAD[::-1] if self.path == "/other" else PAYLOAD
                start = 0
                rng = self.headers.get("Range")
                if rng and server.ranges:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if server.cuts:
                    server.cuts -= 1
                    self.wfile.write(part[:server.cut_after])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the connection dies mid-file
                    return
                self.wfile.write(part)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _fetch(server, tmp_path, *paths, **kw):
    target = str(tmp_path / "data" / "archive.tar.gz")
    url = download.fetch([server.url + p for p in paths], target, MD5, backoff=0.0,
                         progress=False, timeout=10, **kw)
    return target, url


def test_a_cut_connection_resumes_where_it_stopped(server, tmp_path):
    server.cuts = 2
    target, url = _fetch(server, tmp_path, "/file")
    assert open(target, "rb").read() == PAYLOAD and not os.path.exists(target + ".partial")
    assert [r for _, r in server.seen] == [None, "bytes=100000-", "bytes=200000-"]


def test_a_killed_download_resumes_from_its_partial_file(server, tmp_path):
    os.makedirs(tmp_path / "data")
    with open(tmp_path / "data" / "archive.tar.gz.partial", "wb") as f:
        f.write(PAYLOAD[:123_456])  # what a process killed mid-download left
    target, _ = _fetch(server, tmp_path, "/file")
    assert open(target, "rb").read() == PAYLOAD and server.seen == [("/file", "bytes=123456-")]


def test_a_complete_partial_file_is_verified_and_moved(server, tmp_path):
    os.makedirs(tmp_path / "data")
    with open(tmp_path / "data" / "archive.tar.gz.partial", "wb") as f:
        f.write(PAYLOAD)  # killed after the last byte, before the move
    target, _ = _fetch(server, tmp_path, "/file")
    assert open(target, "rb").read() == PAYLOAD  # the server answered 416: nothing left to send


def test_a_server_ignoring_ranges_restarts_from_zero(server, tmp_path):
    server.ranges, server.cuts = False, 1
    target, _ = _fetch(server, tmp_path, "/file")
    assert open(target, "rb").read() == PAYLOAD


def test_a_wrong_file_is_refused_before_it_is_moved(server, tmp_path):
    with pytest.raises(download.ChecksumMismatch, match="nothing was kept"):
        _fetch(server, tmp_path, "/other")
    assert os.listdir(tmp_path / "data") == []


def test_mirrors_are_tried_in_turn_and_retries_back_off(server, tmp_path, monkeypatch):
    waits = []
    server.cuts, server.cut_after = 3, 0
    target, url = _fetch(server, tmp_path, "/missing", "/file", sleep=waits.append)
    assert url.endswith("/file") and open(target, "rb").read() == PAYLOAD
    assert [p for p, _ in server.seen] == ["/missing", "/file", "/file", "/file", "/file"]
    assert waits == [0.0, 0.0, 0.0]  # backoff * 2**n, here backoff 0
    monkeypatch.setenv(download.MIRRORS_VARIABLE, "https://mirror.example/data/, http://x/y.tgz")
    assert download.mirrors("https://host/a/cifar.tar.gz") == [
        "https://mirror.example/data/cifar.tar.gz", "http://x/y.tgz", "https://host/a/cifar.tar.gz"]


def test_every_url_failing_raises_the_last_error(server, tmp_path):
    server.cuts, server.cut_after = 10, 10
    with pytest.raises(OSError):
        _fetch(server, tmp_path, "/file", attempts=2)
    assert os.path.getsize(tmp_path / "data" / "archive.tar.gz.partial") == 20  # kept to resume

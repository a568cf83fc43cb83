"""Read a topic of raw Criteo rows as fixed-size batches of encoded rows, with the
offsets that say exactly which messages each batch consumed.

The consumer is assigned every partition of the topic at explicit positions (no group
rebalance): the positions saved in the trainer's last checkpoint, or the start of the
topic. A batch holds ``size`` good rows; the malformed messages met on the way (wrong
field count, a bad token, a line break inside, a key that is not a row number) are
counted and skipped, as the converter's ``on_bad_row="skip"`` does, and consumed with
the batch. Rows are encoded by the one encoder (:func:`mindrec.data.criteo.parse_lines`,
:func:`mindrec.data.criteo.encode_keys`), so the stream and an offline file give the
model identical inputs. Offsets are committed to the broker only when the trainer says
its checkpoint is durable (:meth:`StreamConsumer.commit`); the checkpoint is the truth.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from mindrec.data.criteo import NUM_FIELDS, HashedKeys, encode_keys, parse_lines
from mindrec.stream.kafka import StreamError, client_settings, key_row, partitions

_POLL_MESSAGES = 2000
_FETCH_WAIT_MS = 10  # a broker answers an idle fetch after about half of this


@dataclass
class Batch:
    """``size`` encoded rows and where the stream stands after them."""

    keys: np.ndarray        # int64 (n, 39)
    vals: np.ndarray        # float32 (n, 39)
    labels: np.ndarray      # float32 (n, 1)
    rows: np.ndarray        # int64 (n,), the producer's row numbers
    event_ms: np.ndarray    # int64 (n,), event times
    positions: dict[int, int]  # partition -> offset of the next message to read
    bad: int = 0            # malformed messages consumed with this batch


@dataclass
class _Pending:
    """Messages polled but not yet handed out, in arrival order."""

    partition: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    offset: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    good: np.ndarray = field(default_factory=lambda: np.empty(0, bool))
    keys: np.ndarray = field(default_factory=lambda: np.empty((0, NUM_FIELDS), np.int64))
    vals: np.ndarray = field(default_factory=lambda: np.empty((0, NUM_FIELDS), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    event_ms: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def extend(self, other: _Pending) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))

    def good_rows(self) -> int:
        return int(self.good.sum())


class StreamConsumer:
    """Batches of a topic's rows from given positions (see the module docstring).

    Args:
        bootstrap_servers: the brokers, ``HOST:PORT[,HOST:PORT...]``.
        topic: the topic of raw rows.
        positions: partition -> next offset to read (a checkpoint's); partitions not
            named start at their beginning.
        group_id: the consumer group offsets are committed under.
        scheme: the key scheme of the encoder.
        wait_s: how long to wait for the broker at the start (with backoff).
    """

    def __init__(self, bootstrap_servers: str, topic: str,
                 positions: dict[int, int] | None = None, group_id: str = "mindrec-online",
                 scheme: HashedKeys = HashedKeys(), wait_s: float = 30.0,
                 progress: TextIO | None = sys.stderr):
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.scheme = scheme
        self.progress = progress
        count = partitions(bootstrap_servers, topic, wait_s, progress)
        self.positions = {p: OFFSET_BEGINNING for p in range(count)}
        self.positions.update({int(p): int(o) for p, o in (positions or {}).items()})
        self._consumer = Consumer({**client_settings(bootstrap_servers), "group.id": group_id,
                                   "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                   "enable.partition.eof": False,
                                   "fetch.wait.max.ms": _FETCH_WAIT_MS})
        self._consumer.assign([TopicPartition(topic, p, o) for p, o in self.positions.items()])
        self._pending = _Pending()
        self.transport_errors = 0

    def next_batch(self, size: int, timeout_s: float) -> Batch | None:
        """The next ``size`` good rows, or None when they did not all arrive within
        ``timeout_s`` (what arrived stays buffered for the next call)."""
        while self._pending.good_rows() < size:
            messages = self._consumer.consume(_POLL_MESSAGES, timeout=timeout_s)
            if not messages:
                return None
            self._pending.extend(self._decode(messages))
        return self._take(size)

    def commit(self, positions: dict[int, int]) -> None:
        """Commit ``positions`` to the broker (after the checkpoint holding them is
        durable); a failure is reported, not raised: the checkpoint is the truth."""
        offsets = [TopicPartition(self.topic, p, o) for p, o in positions.items() if o >= 0]
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            if self.progress is not None:
                print(f"could not commit offsets to {self.bootstrap_servers}: {exc.args[0]} "
                      f"(the checkpoint holds them)", file=self.progress, flush=True)

    def close(self) -> None:
        """Leave the broker (nothing is committed here)."""
        self._consumer.close()

    def _decode(self, messages) -> _Pending:
        """Parse and encode polled messages; errors of the transport are counted."""
        kept, values, rows = [], [], []
        for message in messages:
            error = message.error()
            if error is not None:
                self._transport_error(error)
                continue
            kept.append(message)
            value = message.value() or b""
            row = key_row(message.key())
            # no row number, or a line break inside: malformed (an empty line is bad)
            bad = row is None or b"\n" in value or b"\r" in value
            rows.append(-1 if row is None else row)
            values.append(b"" if bad else value)
        part = _Pending(
            partition=np.array([m.partition() for m in kept], np.int64),
            offset=np.array([m.offset() for m in kept], np.int64),
            event_ms=np.array([m.timestamp()[1] for m in kept], np.int64),
            rows=np.array(rows, np.int64))
        part.good = np.zeros(len(kept), bool)
        if kept:
            chunk = parse_lines(values, source=f"topic {self.topic}", on_bad_row="skip")
            part.good[chunk.line_numbers - 1] = True
            part.keys, part.vals, part.labels = encode_keys(chunk, self.scheme)
        return part

    def _take(self, size: int) -> Batch:
        """Hand out the first ``size`` good rows and the bad messages before them."""
        pending = self._pending
        last = int(np.flatnonzero(pending.good)[size - 1])
        taken = slice(0, last + 1)
        good = slice(0, size)
        for p in np.unique(pending.partition[taken]):
            self.positions[int(p)] = int(pending.offset[taken][pending.partition[taken] == p]
                                         .max()) + 1
        batch = Batch(keys=pending.keys[good], vals=pending.vals[good],
                      labels=pending.labels[good].reshape(-1, 1),
                      rows=pending.rows[pending.good][good],
                      event_ms=pending.event_ms[pending.good][good],
                      positions=dict(self.positions),
                      bad=int((~pending.good[taken]).sum()))
        n_good_rest = slice(size, None)
        rest = slice(last + 1, None)
        self._pending = _Pending(
            partition=pending.partition[rest], offset=pending.offset[rest],
            good=pending.good[rest], keys=pending.keys[n_good_rest],
            vals=pending.vals[n_good_rest], labels=pending.labels[n_good_rest],
            rows=pending.rows[last + 1:], event_ms=pending.event_ms[last + 1:])
        return batch

    def _transport_error(self, error: KafkaError) -> None:
        """Count an error of the transport (the client reconnects by itself)."""
        self.transport_errors += 1
        if error.fatal():
            raise StreamError(f"{self.bootstrap_servers}: {error.str()}")
        if self.progress is not None and self.transport_errors in (1, 10, 100, 1000):
            print(f"{self.bootstrap_servers}: {error.str()} (error {self.transport_errors}; "
                  f"the client retries)", file=self.progress, flush=True)
